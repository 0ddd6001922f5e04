"""A tiny LLaMA whose rows are whole K-quant super-blocks, quantized by llama.cpp's own
quantizer to Q4_K_M and Q5_K_M, and the greedy ids of a forward pass over its dequantized weights.

- The model: 2 layers, hidden 256, 4 heads of 64 (2 KV heads), feed-forward 512, untied
  output, the 268-piece LLaMA vocabulary of tests/fixtures/llama_vocab.gguf, random weights
  (seeded). Written as an F32 GGUF with gguf-py, then quantized by `llama_model_quantize`
  (llama-cpp-python 0.3.16, llama.cpp's mixes: Q4_K/Q5_K with Q6_K where `use_more_bits`
  says so, F32 norms), into tests/fixtures/kquant_tiny/{q4_k_m,q5_k_m}.gguf.
- The reference: a LLaMA forward in numpy (float64) written from the architecture (RMSNorm,
  RoPE on adjacent pairs as GGUF lays Q and K out, causal grouped-query attention, SwiGLU)
  over the weights as gguf-py dequantizes them (llama.cpp's `dequantize_row_*`), greedy, from
  the first seed whose top-1/top-2 margins are all at least 0.2 for both files (the engine
  computes in f32 with an f16 KV cache, far closer to this reference than that).
- A cross-check: llama.cpp itself (llama-cpp-python) decodes the same prompt greedily, and its
  ids are recorded too. It rounds activations to 8 bits in its K-quant dot products (logits move
  by up to ~0.7 here), so it parts from the exact reference after a few tokens; the fixture
  requires only that it agrees on the first.

Writes tests/fixtures/kquant_tiny/golden.json: per file, the prompt ids, the reference's greedy
ids with every step's margin and top-5 logits, and llama.cpp's ids.

Usage: python3 tools/reference/kquant_model_fixture.py   (needs gguf==0.19.0, numpy,
llama-cpp-python==0.3.16)
"""

import ctypes
import json
import tempfile
from pathlib import Path

import gguf
import llama_cpp
import numpy as np
from gguf.quants import dequantize

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "kquant_tiny"
VOCAB = ROOT / "tests" / "fixtures" / "llama_vocab.gguf"
LAYERS, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN = 2, 256, 4, 2, 64, 512
CONTEXT, ROPE_BASE, EPS = 256, 10000.0, 1e-5
PROMPT = [1, 200, 57, 131, 9, 244, 17, 88]
NEW_TOKENS = 12
MIN_MARGIN = 0.2
MIXES = {"q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, "q5_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M}


def vocabulary():
    reader = gguf.GGUFReader(VOCAB)
    field = lambda key: reader.fields[key]
    tokens = [bytes(field("tokenizer.ggml.tokens").parts[i]).decode() for i in field("tokenizer.ggml.tokens").data]
    scores = [float(field("tokenizer.ggml.scores").parts[i][0]) for i in field("tokenizer.ggml.scores").data]
    types = [int(field("tokenizer.ggml.token_type").parts[i][0]) for i in field("tokenizer.ggml.token_type").data]
    ids = {k: int(field(f"tokenizer.ggml.{k}").parts[-1][0]) for k in ("bos_token_id", "eos_token_id", "unknown_token_id")}
    return tokens, scores, types, ids


def add_vocabulary(writer: gguf.GGUFWriter) -> None:
    tokens, scores, types, ids = vocabulary()
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(ids["bos_token_id"])
    writer.add_eos_token_id(ids["eos_token_id"])
    writer.add_unk_token_id(ids["unknown_token_id"])


def random_weights(seed: int, vocab: int) -> dict:
    rng = np.random.default_rng(seed)
    normal = lambda shape, std: (rng.standard_normal(shape) * std).astype(np.float32)
    weights = {
        "token_embd.weight": normal((vocab, HIDDEN), 1.0),
        "output_norm.weight": (1.0 + normal((HIDDEN,), 0.1)),
        "output.weight": normal((vocab, HIDDEN), 0.5),
    }
    for layer in range(LAYERS):
        block = lambda name: f"blk.{layer}.{name}.weight"
        weights[block("attn_norm")] = 1.0 + normal((HIDDEN,), 0.1)
        weights[block("attn_q")] = normal((HEADS * HEAD_DIM, HIDDEN), 0.1)
        weights[block("attn_k")] = normal((KV_HEADS * HEAD_DIM, HIDDEN), 0.1)
        weights[block("attn_v")] = normal((KV_HEADS * HEAD_DIM, HIDDEN), 0.1)
        weights[block("attn_output")] = normal((HIDDEN, HEADS * HEAD_DIM), 0.05)
        weights[block("ffn_norm")] = 1.0 + normal((HIDDEN,), 0.1)
        weights[block("ffn_gate")] = normal((FFN, HIDDEN), 0.1)
        weights[block("ffn_up")] = normal((FFN, HIDDEN), 0.1)
        weights[block("ffn_down")] = normal((HIDDEN, FFN), 0.05)
    return weights


def write_f32_gguf(path: Path, weights: dict) -> None:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("kquant-tiny")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(EPS)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(ROPE_BASE)
    add_vocabulary(writer)
    for name, array in weights.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def quantize(source: Path, target: Path, ftype: int) -> None:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    result = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    assert result == 0, f"llama_model_quantize failed: {result}"


def dequantized(path: Path) -> tuple[dict, dict]:
    reader = gguf.GGUFReader(path)
    weights, types = {}, {}
    for tensor in reader.tensors:
        shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        weights[tensor.name] = dequantize(tensor.data, tensor.tensor_type).reshape(shape).astype(np.float64)
        types[tensor.name] = tensor.tensor_type.name
    return weights, types


def rms_norm(x, weight):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + EPS) * weight


def rope(x, positions):
    # Adjacent pairs (2i, 2i + 1) of each head, as GGUF's Q and K rows are laid out.
    half = np.arange(HEAD_DIM // 2)
    angles = positions[:, None] * ROPE_BASE ** (-2.0 * half / HEAD_DIM)
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


def logits(w: dict, ids: list) -> np.ndarray:
    """The last position's logits of a full forward over `ids` (float64)."""
    n = len(ids)
    positions = np.arange(n, dtype=np.float64)
    x = w["token_embd.weight"][ids]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for layer in range(LAYERS):
        block = lambda name: w[f"blk.{layer}.{name}.weight"]
        h = rms_norm(x, block("attn_norm"))
        q = rope((h @ block("attn_q").T).reshape(n, HEADS, HEAD_DIM), positions)
        k = rope((h @ block("attn_k").T).reshape(n, KV_HEADS, HEAD_DIM), positions)
        v = (h @ block("attn_v").T).reshape(n, KV_HEADS, HEAD_DIM)
        group = HEADS // KV_HEADS
        heads = []
        for head in range(HEADS):
            scores = q[:, head] @ k[:, head // group].T / np.sqrt(HEAD_DIM) + mask
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            heads.append((scores / scores.sum(axis=-1, keepdims=True)) @ v[:, head // group])
        x = x + np.concatenate(heads, axis=-1) @ block("attn_output").T
        h = rms_norm(x, block("ffn_norm"))
        gate, up = h @ block("ffn_gate").T, h @ block("ffn_up").T
        x = x + (gate / (1.0 + np.exp(-gate)) * up) @ block("ffn_down").T
    return rms_norm(x[-1], w["output_norm.weight"]) @ w["output.weight"].T


def greedy(w: dict) -> tuple[list, list, list]:
    ids, margins, top5 = list(PROMPT), [], []
    for _ in range(NEW_TOKENS):
        out = logits(w, ids)
        top = np.argsort(out)[::-1]
        margins.append(float(out[top[0]] - out[top[1]]))
        top5.append([[int(i), round(float(out[i]), 5)] for i in top[:5]])
        ids.append(int(top[0]))
    return ids[len(PROMPT) :], margins, top5


def llama_cpp_greedy(path: Path) -> list:
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=2, logits_all=True, verbose=False)
    ids = list(PROMPT)
    llm.eval(ids)
    out = []
    for _ in range(NEW_TOKENS):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(token)
        llm.eval([token])
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    vocab = len(vocabulary()[0])
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(100):
            f32 = Path(tmp) / "f32.gguf"
            write_f32_gguf(f32, random_weights(seed, vocab))
            golden = {"source": "tools/reference/kquant_model_fixture.py", "seed": seed, "files": {}}
            for mix, ftype in MIXES.items():
                path = Path(tmp) / f"{mix}.gguf"
                quantize(f32, path, ftype)
                weights, types = dequantized(path)
                ids, margins, top5 = greedy(weights)
                golden["files"][mix] = {
                    "types": sorted(set(types.values())),
                    "prompt": PROMPT,
                    "greedy": ids,
                    "margins": [round(m, 4) for m in margins],
                    "top5": top5,
                    "llama_cpp_greedy": llama_cpp_greedy(path),
                }
            files = golden["files"].values()
            if all(min(f["margins"]) >= MIN_MARGIN and f["greedy"][0] == f["llama_cpp_greedy"][0] for f in files):
                for mix in MIXES:
                    (OUT / f"{mix}.gguf").write_bytes((Path(tmp) / f"{mix}.gguf").read_bytes())
                (OUT / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
                print(f"seed {seed}: wrote {OUT}")
                return
            print(f"seed {seed}: margins {[min(f['margins']) for f in files]}, skipped")
    raise SystemExit(f"no seed under 100 gives margins of at least {MIN_MARGIN}")


if __name__ == "__main__":
    main()
