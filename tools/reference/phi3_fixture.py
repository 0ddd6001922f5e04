#!/usr/bin/env python3
"""A tiny random-weight Phi3ForCausalLM with Phi-3.5-mini's structure, and transformers'
greedy generations of it, for tests/hf_import.rs.

Phi-3.5-mini-instruct (the base of Flow-Judge-v0.1) is a Phi3ForCausalLM: the LLaMA layer with
its queries, keys and values fused into one `qkv_proj` and its gate and up projections into one
`gate_up_proj` (gate first), LongRoPE (`rope_scaling` of type "longrope": short and long factors
per rotated pair, the short ones within `original_max_position_embeddings` 4096 of the 131072
positions, cos and sin times sqrt(1 + ln(32) / ln(4096))), a LLaMA SentencePiece tokenizer of
32000 pieces plus 11 added tokens (its chat markers, with `rstrip`) under an embedding of 32064
rows, and its own chat template. This writes the same at a tiny size (2 layers, hidden 64, 4
heads, 2 KV heads, head_dim 16) into tests/fixtures/phi3_tiny/: config.json (written as
Phi-3.5-mini's is, by transformers 4: top-level rope_theta, rope_scaling and
original_max_position_embeddings) and model.safetensors (bfloat16, as Phi-3.5 is published)
saved by transformers, generation_config.json (its end-of-sequence ids, Phi-3.5's three),
tokenizer.model (the 400-piece tests/fixtures/spm_bpe.model), and
tokenizer.json/tokenizer_config.json saved by transformers' LlamaTokenizer with Phi-3.5's added
tokens, flags and chat template (tests/fixtures/chat_templates/).

The vocabulary is 411 ids (400 pieces, 11 added) and the embedding 448 rows: the 37 padding
rows are zero, as nothing trains them, and no greedy id is one of them. The original context is
64, not 4096, and the extended one 1024, so the attention factor is sqrt(1 + ln(16) / ln(64));
the short factors rise from 1 to 3 over the pairs, so that they change the greedy ids of prompts
a few dozen tokens long (checked: the same weights without them generate other ids).

golden.json holds transformers' `inv_freq` (the short factors' inverse frequencies), its
attention factor (`attention_scaling`), and per prompt the ids of the prompt wrapped by the
template (apply_chat_template's text, tokenized as transformers does), the greedy ids, every
step's top-1/top-2 margin and its top 5 (id, logit), from the saved bfloat16 weights run in
float32 with eager attention on the CPU. The seed is the first whose every step's margin is at
least MIN_MARGIN and whose greedy ids differ without the LongRoPE factors.

Run with the reference venv:
    ~/.cache/webjudge/refvenv/bin/python tools/reference/phi3_fixture.py
"""

import json
import math
import pathlib
import shutil
import tempfile

import torch
import transformers
from tiny_model import (first_seed_with_margins, generate, new_fixture, random_model, rewrite_as_published,
                        wrapped_prompts, write_golden)
from transformers import AutoTokenizer, Phi3Config, Phi3ForCausalLM

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "phi3_tiny"
SENTENCEPIECE = ROOT / "tests" / "fixtures" / "spm_bpe.model"
CHAT_TEMPLATE = (ROOT / "tests" / "fixtures" / "chat_templates" / "phi-3.5-mini-instruct.jinja").read_text()
# Phi-3.5-mini-instruct's added tokens (ids 32000 to 32010 there, after the 400 pieces here):
# content, rstrip, special.
ADDED = [("<|endoftext|>", False, True), ("<|assistant|>", True, True), ("<|placeholder1|>", True, True),
         ("<|placeholder2|>", True, True), ("<|placeholder3|>", True, True), ("<|placeholder4|>", True, True),
         ("<|system|>", True, True), ("<|end|>", True, True), ("<|placeholder5|>", True, True),
         ("<|placeholder6|>", True, True), ("<|user|>", True, True)]
PIECES = 400
VOCAB = 448
PROMPTS = ["Hello world", "Which response is better?  Output [[A]] or [[B]] after your reasoning.\n"]
NEW_TOKENS = 12
MIN_MARGIN = 0.05
ORIGINAL_CONTEXT = 64
CONTEXT = 1024
HEAD_DIM = 16
SHORT_FACTOR = [round(1 + 2 * (i / (HEAD_DIM // 2 - 1)) ** 2, 4) for i in range(HEAD_DIM // 2)]
LONG_FACTOR = [round(4 * f, 4) for f in SHORT_FACTOR]


def tokenizer():
    """Phi-3.5-mini's tokenizer_config.json over the fixture's SentencePiece model: no BOS
    added, non-legacy, `<|endoftext|>` the EOS, the chat markers added with `rstrip`."""
    decoder = {"0": ("<unk>", False, True), "1": ("<s>", False, True), "2": ("</s>", True, False)}
    decoder.update({str(PIECES + i): token for i, token in enumerate(ADDED)})
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(SENTENCEPIECE, pathlib.Path(tmp) / "tokenizer.model")
        (pathlib.Path(tmp) / "tokenizer_config.json").write_text(json.dumps({
            "add_bos_token": False, "add_eos_token": False,
            "added_tokens_decoder": {
                id: {"content": content, "lstrip": False, "normalized": False, "rstrip": rstrip,
                     "single_word": False, "special": special}
                for id, (content, rstrip, special) in decoder.items()},
            "bos_token": "<s>", "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False,
            "eos_token": "<|endoftext|>", "legacy": False, "pad_token": "<|endoftext|>", "padding_side": "left",
            "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>", "use_default_system_prompt": False,
        }))
        return AutoTokenizer.from_pretrained(tmp)


def config(tok, longrope=True):
    rope = {"rope_theta": 10000.0}
    if longrope:
        rope.update({"rope_type": "longrope", "short_factor": SHORT_FACTOR, "long_factor": LONG_FACTOR})
    return Phi3Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=CONTEXT, original_max_position_embeddings=ORIGINAL_CONTEXT,
        rope_parameters=rope, rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=CONTEXT,
        bos_token_id=1, eos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
    )


def as_published(directory):
    """Phi-3.5-mini-instruct's files as published (by transformers 4): `rope_theta` and
    `rope_scaling` (with `type`) at the top of config.json, the chat template, `legacy` and
    `add_bos_token`/`add_eos_token` (which transformers 5 drops) inside tokenizer_config.json."""
    def edit(config):
        rope = config.pop("rope_parameters")
        config["rope_theta"] = rope.pop("rope_theta")
        config["rope_scaling"] = {"long_factor": rope["long_factor"], "short_factor": rope["short_factor"],
                                  "type": "longrope"}
    rewrite_as_published(directory, edit, legacy=False, add_bos_token=False, add_eos_token=False)


def padded(model, rows):
    """Zeroes the embedding's and the output's rows past the tokenizer's vocabulary."""
    with torch.no_grad():
        model.model.embed_tokens.weight[rows:] = 0
        model.lm_head.weight[rows:] = 0
    return model


def main():
    tok = new_fixture(OUT, tokenizer(), as_published, SENTENCEPIECE)
    assert tok.chat_template == CHAT_TEMPLATE and len(tok) == PIECES + len(ADDED)
    prompts = wrapped_prompts(tok, PROMPTS, add_generation_prompt=True)
    for _, _, prompt_ids in prompts:
        # transformers switches to the long factors past the original context.
        assert len(prompt_ids) + NEW_TOKENS <= ORIGINAL_CONTEXT, len(prompt_ids)
    with tempfile.TemporaryDirectory() as tmp:
        def accept(model, cases):
            # No padding id chosen, and ids the same weights with the default RoPE (no factors,
            # no attention factor) do not give.
            if any(i >= len(tok) for c in cases for i in c["ids"]):
                return False
            plain = Phi3ForCausalLM(config(tok, longrope=False))
            plain.load_state_dict(model.state_dict())
            plain = plain.to(torch.float32).eval()
            return all(generate(plain, p, NEW_TOKENS)[0] != c["ids"] for (_, _, p), c in zip(prompts, cases))

        make = lambda seed: padded(random_model(lambda: Phi3ForCausalLM(config(tok)), seed), len(tok))  # noqa: E731
        seed, model, cases, smallest = first_seed_with_margins(make, Phi3ForCausalLM, tmp, prompts, NEW_TOKENS,
                                                               MIN_MARGIN, as_published, accept)
        assert model.config.rope_parameters["rope_type"] == "longrope"
        rotary = model.model.rotary_emb
        inv_freq = [float(f) for f in rotary.inv_freq]
        attention_factor = float(rotary.attention_scaling)
        factor = CONTEXT / ORIGINAL_CONTEXT
        assert abs(attention_factor - math.sqrt(1 + math.log(factor) / math.log(ORIGINAL_CONTEXT))) < 1e-12
        for name in ["config.json", "model.safetensors"]:
            shutil.copy(pathlib.Path(tmp) / name, OUT / name)
    # Phi-3.5-mini-instruct's generation_config.json: generate stops at <|end|> and
    # <|assistant|> too, which config.json does not name.
    eos = [tok.convert_tokens_to_ids(t) for t in ["<|end|>", "<|assistant|>", "<|endoftext|>"]]
    (OUT / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 1, "eos_token_id": eos, "pad_token_id": eos[-1]}, indent=2) + "\n")
    source = (f"tools/reference/phi3_fixture.py, seed {seed}: transformers {transformers.__version__}, "
              f"torch {torch.__version__}, Phi3ForCausalLM with LongRoPE within its original context, bfloat16 "
              f"weights run in float32, eager attention, CPU")
    golden = {"source": source, "inv_freq": inv_freq, "attention_factor": attention_factor,
              "min_margin": MIN_MARGIN, "smallest_margin": round(smallest, 5), "cases": cases}
    write_golden(OUT, golden, seed)


if __name__ == "__main__":
    main()
