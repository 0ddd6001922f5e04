"""llama.cpp's perplexity of the test model on a short text, scored as llama-perplexity scores it.

- The text: the prompt and response of Auto-J's critique test rows in the committed excerpt
  (tests/fixtures/autoj/rows.jsonl, `testdata_critique` lines 1, 2, ...), each as
  "prompt\n\nresponse", joined by blank lines, as many rows as give at least 1024 tokens (so
  llama-perplexity, which wants two chunks, accepts a 512-token context). Written to
  tests/fixtures/perplexity/autoj_critique.txt.
- The scoring, from llama.cpp's tools/perplexity/perplexity.cpp (`perplexity`): the whole text
  tokenized once with `add_special` (BOS where the vocabulary adds it) and without parsing
  special tokens; `n_chunk = n_tokens / n_ctx` chunks; each chunk's first token replaced by BOS
  where the vocabulary adds it, evaluated from an empty KV cache with logits at every position;
  positions `first = n_ctx / 2` up to `n_ctx - 2` scored against the next token.
- The logits: llama.cpp itself through llama-cpp-python 0.3.16 (`logits_all=True`, one batch
  per chunk), on the CPU, which rounds activations to 8 bits in its quantized dot products.
- Two NLL sums from those logits: llama-perplexity's own arithmetic (`log_softmax`: f32 max,
  f32 `expf` summed in f64) and numpy's float64 log-softmax.

Writes tests/golden/perplexity_smollm2.json: the token ids, and per context (128, 256, 512) the
chunks, the scored tokens, both perplexities, and llama-perplexity's running perplexity after
each chunk (what `--chunks N` gives).

Usage: python3 tools/reference/perplexity_reference.py SmolLM2-135M-Instruct.Q4_1.gguf
(needs numpy, llama-cpp-python==0.3.16; tools/fetch_test_model.sh prints the GGUF's path)
"""

import json
import sys
from pathlib import Path

import llama_cpp
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
ROWS = ROOT / "tests" / "fixtures" / "autoj" / "rows.jsonl"
TEXT = ROOT / "tests" / "fixtures" / "perplexity" / "autoj_critique.txt"
GOLDEN = ROOT / "tests" / "golden" / "perplexity_smollm2.json"
CONTEXTS = [128, 256, 512]
MIN_TOKENS = 2 * max(CONTEXTS)


def load(gguf: str, n_ctx: int) -> llama_cpp.Llama:
    return llama_cpp.Llama(model_path=gguf, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True, verbose=False)


def tokenize(llm: llama_cpp.Llama, text: str) -> list[int]:
    # common_tokenize(ctx, text, add_special = true, parse_special = false)
    return llm.tokenize(text.encode(), add_bos=True, special=False)


def build_text(llm: llama_cpp.Llama) -> str:
    rows = [json.loads(line) for line in ROWS.read_text().splitlines()]
    pieces = []
    for row in (r["row"] for r in rows if r["set"] == "testdata_critique"):
        pieces.append(row["prompt"] + "\n\n" + row["response"])
        if len(tokenize(llm, "\n\n".join(pieces))) >= MIN_TOKENS:
            return "\n\n".join(pieces)
    raise SystemExit(f"the critique rows give fewer than {MIN_TOKENS} tokens")


def llama_nll(logits: np.ndarray, token: int) -> float:
    # perplexity.cpp's log_softmax(n_vocab, logits, tok): f32 max and expf, sum in double.
    max_logit = np.float32(logits.max())
    sum_exp = float(np.exp((logits - max_logit).astype(np.float32), dtype=np.float32).astype(np.float64).sum())
    return -(float(logits[token] - max_logit) - np.log(sum_exp))


def numpy_nll(logits: np.ndarray, token: int) -> float:
    values = logits.astype(np.float64)
    log_sum = np.log(np.exp(values - values.max()).sum()) + values.max()
    return float(log_sum - values[token])


def score(gguf: str, tokens: list[int], n_ctx: int) -> dict:
    llm = load(gguf, n_ctx)
    vocab = llm._model.vocab
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    bos = llama_cpp.llama_vocab_bos(vocab)
    first = n_ctx // 2
    n_chunk = len(tokens) // n_ctx
    nll_llama = nll_numpy = 0.0
    count = 0
    running = []
    for i in range(n_chunk):
        chunk = list(tokens[i * n_ctx : (i + 1) * n_ctx])
        if add_bos:
            chunk[0] = bos
        llm.reset()
        llm.eval(chunk)
        logits = np.array(llm.scores[:n_ctx], dtype=np.float32)
        for j in range(first, n_ctx - 1):
            target = tokens[i * n_ctx + j + 1]
            nll_llama += llama_nll(logits[j], target)
            nll_numpy += numpy_nll(logits[j], target)
            count += 1
        # llama-perplexity prints this after each chunk: `[1]18.1,[2]17.9,...`
        running.append(float(np.exp(nll_llama / count)))
    return {
        "context": n_ctx,
        "chunks": n_chunk,
        "scored_tokens": count,
        "add_bos": add_bos,
        "perplexity_llama_cpp": float(np.exp(nll_llama / count)),
        "perplexity_numpy": float(np.exp(nll_numpy / count)),
        "perplexity_after_chunk": running,
    }


def main() -> None:
    gguf = sys.argv[1]
    text = build_text(load(gguf, 512))
    TEXT.parent.mkdir(parents=True, exist_ok=True)
    TEXT.write_text(text)
    tokens = tokenize(load(gguf, 512), text)
    golden = {
        "source": "tools/reference/perplexity_reference.py with llama-cpp-python "
        + llama_cpp.__version__
        + " on SmolLM2-135M-Instruct.Q4_1.gguf",
        "text": str(TEXT.relative_to(ROOT)),
        "tokens": tokens,
        "contexts": [score(gguf, tokens, n_ctx) for n_ctx in CONTEXTS],
    }
    GOLDEN.write_text(json.dumps(golden, indent=1) + "\n")
    for result in golden["contexts"]:
        print(result)


if __name__ == "__main__":
    main()
