#!/usr/bin/env python3
"""A tiny random-weight MistralForCausalLM with Prometheus 2's structure, and transformers'
greedy generations of it, for tests/hf_import.rs.

Prometheus 2 (prometheus-eval/prometheus-7b-v2.0) is a MistralForCausalLM: grouped KV heads
(8 of 32), rope_theta 1e6, no sliding window, a LLaMA SentencePiece tokenizer and
Mistral-Instruct's chat template. This writes the same at a tiny size (2 layers, hidden 64,
4 heads, 2 KV heads, the 400-piece SentencePiece model tests/fixtures/spm_bpe.model) into
tests/fixtures/mistral_tiny/: config.json and model.safetensors (bfloat16, as Prometheus is
published) saved by transformers, tokenizer.model, and tokenizer.json/tokenizer_config.json
saved by transformers' LlamaTokenizer with Mistral-Instruct's template, all in the layout
prometheus-7b-v2.0 has (see as_published).

golden.json holds, per prompt, the ids of the prompt wrapped by that template
(apply_chat_template's text, tokenized as transformers does), the greedy ids, every step's
top-1/top-2 margin and its top 5 (id, logit), from the saved bfloat16 weights run in float32
with eager attention on the CPU. The seed is the first whose every step's margin is at least
MIN_MARGIN, so that f16 weights and an f16 KV cache cannot flip a greedy choice.

Run with the reference venv:
    ~/.cache/webjudge/refvenv/bin/python tools/reference/mistral_fixture.py
"""

import json
import pathlib
import shutil
import tempfile

import torch
import transformers
from tiny_model import (first_seed_with_margins, new_fixture, random_model, rewrite_as_published, wrapped_prompts,
                        write_golden)
from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "mistral_tiny"
SENTENCEPIECE = ROOT / "tests" / "fixtures" / "spm_bpe.model"
# prometheus-7b-v2.0's tokenizer_config.json chat_template (Mistral-7B-Instruct-v0.2's).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
PROMPTS = ["Hello world", "The final verdict is [[A]] or [[B]] for a tie."]
NEW_TOKENS = 12
MIN_MARGIN = 0.05


def tokenizer():
    """LLaMA's SentencePiece tokenizer as Mistral-7B-Instruct ships it, `legacy` (every text
    segment gets SentencePiece's dummy prefix, so "<s>[INST]" is <s> then "▁[", Mistral's
    own ids 1, 733); transformers' non-legacy conversion would drop that prefix after <s>."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(SENTENCEPIECE, pathlib.Path(tmp) / "tokenizer.model")
        (pathlib.Path(tmp) / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "legacy": True,
            "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "chat_template": CHAT_TEMPLATE,
        }))
        return AutoTokenizer.from_pretrained(tmp)


def config():
    return MistralConfig(
        vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=32768, rope_theta=1e6, sliding_window=None,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    )


def as_published(directory):
    """Rewrites transformers 5's files as prometheus-7b-v2.0 has them (written by transformers
    4): a top-level rope_theta instead of rope_parameters, the chat template and `legacy`
    inside tokenizer_config.json instead of chat_template.jinja."""
    def edit_config(config):
        config["rope_theta"] = config.pop("rope_parameters")["rope_theta"]
    # transformers 5 drops `legacy` when saving, and reads its absence as non-legacy.
    rewrite_as_published(directory, edit_config, legacy=True)


def main():
    # The reference reads the fixture's own tokenizer files.
    tok = new_fixture(OUT, tokenizer(), as_published, SENTENCEPIECE)
    assert tok.chat_template == CHAT_TEMPLATE
    prompts = wrapped_prompts(tok, PROMPTS)
    with tempfile.TemporaryDirectory() as tmp:
        make = lambda seed: random_model(lambda: MistralForCausalLM(config()), seed)  # noqa: E731
        seed, model, cases, smallest = first_seed_with_margins(make, MistralForCausalLM, tmp, prompts, NEW_TOKENS,
                                                               MIN_MARGIN, as_published)
        assert model.config.rope_parameters["rope_theta"] == 1e6 and model.config.sliding_window is None
        for name in ["config.json", "model.safetensors"]:
            shutil.copy(pathlib.Path(tmp) / name, OUT / name)
    source = (f"tools/reference/mistral_fixture.py, seed {seed}: transformers {transformers.__version__}, "
              f"torch {torch.__version__}, MistralForCausalLM, bfloat16 weights run in float32, eager attention, CPU")
    golden = {"source": source, "min_margin": MIN_MARGIN, "smallest_margin": round(smallest, 5), "cases": cases}
    write_golden(OUT, golden, seed)


if __name__ == "__main__":
    main()
