#!/usr/bin/env python3
"""llama.cpp's side of docs/quantization.md's table: the test model requantized by llama.cpp's own
quantizer to each GGUF type, each scored by llama.cpp as `llama-perplexity --kl-divergence`
scores it against the F32 model, on the perplexity text.

- The files: `llama_model_quantize` (llama-cpp-python 0.3.16, `allow_requantize`) from the test
  model's Q4_1 GGUF to F32 (the reference: Q4_1 and Q8_0 dequantize exactly, so it holds the
  same values as tools/reference/export_hf_checkpoint.py's f32 export) and to Q8_0, Q4_1, Q4_K_M,
  Q5_K_M and Q6_K, written to OUT_DIR (`webjudge convert` imports them for the "llama.cpp's file,
  our engine" rows).
- The scoring, as perplexity_reference.py's: tests/fixtures/perplexity/autoj_critique.txt, chunks
  of 512 tokens led by BOS, positions 256 to 510 of each scored; per position the NLL
  (llama-perplexity's f32 log-softmax), KL(F32 ‖ quantized) in float64, and whether both put the
  same token first. KL's p99 and max as `--kl-divergence` reports them.
- Bits per weight: the file's tensor bytes times 8 over the model's 134,515,008 values.

Prints one JSON line per type: type, bits_per_weight, perplexity, kl_mean, kl_p99, kl_max,
same_top, tokens.

Usage: python3 tools/reference/quant_table_llama.py SmolLM2-135M-Instruct.Q4_1.gguf OUT_DIR [CHUNKS]
(needs numpy, gguf, llama-cpp-python==0.3.16); CHUNKS keeps the first chunks only, as
llama-perplexity's --chunks does.
"""

import ctypes
import json
import sys
from pathlib import Path

import gguf
import llama_cpp
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TEXT = ROOT / "tests" / "fixtures" / "perplexity" / "autoj_critique.txt"
N_CTX = 512
# llama_ftype values (llama.h).
FTYPES = {"F32": 0, "Q8_0": 7, "Q4_1": 3, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18}


def quantize(source: Path, target: Path, ftype: int) -> None:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = 2
    result = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    assert result == 0, f"llama_model_quantize failed: {result}"


def log_softmax(logits: np.ndarray) -> np.ndarray:
    values = logits.astype(np.float64)
    top = values.max()
    return values - top - np.log(np.exp(values - top).sum())


def position_log_probs(path: Path, tokens: list, chunks: int) -> list:
    """Every scored position's log-probabilities (float64), chunk by chunk."""
    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX, logits_all=True, verbose=False
    )
    bos = llama_cpp.llama_vocab_bos(llm._model.vocab)
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(llm._model.vocab))
    rows = []
    for i in range(min(chunks, len(tokens) // N_CTX)):
        chunk = list(tokens[i * N_CTX : (i + 1) * N_CTX])
        if add_bos:
            chunk[0] = bos
        llm.reset()
        llm.eval(chunk)
        logits = np.array(llm.scores[:N_CTX], dtype=np.float32)
        for j in range(N_CTX // 2, N_CTX - 1):
            rows.append((log_softmax(logits[j]), tokens[i * N_CTX + j + 1]))
    return rows


def tensor_bytes(path: Path) -> int:
    return sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors)


def main() -> None:
    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    chunks = int(sys.argv[3]) if len(sys.argv) > 3 else sys.maxsize
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, ftype in FTYPES.items():
        paths[name] = out / f"smollm2-{name.lower()}.gguf"
        if not paths[name].exists():
            quantize(source, paths[name], ftype)
    llm = llama_cpp.Llama(model_path=str(paths["F32"]), n_ctx=N_CTX, verbose=False)
    tokens = llm.tokenize(TEXT.read_text().encode(), add_bos=True, special=False)
    n_values = sum(int(np.prod(t.shape)) for t in gguf.GGUFReader(paths["F32"]).tensors)
    reference = position_log_probs(paths["F32"], tokens, chunks)
    for name, path in paths.items():
        rows = reference if name == "F32" else position_log_probs(path, tokens, chunks)
        nll = [-log_probs[target] for log_probs, target in rows]
        kl = np.array([float(np.sum(np.exp(r) * (r - m))) for (r, _), (m, _) in zip(reference, rows)])
        same = np.mean([np.argmax(r) == np.argmax(m) for (r, _), (m, _) in zip(reference, rows)])
        print(
            json.dumps(
                {
                    "type": name,
                    "bits_per_weight": round(tensor_bytes(path) * 8 / n_values, 2),
                    "perplexity": round(float(np.exp(np.mean(nll))), 4),
                    "kl_mean": round(float(kl.mean()), 5),
                    "kl_p99": round(float(np.percentile(kl, 99)), 5),
                    "kl_max": round(float(kl.max()), 5),
                    "same_top": round(float(same), 4),
                    "tokens": len(rows),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
