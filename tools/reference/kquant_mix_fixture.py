"""The type llama.cpp's own quantizer gives each tensor of a LLaMA model for every K-quant choice
that `webjudge convert --quant` offers: q4_k_m, q5_k_m (the mixes: Q6_K for the lm_head and for the
value and down projections of the layers `use_more_bits` picks) and q4_k, q5_k, q6_k (llama.cpp's
`--pure`), with llama.cpp's fallbacks where rows are not whole 256-value super-blocks.

Three shapes, so every branch shows: 40 layers (Auto-J-13B's depth) with super-block rows; 16
layers whose feed-forward (288) is not a multiple of 256, so the down projections fall back; 9
tied layers of hidden size 320, so nearly everything falls back and the tied embedding takes the
lm_head's rule (the pure choices on the first shape only: llama-cpp-python 0.3.16's `--pure`
aborts where a fallback is needed; later llama.cpp falls back as the mixes do). Written as small F32 GGUFs (random weights: only the types matter here) with
gguf-py, quantized by `llama_model_quantize` (llama-cpp-python 0.3.16).

Writes tests/fixtures/kquant_mix_types.json: per shape the architecture and, per choice, each
tensor's GGML type id.

Usage: python3 tools/reference/kquant_mix_fixture.py   (needs gguf==0.19.0, numpy,
llama-cpp-python==0.3.16)
"""

import ctypes
import json
import tempfile
from pathlib import Path

import gguf
import llama_cpp
import numpy as np

from kquant_model_fixture import add_vocabulary, vocabulary

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "kquant_mix_types.json"
# name: (layers, hidden, heads, kv heads, feed-forward, tied)
SHAPES = {
    "deep": (40, 256, 4, 2, 256, False),
    "ffn_fallback": (16, 256, 4, 2, 288, False),
    "tied_fallback": (9, 320, 4, 2, 512, True),
}
# choice: (llama.cpp ftype, pure)
CHOICES = {
    "q4_k_m": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, False),
    "q5_k_m": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M, False),
    "q4_k": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, True),
    "q5_k": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M, True),
    "q6_k": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K, True),
}


def write_f32_gguf(path: Path, shape: tuple) -> None:
    layers, hidden, heads, kv_heads, ffn, tied = shape
    head_dim = hidden // heads
    tokens = vocabulary()[0]
    rng = np.random.default_rng(0)
    normal = lambda rows, cols: (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("kquant-mix")
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(head_dim)
    add_vocabulary(writer)
    writer.add_tensor("token_embd.weight", normal(len(tokens), hidden))
    writer.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    if not tied:
        writer.add_tensor("output.weight", normal(len(tokens), hidden))
    for layer in range(layers):
        block = lambda name: f"blk.{layer}.{name}.weight"
        writer.add_tensor(block("attn_norm"), np.ones(hidden, dtype=np.float32))
        writer.add_tensor(block("attn_q"), normal(heads * head_dim, hidden))
        writer.add_tensor(block("attn_k"), normal(kv_heads * head_dim, hidden))
        writer.add_tensor(block("attn_v"), normal(kv_heads * head_dim, hidden))
        writer.add_tensor(block("attn_output"), normal(hidden, heads * head_dim))
        writer.add_tensor(block("ffn_norm"), np.ones(hidden, dtype=np.float32))
        writer.add_tensor(block("ffn_gate"), normal(ffn, hidden))
        writer.add_tensor(block("ffn_up"), normal(ffn, hidden))
        writer.add_tensor(block("ffn_down"), normal(hidden, ffn))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def quantized_types(source: Path, target: Path, ftype: int, pure: bool) -> dict:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.pure = pure
    params.nthread = 2
    result = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    assert result == 0, f"llama_model_quantize failed: {result}"
    return {t.name: int(t.tensor_type) for t in gguf.GGUFReader(target).tensors}


def main() -> None:
    fixture = {"source": "tools/reference/kquant_mix_fixture.py (llama-cpp-python 0.3.16: llama_model_quantize)"}
    shapes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, shape in SHAPES.items():
            layers, hidden, heads, kv_heads, ffn, tied = shape
            f32 = Path(tmp) / f"{name}.gguf"
            write_f32_gguf(f32, shape)
            entry = {"layers": layers, "hidden": hidden, "heads": heads, "kv_heads": kv_heads, "ffn": ffn, "tied": tied}
            entry["types"] = {
                choice: quantized_types(f32, Path(tmp) / f"{name}-{choice}.gguf", ftype, pure)
                for choice, (ftype, pure) in CHOICES.items()
                # 0.3.16's --pure has no fallbacks yet (it aborts; llama.cpp's master falls back as the mixes do).
                if not pure or name == "deep"
            }
            shapes[name] = entry
    fixture["shapes"] = shapes
    OUT.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
