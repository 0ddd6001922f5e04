#!/usr/bin/env python3
"""A tiny random-weight LlamaForCausalLM with Llama-3.1's structure, and transformers' greedy
generations of it, for tests/hf_import.rs.

Llama-3.1-8B-Instruct (the base of Skywork-Critic and Selene Mini) is a LlamaForCausalLM with
grouped KV heads, rope_theta 5e5, Llama 3's RoPE scaling (`rope_type: "llama3"`: factor 8, low
and high frequency factors 1 and 4, original context 8192), a byte-level BPE tokenizer with
header-style special tokens and its own chat template. This writes the same at a tiny size
(2 layers, hidden 64, 4 heads, 2 KV heads, head_dim 16) into tests/fixtures/llama31_tiny/:
config.json and model.safetensors (bfloat16, as Llama-3.1 is published) saved by transformers,
and tokenizer.json/tokenizer_config.json: a byte-level BPE of a few hundred pieces trained here
by `tokenizers` with Llama 3's pre-tokenizer regex and special tokens, saved by transformers
with Llama-3.1-8B-Instruct's chat template (tests/fixtures/chat_templates/).

The original context is 64, not 8192, so that at head_dim 16 the pairs fall in all three of
Llama 3's regimes (wavelengths under 16 kept, over 64 divided by 8, the blend between) and
the scaling changes the greedy ids of prompts a few dozen tokens long.

golden.json holds transformers' `inv_freq` (the scaled inverse frequencies), and per prompt
the ids of the prompt wrapped by the template (apply_chat_template's text, tokenized as
transformers does), the greedy ids, every step's top-1/top-2 margin and its top 5 (id, logit),
from the saved bfloat16 weights run in float32 with eager attention on the CPU. The seed is the
first whose every step's margin is at least MIN_MARGIN.

Run with the reference venv:
    ~/.cache/webjudge/refvenv/bin/python tools/reference/llama31_fixture.py
"""

import pathlib
import shutil
import tempfile

import torch
import transformers
from tiny_model import (first_seed_with_margins, new_fixture, random_model, rewrite_as_published, wrapped_prompts,
                        write_golden)
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "llama31_tiny"
CHAT_TEMPLATE = (ROOT / "tests" / "fixtures" / "chat_templates" / "llama-3.1-8b-instruct.jinja").read_text()
# Llama 3's tokenizer.json pre-tokenizer split.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
TRAINING_TEXT = (ROOT / "tests" / "fixtures" / "perplexity" / "calibration.txt").read_text()
VOCAB = 512
PROMPTS = ["Hello world", "Which response is better? Output [[A]] or [[B]] after your reasoning."]
NEW_TOKENS = 12
MIN_MARGIN = 0.05
ROPE_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64}


def tokenizer():
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - len(SPECIAL), special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator([TRAINING_TEXT], trainer)
    bpe.add_special_tokens(SPECIAL)
    bos = bpe.token_to_id("<|begin_of_text|>")
    bpe.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   chat_template=CHAT_TEMPLATE)


def config(tok):
    return LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=1024, rms_norm_eps=1e-5,
        rope_parameters={"rope_theta": 500000.0, **ROPE_SCALING}, tie_word_embeddings=False,
        bos_token_id=tok.convert_tokens_to_ids("<|begin_of_text|>"),
        eos_token_id=[tok.convert_tokens_to_ids(t) for t in ["<|end_of_text|>", "<|eot_id|>"]],
    )


def as_published(directory):
    """Llama-3.1-8B-Instruct's files as published (by transformers 4): `rope_theta` and
    `rope_scaling` at the top of config.json, the chat template inside tokenizer_config.json."""
    def edit(config):
        rope = config.pop("rope_parameters")
        config["rope_theta"] = rope.pop("rope_theta")
        config["rope_scaling"] = rope
    rewrite_as_published(directory, edit)


def main():
    tok = new_fixture(OUT, tokenizer(), as_published)
    assert tok.chat_template == CHAT_TEMPLATE
    prompts = wrapped_prompts(tok, PROMPTS, add_generation_prompt=True)
    with tempfile.TemporaryDirectory() as tmp:
        make = lambda seed: random_model(lambda: LlamaForCausalLM(config(tok)), seed)  # noqa: E731
        seed, model, cases, smallest = first_seed_with_margins(make, LlamaForCausalLM, tmp, prompts, NEW_TOKENS,
                                                               MIN_MARGIN, as_published)
        assert model.config.rope_parameters["rope_type"] == "llama3"
        inv_freq = [float(f) for f in model.model.rotary_emb.inv_freq]
        for name in ["config.json", "model.safetensors"]:
            shutil.copy(pathlib.Path(tmp) / name, OUT / name)
    source = (f"tools/reference/llama31_fixture.py, seed {seed}: transformers {transformers.__version__}, "
              f"torch {torch.__version__}, LlamaForCausalLM with rope_type llama3, bfloat16 weights run in "
              f"float32, eager attention, CPU")
    golden = {"source": source, "inv_freq": inv_freq, "min_margin": MIN_MARGIN, "smallest_margin": round(smallest, 5),
              "cases": cases}
    write_golden(OUT, golden, seed)


if __name__ == "__main__":
    main()
