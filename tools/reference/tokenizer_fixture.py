"""Write a small sentencepiece-style ("llama") GGUF vocabulary and its Hugging Face goldens.

The GGUF holds tokenizer metadata plus the few `llama.*` keys transformers needs to read a
config; no tensors. The vocabulary is laid out like LLaMA-2's: `<unk>`, `<s>`, `</s>`, the 256
`<0xXX>` byte tokens, then BPE pieces learned from a small corpus (scored by merge rank), then
single characters (scored below every piece), then one user-defined token. The file has no
merges, so a reader must recover them from the scores, as for real LLaMA-2 GGUFs.

The goldens are what `AutoTokenizer.from_pretrained(dir, gguf_file=...)` gives: the ids with
`add_special_tokens=True`, and `decode(ids)` with special tokens kept.

Run with the reference venv:
    /root/.cache/webjudge/refvenv/bin/python tools/reference/tokenizer_fixture.py [OUT_DIR]
OUT_DIR defaults to tests/fixtures. Deterministic: rerunning rewrites identical files.
"""

import json
import sys
from collections import Counter
from pathlib import Path

import gguf
import transformers
from transformers import AutoTokenizer

GGUF_NAME = "llama_vocab.gguf"
GOLDEN_NAME = "llama_vocab_golden.json"
SPACE = "\u2581"  # sentencepiece's visible space
MERGES = 220

CORPUS = """
The quick brown fox jumps over the lazy dog. The dog sleeps in the sun, and the fox runs
into the forest. There is a river in the forest where the animals drink water every day.
Hello world! This is a test of the tokenizer: it should split words into pieces, merge
the frequent ones, and fall back to bytes for characters it has never seen before.
A judge reads two responses and decides which one is better, or whether they tie.
Rating: the response is helpful, honest and harmless. Response 1 is better than response 2.
"""

# Characters that get a token of their own even if the corpus lacks them: digits, the
# punctuation used by the test texts, and two CJK characters (the rest of CJK falls back to bytes).
EXTRA_CHARS = "0123456789.,:;!?'\"()[]-\n\u4f60\u597d"

TEXTS = [
    "Hello world",
    " Hello world",
    "   leading spaces",
    "multiple   spaces  between words",
    "trailing space ",
    "line one\nline two\n\n  indented",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9",
    "\u4f60\u597d\uff0c\u4e16\u754c",
    "emoji \U0001f600 and \U0001f44d\U0001f3fd",
    "digits 0123456789 and 3.14159",
    "The response is better. Rating: [[5]]",
    "<s>special tokens</s> inside text",
    "an <unk> and a<sep>separator",
    "tab\there",
    "",
]

# Matched whole in text, like llama.cpp's user-defined tokens, but not special.
USER_DEFINED = "<sep>"


def train_pieces(corpus: str, merges: int) -> list[str]:
    """Plain BPE over sentencepiece-escaped words; returns merged pieces in merge order."""
    words = Counter(SPACE + w for w in corpus.split())
    splits = {w: list(w) for w in words}
    pieces = []
    for _ in range(merges):
        pairs = Counter()
        for word, count in words.items():
            parts = splits[word]
            for a, b in zip(parts, parts[1:]):
                pairs[a, b] += count
        if not pairs:
            break
        # the most frequent pair; ties broken by the pair itself, for determinism
        (a, b), _ = max(pairs.items(), key=lambda item: (item[1], item[0]))
        merged = a + b
        pieces.append(merged)
        for word, parts in splits.items():
            out, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            splits[word] = out
    return pieces


def build_vocab() -> tuple[list[str], list[float], list[int]]:
    T = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>"]
    types = [T.UNKNOWN, T.CONTROL, T.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [T.BYTE] * 256
    scores = [0.0] * len(tokens)

    pieces = train_pieces(CORPUS, MERGES)
    chars = sorted(set(SPACE + CORPUS.replace(" ", "").replace("\n", "") + EXTRA_CHARS) - {"\n"})
    seen = set(tokens)
    rank = 0
    for piece in pieces + [SPACE] + chars:
        if piece in seen:
            continue
        seen.add(piece)
        tokens.append(piece)
        types.append(T.NORMAL)
        scores.append(-float(rank))
        rank += 1
    tokens.append(USER_DEFINED)
    types.append(T.USER_DEFINED)
    scores.append(0.0)
    return tokens, scores, [int(t) for t in types]


def write_gguf(path: Path, tokens: list[str], scores: list[float], types: list[int]) -> None:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("webjudge tokenizer fixture")
    # The config keys transformers reads before it builds the tokenizer; values are nominal.
    writer.add_context_length(4096)
    writer.add_embedding_length(64)
    writer.add_block_count(1)
    writer.add_feed_forward_length(128)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(32)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_golden(path: Path, generator: str, vocab_size: int, tokenizer, texts: list[str]) -> None:
    """Ids with `add_special_tokens=True` and `decode(ids)` for each text, one case per line,
    so a diff of a regenerated file shows which cases changed."""
    cases = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        cases.append({"text": text, "ids": ids, "decoded": tokenizer.decode(ids)})
    lines = [
        "{",
        f' "generator": {json.dumps(generator)},',
        f' "vocab_size": {vocab_size},',
        ' "cases": [',
        ",\n".join("  " + json.dumps(case, ensure_ascii=False) for case in cases),
        " ]",
        "}",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "tests" / "fixtures"
    out.mkdir(parents=True, exist_ok=True)
    tokens, scores, types = build_vocab()
    write_gguf(out / GGUF_NAME, tokens, scores, types)

    tokenizer = AutoTokenizer.from_pretrained(str(out), gguf_file=GGUF_NAME)
    generator = f"tools/reference/tokenizer_fixture.py, transformers {transformers.__version__}"
    write_golden(out / GOLDEN_NAME, generator, len(tokens), tokenizer, TEXTS)
    print(f"{out / GGUF_NAME}: {len(tokens)} tokens, {(out / GGUF_NAME).stat().st_size} bytes")


if __name__ == "__main__":
    main()
