#!/usr/bin/env python3
"""A tiny random-weight Qwen2ForCausalLM with Qwen2.5's structure, transformers' greedy
generations of it, and the GGUF llama.cpp's converter writes of it, for tests/hf_import.rs and
tests/convert.rs.

Qwen2.5-7B-Instruct (the base of CompassJudger-1-7B) is the LLaMA layer with biases on the
q, k and v projections, grouped KV heads, rope_theta 1e6, an untied lm_head (the 1.5B ties it:
with random weights a tied model only repeats its last token), a byte-level BPE
tokenizer without BOS (Qwen2's split regex, single digits, NFC), ChatML turns with a default
system message in its chat template, a `sliding_window` in config.json that
`use_sliding_window: false` turns off, and an embedding padded past the tokenizer's vocabulary
(152,064 rows for 151,665 tokens). This writes the same at a tiny size (2 layers, hidden 64,
4 heads, 2 KV heads, head_dim 16, 480 tokens in 512 rows, the padding rows zero as in the
published weights) into tests/fixtures/qwen2_tiny/: config.json and model.safetensors
(bfloat16) saved by transformers and rewritten as Qwen2.5's are published (rope_theta at the
top, a sliding_window of 32 with use_sliding_window false), tokenizer.json/tokenizer_config.json
(the tokenizer trained here by `tokenizers`, saved by transformers with Qwen2.5-7B-Instruct's
chat template from tests/fixtures/chat_templates/, without `add_bos_token`: the tokenizer's
post-processor says it adds no BOS).

golden.json holds, per prompt, the ids of the prompt wrapped by the template, the greedy ids,
every step's top-1/top-2 margin and its top 5 (id, logit), from the saved bfloat16 weights run
in float32 with eager attention on the CPU. The seed is the first whose every step's margin is
at least MIN_MARGIN.

tests/fixtures/qwen2_tiny.gguf is that checkpoint converted by llama.cpp's own
convert_hf_to_gguf.py (the one vendored in llama-cpp-python's sdist, with its gguf-py) with
`--outtype bf16` (through llama_cpp_gguf.py, told the pre-tokenizer is `qwen2`, which it is):
architecture `qwen2`, the q/k rows in Hugging Face's order (llama.cpp rotates Qwen2's halves),
the biases as f32.

Run with the reference venv, given the unpacked llama-cpp-python sdist:
    ~/.cache/webjudge/refvenv/bin/python tools/reference/qwen2_fixture.py path/to/vendor/llama.cpp
"""

import pathlib
import shutil
import sys
import tempfile

import llama_cpp_gguf
import torch
import transformers
from tiny_model import (first_seed_with_margins, new_fixture, random_model, rewrite_as_published, wrapped_prompts,
                        write_golden)
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "qwen2_tiny"
GGUF = ROOT / "tests" / "fixtures" / "qwen2_tiny.gguf"
CHAT_TEMPLATE = (ROOT / "tests" / "fixtures" / "chat_templates" / "qwen2.5-7b-instruct.jinja").read_text()
# Qwen2's tokenizer.json pre-tokenizer split.
QWEN2_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TRAINING_TEXT = (ROOT / "tests" / "fixtures" / "perplexity" / "calibration.txt").read_text()
TOKENS = 480
VOCAB = 512
PROMPTS = ["Hello world", "Which response is better? Output [[A]] or [[B]] after your reasoning."]
NEW_TOKENS = 12
MIN_MARGIN = 0.05
# Shorter than the context: converters must see that use_sliding_window is false.
UNUSED_SLIDING_WINDOW = 32

def tokenizer():
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=TOKENS - len(SPECIAL), special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator([TRAINING_TEXT], trainer)
    bpe.add_special_tokens(SPECIAL)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHAT_TEMPLATE)


def config(tok):
    return Qwen2Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, tie_word_embeddings=False,
        use_sliding_window=False, max_window_layers=2,
        bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"), eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
    )


def padding_zeroed(model, tokens):
    """The embedding's and the lm_head's rows past the tokenizer's vocabulary zeroed."""
    with torch.no_grad():
        model.model.embed_tokens.weight[tokens:] = 0
        model.lm_head.weight[tokens:] = 0
    return model


def as_published(directory):
    """Qwen2.5's files as published (by transformers 4): `rope_theta` at the top of config.json
    with a sliding_window it does not use, the chat template inside tokenizer_config.json."""
    def edit(config):
        config["rope_theta"] = config.pop("rope_parameters")["rope_theta"]
        config["rope_scaling"] = None
        config["sliding_window"] = UNUSED_SLIDING_WINDOW
    rewrite_as_published(directory, edit)


def main():
    llama_cpp = sys.argv[1]
    tok = new_fixture(OUT, tokenizer(), as_published)
    assert tok.chat_template == CHAT_TEMPLATE and len(tok) == TOKENS and tok.bos_token is None
    prompts = wrapped_prompts(tok, PROMPTS, add_generation_prompt=True)
    with tempfile.TemporaryDirectory() as tmp:
        make = lambda seed: padding_zeroed(random_model(lambda: Qwen2ForCausalLM(config(tok)), seed), TOKENS)  # noqa: E731
        seed, model, cases, smallest = first_seed_with_margins(make, Qwen2ForCausalLM, tmp, prompts, NEW_TOKENS,
                                                               MIN_MARGIN, as_published)
        assert model.model.layers[0].self_attn.q_proj.bias is not None and model.config.sliding_window is None
        assert all(i < TOKENS for case in cases for i in case["ids"])
        for name in ["config.json", "model.safetensors"]:
            shutil.copy(pathlib.Path(tmp) / name, OUT / name)
    source = (f"tools/reference/qwen2_fixture.py, seed {seed}: transformers {transformers.__version__}, "
              f"torch {torch.__version__}, Qwen2ForCausalLM, bfloat16 weights run in float32, eager attention, CPU")
    golden = {"source": source, "min_margin": MIN_MARGIN, "smallest_margin": round(smallest, 5), "cases": cases}
    write_golden(OUT, golden, seed)
    with tempfile.TemporaryDirectory() as tmp:
        # The converter reads the whole directory: the checkpoint without golden.json.
        checkpoint = pathlib.Path(tmp) / "qwen2-tiny"
        shutil.copytree(OUT, checkpoint, ignore=shutil.ignore_patterns("golden.json"))
        llama_cpp_commit = llama_cpp_gguf.convert(llama_cpp, checkpoint, GGUF, "bf16", pre_tokenizer="qwen2")
    print(f"{GGUF.name}: {GGUF.stat().st_size} bytes, llama.cpp {llama_cpp_commit}")

if __name__ == "__main__":
    main()
