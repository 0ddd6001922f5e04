#!/usr/bin/env python3
"""tests/fixtures/phi3_tiny.f16.gguf: the tiny Phi-3.5-structured checkpoint of
phi3_fixture.py (tests/fixtures/phi3_tiny/) as llama.cpp's own converter writes it
(convert_hf_to_gguf.py's Phi3MiniModel, f16): architecture `phi3`, `phi3.*` metadata, fused
`blk.N.attn_qkv.weight` and `blk.N.ffn_up.weight` (gate rows, then up rows), Q/K rows in
Hugging Face's order (llama.cpp runs phi3 with NEOX RoPE, so its converter does not permute
them), `rope_factors_short.weight`/`rope_factors_long.weight` and
`phi3.rope.scaling.attn_factor`. Its greedy ids are the HF fixture's golden.json's.

Converted through llama_cpp_gguf.py (config.json read as it is).

    ~/.cache/webjudge/refvenv/bin/python \\
        tools/reference/phi3_gguf_fixture.py LLAMA_CPP
(LLAMA_CPP: a llama.cpp checkout, e.g. llama-cpp-python's vendor/llama.cpp.)
"""

import pathlib
import sys

import llama_cpp_gguf

ROOT = pathlib.Path(__file__).resolve().parents[2]
HF = ROOT / "tests" / "fixtures" / "phi3_tiny"
OUT = ROOT / "tests" / "fixtures" / "phi3_tiny.f16.gguf"


def main():
    commit = llama_cpp_gguf.convert(sys.argv[1], HF, OUT, "f16")
    print(f"{OUT}: {OUT.stat().st_size} bytes, llama.cpp {commit}")

if __name__ == "__main__":
    main()
