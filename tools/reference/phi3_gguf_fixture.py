#!/usr/bin/env python3
"""tests/fixtures/phi3_tiny.f16.gguf: the tiny Phi-3.5-structured checkpoint of
phi3_fixture.py (tests/fixtures/phi3_tiny/) as llama.cpp's own converter writes it
(convert_hf_to_gguf.py's Phi3MiniModel, f16): architecture `phi3`, `phi3.*` metadata, fused
`blk.N.attn_qkv.weight` and `blk.N.ffn_up.weight` (gate rows, then up rows), Q/K rows in
Hugging Face's order (llama.cpp runs phi3 with NEOX RoPE, so its converter does not permute
them), `rope_factors_short.weight`/`rope_factors_long.weight` and
`phi3.rope.scaling.attn_factor`. Its greedy ids are the HF fixture's golden.json's.

The converter reads config.json through transformers' AutoConfig when it can; under
transformers 5 that moves `rope_theta` into `rope_parameters`, where a converter written for
transformers 4 does not look, so config.json is read as it is (as transformers 4's `to_dict`
gives it for Phi-3.5's published layout).

    PYTHONPATH=LLAMA_CPP/gguf-py ~/.cache/webjudge/refvenv/bin/python \\
        tools/reference/phi3_gguf_fixture.py LLAMA_CPP
(LLAMA_CPP: a llama.cpp checkout, e.g. llama-cpp-python's vendor/llama.cpp.)
"""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
HF = ROOT / "tests" / "fixtures" / "phi3_tiny"
OUT = ROOT / "tests" / "fixtures" / "phi3_tiny.f16.gguf"


def main():
    llama_cpp = pathlib.Path(sys.argv[1]).resolve()
    sys.path.insert(0, str(llama_cpp))
    sys.argv = [str(llama_cpp / "convert_hf_to_gguf.py"), str(HF), "--outtype", "f16", "--outfile", str(OUT)]
    import convert_hf_to_gguf as converter

    converter.ModelBase.load_hparams = staticmethod(
        lambda dir_model, *_: json.loads((pathlib.Path(dir_model) / "config.json").read_text()))
    converter.main()
    commit = subprocess.run(["git", "-C", str(llama_cpp), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"{OUT}: {OUT.stat().st_size} bytes, llama.cpp {commit or llama_cpp}")


if __name__ == "__main__":
    main()
