"""Converts a tiny checkpoint fixture to GGUF with llama.cpp's own convert_hf_to_gguf.py (from
a llama.cpp checkout, e.g. the one vendored in llama-cpp-python's sdist, with its gguf-py), for
the fixture scripts (qwen2_fixture.py, phi3_gguf_fixture.py).

Two of the converter's steps are adjusted, neither touching what it writes for a tensor:
- it reads config.json through transformers' AutoConfig when it can; under transformers 5 that
  moves `rope_theta` into `rope_parameters`, where a converter written for transformers 4 does
  not look, so config.json is read as it is (the published layout the fixtures rewrite to);
- it recognises a BPE tokenizer's pre-tokenizer by hashing a test text's ids; a fixture's
  tokenizer, trained on a small text, has ids of its own, so `pre_tokenizer` names it.
"""

import json
import pathlib
import subprocess
import sys


def convert(llama_cpp, checkpoint, outfile, outtype, pre_tokenizer=None):
    """Writes `outfile` from the Hugging Face directory `checkpoint`; returns llama.cpp's commit."""
    llama_cpp = pathlib.Path(llama_cpp).resolve()
    sys.path[:0] = [str(llama_cpp / "gguf-py"), str(llama_cpp)]
    import convert_hf_to_gguf as converter

    converter.ModelBase.load_hparams = staticmethod(
        lambda dir_model, *_: json.loads((pathlib.Path(dir_model) / "config.json").read_text()))
    if pre_tokenizer:
        converter.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre_tokenizer
    argv = sys.argv
    sys.argv = ["convert_hf_to_gguf.py", str(checkpoint), "--outtype", outtype, "--outfile", str(outfile)]
    try:
        converter.main()
    finally:
        sys.argv = argv
    commit = subprocess.run(["git", "-C", str(llama_cpp), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return commit or str(llama_cpp)
