#!/usr/bin/env python3
"""Independent golden values for the SmolLM2-135M-Instruct Q4_1 test model.

Nothing here uses webjudge code: the reference is Hugging Face transformers
(GGUF loader, dequantised to float32, eager attention, CPU) plus the
`tokenizers` library. Run it with the venv from tools/reference/setup.sh:

    tools/reference/golden.py "$(tools/fetch_test_model.sh)" [--out-dir tests/golden]

It writes two files:

  smollm2_tokenizer.json  texts and their token ids (add_special_tokens=True)
  smollm2_generate.json   three greedy generations with top-5 logits,
                          top-1/top-2 logit gaps and logits at a few steps

Tokenizer: which reference, and why
-----------------------------------
transformers' GGUF tokenizer conversion (GGUFGPTConverter) ignores
`tokenizer.ggml.pre = smollm` and builds a plain
ByteLevel(add_prefix_space=False, use_regex=True) pre-tokenizer. The real
SmolLM2 tokenizer.json, and llama.cpp's `smollm` pre-tokenizer, first isolate
every digit (Digits(individual_digits=True), llama.cpp: regex `\\p{N}`) and only
then apply the GPT-2 regex. The vocabulary has no multi-digit tokens and no
merge touching a digit, so digits always come out one per token either way,
but whitespace before a digit differs: "  42" is [Ġ, Ġ, 4, 2] under the plain
ByteLevel split and [ĠĠ, 4, 2] under the real one, and "\\n\\n1." is
[Ċ, Ċ, 1, .] versus [ĊĊ, 1, .].

So the goldens use the REAL SmolLM2 behaviour: a `tokenizers.Tokenizer` built
from the GGUF vocab/merges (read with the `gguf` package) with
  normalizer     none
  pre_tokenizer  Sequence[Digits(individual_digits=True),
                          ByteLevel(add_prefix_space=False, trim_offsets=True,
                                    use_regex=True)]
  model          BPE (no unk, no dropout, no byte fallback, ignore_merges=False)
  added tokens   every GGUF token of type CONTROL (ids 0..16), special
  decoder        ByteLevel
  post-processor none that adds tokens (no BOS: tokenizer.ggml.add_bos_token
                 is false)
The script asserts that this tokenizer agrees with transformers' GGUF tokenizer
on every text without a numeric character (tokenizer cases and prompts), and
records transformers' ids next to ours where a text with digits differs.
Generation prompt ids also come from the reference tokenizer; the model only
ever sees the recorded `prompt_ids`.

Generation
----------
Greedy decoding with a hand-written loop (one full forward over the prompt,
then one token at a time with past_key_values; argmax over the logits; stop
after EOS <|im_end|> (id 2), which is then included, or after max_new_tokens).
The loop is cross-checked against model.generate(do_sample=False), and the
cached logits at the last step against a fresh full forward.
"Step s" means the logits that choose generated token s (step 0 = right after
the prompt), i.e. the logits after feeding prompt_ids + ids[:s].
"""

import argparse
import hashlib
import json
import os
import re
import sys
import unicodedata

import gguf
import numpy as np
import tokenizers
import torch
import transformers
from gguf import GGUFReader
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from tokenizers import AddedToken
from transformers import AutoModelForCausalLM, AutoTokenizer

MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHARED = os.path.join(REPO, "..", "shared", "autoj")
AUTOJ_PAIRWISE = os.path.join(SHARED, "templates", "pairwise_tie.txt")
AUTOJ_DATA = os.path.join(SHARED, "data", "testdata_pairwise.jsonl")
MAX_NEW_TOKENS = 40
MIN_TOKENS_BEFORE_EOS = 30
MAX_PROMPT_TOKENS = 350
# Ids whose logits are recorded at a few steps in addition to that step's top 5.
PROBE_IDS = [0, 1, 2, 17, 216, 256, 1000, 12345, 30000, 49151]

TOKENIZER_TEXTS = [
    "Hello world! This is a simple English sentence.",
    "  leading and trailing spaces  ",
    "multiple     spaces\tand\ttabs\t\there\nnew line\n\n\nthree newlines",
    "Hello\r\nWorld\r\n",
    "12345",
    "Pi is 3.14159 and the date is 2026-11-23.",
    "  42 apples\n 7 pears\n\n3 plums\t\t9 figs    100",
    "café naïve résumé façade Ångström",
    "我喜欢学习机器学习，今天天气很好。",
    "日本語のテキストを書きます。カタカナもあります。",
    "Emoji: 😀👍🏽 👨‍👩‍👧‍👦 🇺🇸🇯🇵 ❤️ done",
    "<|im_start|>user\nHi<|im_end|>\n",
    "I'm sure they'll say it's fine, don't you think? We've seen it.",
    'def add(a, b):\n    """Add two numbers."""\n    if a > 0:\n        return a + b\n    return b\n',
    "English, Русский, العربية, हिन्दी, 한국어 and 中文 together.",
    " ",
    "",
]

PLAIN_PROMPT = "The history of the printing press begins"
CHAT_QUESTION = "What are three good habits for staying healthy? Explain each one briefly."
# The Auto-J case is the shortest row of Auto-J's pairwise test set (by characters,
# then file order) on which the test model writes 30+ tokens before EOS.
AUTOJ_CANDIDATES = 40


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def has_numeric(text):
    # Digits(individual_digits=True) splits on char::is_numeric (Nd, Nl, No).
    return any(unicodedata.category(c) in ("Nd", "Nl", "No") for c in text)


def build_reference_tokenizer(gguf_path):
    reader = GGUFReader(gguf_path)
    f = reader.fields
    assert f["tokenizer.ggml.model"].contents() == "gpt2"
    assert f["tokenizer.ggml.pre"].contents() == "smollm"
    tokens = f["tokenizer.ggml.tokens"].contents()
    types = f["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ")) for m in f["tokenizer.ggml.merges"].contents()]
    assert all(len(m) == 2 for m in merges)
    meta = {
        "bos_token_id": f["tokenizer.ggml.bos_token_id"].contents(),
        "eos_token_id": f["tokenizer.ggml.eos_token_id"].contents(),
        "add_bos_token": bool(f["tokenizer.ggml.add_bos_token"].contents()),
        "chat_template": f["tokenizer.chat_template"].contents(),
    }
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None,
                              continuing_subword_prefix="", end_of_word_suffix="",
                              fuse_unk=False, byte_fallback=False, ignore_merges=False))
    tk.normalizer = None
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    tk.decoder = decoders.ByteLevel()
    control = [i for i, t in enumerate(types) if t == gguf.TokenType.CONTROL]
    assert control == list(range(17)), control
    tk.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i in control])
    for i in control:
        assert tk.token_to_id(tokens[i]) == i
    return tk, meta


def describe_backend(tok):
    j = json.loads(tok.backend_tokenizer.to_str())
    model = {k: v for k, v in j["model"].items() if k not in ("vocab", "merges")}
    model["vocab_size"] = len(j["model"]["vocab"])
    model["merges"] = len(j["model"]["merges"])
    return {
        "normalizer": j["normalizer"],
        "pre_tokenizer": j["pre_tokenizer"],
        "post_processor": j["post_processor"],
        "decoder": j["decoder"],
        "model": model,
        "added_tokens": [(a["id"], a["content"], a["special"]) for a in j["added_tokens"]],
    }


def r(x, nd=5):
    return round(float(x), nd)


def greedy(model, prompt_ids, eos_id):
    ids, steps = [], []  # steps[s] = logits (float32 tensor) that chose ids[s]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
        while True:
            logits = out.logits[0, -1].float().clone()
            nxt = int(torch.argmax(logits))
            steps.append(logits)
            ids.append(nxt)
            if nxt == eos_id or len(ids) >= MAX_NEW_TOKENS:
                break
            out = model(input_ids=torch.tensor([[nxt]]), past_key_values=out.past_key_values,
                        use_cache=True)
    return ids, steps


def pick_autoj_example(model, ref_ids, chatml, eos_id):
    with open(AUTOJ_PAIRWISE, encoding="utf-8") as f:
        template = f.read()
    with open(AUTOJ_DATA, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    order = sorted(range(len(rows)), key=lambda i: (sum(len(rows[i][k]) for k in ("prompt", "response 1", "response 2")), i))
    for i in order[:AUTOJ_CANDIDATES]:
        row = rows[i]
        # str.format substitutes once; user text is never re-scanned (as Auto-J's code does).
        text = template.format(prompt=row["prompt"], response=row["response 1"], response_another=row["response 2"])
        ids, _ = greedy(model, ref_ids(chatml(text)), eos_id)
        if eos_id not in ids[:MIN_TOKENS_BEFORE_EOS]:
            print(f"Auto-J example: pairwise test row {i} ({row['scenario']})")
            return text
    raise SystemExit("no Auto-J pairwise row gives 30+ tokens")


def check_greedy(model, prompt_ids, ids, steps, eos_id):
    with torch.no_grad():
        gen = model.generate(torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                             do_sample=False, max_new_tokens=MAX_NEW_TOKENS, eos_token_id=eos_id,
                             pad_token_id=eos_id, num_beams=1)
        assert gen[0, len(prompt_ids):].tolist() == ids, "manual loop != generate()"
        full = model(input_ids=torch.tensor([prompt_ids + ids[:-1]]), use_cache=False).logits[0, -1]
        diff = float((full - steps[-1]).abs().max())
        assert diff < 1e-3, f"cached vs full forward logits differ by {diff}"
    return diff


def logits_record(step, logits):
    top = torch.topk(logits, 5)
    want = list(dict.fromkeys([int(i) for i in top.indices] + PROBE_IDS))
    return {"step": step, "ids": want, "logits": [r(logits[i]) for i in want],
            "max": r(logits.max()), "mean": r(logits.mean()), "std": r(logits.std())}


def dump_cases_json(path, header, cases):
    """Pretty but compact: header keys one per line, one line per case."""
    lines = ["{"]
    for k, v in header.items():
        lines.append(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},")
    lines.append(' "cases": [')
    for i, c in enumerate(cases):
        sep = "," if i + 1 < len(cases) else ""
        lines.append("  " + json.dumps(c, ensure_ascii=False) + sep)
    lines.append(" ]")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {path} ({len(text.encode())} bytes)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf")
    ap.add_argument("--out-dir", default=os.path.join(REPO, "tests", "golden"))
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    gguf_path = os.path.abspath(args.gguf)
    digest = sha256_file(gguf_path)
    assert digest == MODEL_SHA256, f"unexpected model sha256 {digest}"
    d, name = os.path.split(gguf_path)
    source = (f"tools/reference/golden.py: transformers {transformers.__version__}, "
              f"torch {torch.__version__} (CPU, float32), tokenizers {tokenizers.__version__}, "
              f"gguf {getattr(gguf, '__version__', 'unknown')}")

    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    ref, meta = build_reference_tokenizer(gguf_path)
    backend = describe_backend(tok)
    print("transformers GGUF tokenizer:", json.dumps(backend, ensure_ascii=False, indent=1))
    print("bos", tok.bos_token, tok.bos_token_id, "eos", tok.eos_token, tok.eos_token_id,
          "gguf meta", {k: v for k, v in meta.items() if k != "chat_template"})
    print("chat_template:", repr(meta["chat_template"]))
    assert tok.bos_token_id == meta["bos_token_id"] == 1
    assert tok.eos_token_id == meta["eos_token_id"] == 2
    assert tok.chat_template == meta["chat_template"]
    eos_id = meta["eos_token_id"]

    def hf_ids(text):
        return tok(text, add_special_tokens=True)["input_ids"]

    def ref_ids(text):
        return ref.encode(text, add_special_tokens=True).ids

    add_bos = hf_ids("Hello")[:1] == [tok.bos_token_id]
    assert add_bos == meta["add_bos_token"] == False  # noqa: E712

    # ---- tokenizer golden ----
    tcases, differ = [], []
    for text in TOKENIZER_TEXTS:
        ids, hids = ref_ids(text), hf_ids(text)
        assert ref.decode(ids, skip_special_tokens=False) == text, text
        case = {"text": text, "ids": ids}
        if ids != hids:
            assert has_numeric(text), f"reference and transformers disagree on a digit-free text: {text!r}"
            case["transformers_gguf_ids"] = hids
            differ.append(text)
        tcases.append(case)
    print("texts where transformers' GGUF tokenizer differs from the real SmolLM2 one:", differ)
    dump_cases_json(os.path.join(args.out_dir, "smollm2_tokenizer.json"), {
        "source": source,
        "tokenizer": "SmolLM2 (tokenizers: Sequence[Digits(individual_digits), ByteLevel(use_regex)] "
                     "over GGUF vocab/merges); 'transformers_gguf_ids' where transformers' GGUF "
                     "conversion (plain ByteLevel, no digit split) differs",
        "add_bos": add_bos,
        "bos_id": meta["bos_token_id"],
        "eos_id": eos_id,
    }, tcases)

    # ---- generation golden ----
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, torch_dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    cfg = model.config
    print("config:", {k: getattr(cfg, k, None) for k in (
        "num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
        "num_key_value_heads", "vocab_size", "rope_theta", "rope_parameters", "rms_norm_eps",
        "tie_word_embeddings", "max_position_embeddings")})
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight), "expected tied embeddings"
    assert model.lm_head.weight.dtype == torch.float32

    def chatml(content):
        return tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                       add_generation_prompt=True)

    prompts = [
        ("plain", PLAIN_PROMPT),
        ("chatml", chatml(CHAT_QUESTION)),
        ("autoj_pairwise_chatml", chatml(pick_autoj_example(model, ref_ids, chatml, eos_id))),
    ]

    gcases = []
    for case_name, prompt in prompts:
        pids = ref_ids(prompt)
        hids = hf_ids(prompt)
        assert len(pids) <= MAX_PROMPT_TOKENS, (case_name, len(pids))
        if not has_numeric(prompt):
            assert pids == hids, case_name
        ids, steps = greedy(model, pids, eos_id)
        diff = check_greedy(model, pids, ids, steps, eos_id)
        first_eos = ids.index(eos_id) if eos_id in ids else None
        assert first_eos is None or first_eos >= MIN_TOKENS_BEFORE_EOS, (case_name, first_eos)
        gaps = []
        for lg in steps:
            t2 = torch.topk(lg, 2).values
            gaps.append(float(t2[0] - t2[1]))
        top5 = torch.topk(steps[0], 5)
        last = len(steps) - 1
        case = {
            "name": case_name,
            "prompt": prompt,
            "prompt_ids": pids,
            "transformers_gguf_prompt_ids_equal": pids == hids,
            "max_new_tokens": MAX_NEW_TOKENS,
            "ids": ids,
            "text": ref.decode(ids, skip_special_tokens=False),
            "top5": [{"id": int(i), "logit": r(v)} for v, i in zip(top5.values, top5.indices)],
            "min_top2_gap": r(min(gaps)),
            "min_top2_gap_step": int(np.argmin(gaps)),
            "top2_gaps": [r(g, 4) for g in gaps],
            "logits_at": [logits_record(s, steps[s]) for s in sorted({0, 1, last // 2, last})],
        }
        gcases.append(case)
        print(f"\n[{case_name}] prompt tokens {len(pids)} (transformers ids equal: {pids == hids}), "
              f"generated {len(ids)}, eos at {first_eos}, cache-vs-full max diff {diff:.2e}")
        print("  text:", repr(case["text"]))
        print("  top5:", case["top5"])
        print("  min_top2_gap:", case["min_top2_gap"], "at step", case["min_top2_gap_step"])

    dump_cases_json(os.path.join(args.out_dir, "smollm2_generate.json"), {
        "source": source,
        "model_sha256": MODEL_SHA256,
        "eos_id": eos_id,
        "note": "greedy, float32 dequantised GGUF weights; step s = logits after prompt_ids + ids[:s]; "
                "logits_at lists that step's top-5 ids plus fixed probe ids",
    }, gcases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
