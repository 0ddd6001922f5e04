#!/usr/bin/env python3
"""Write the test model as a Hugging Face safetensors checkpoint (f32), for measuring
webjudge's quantizers against the unquantized weights.

transformers loads the Q4_1 GGUF, dequantizes it to f32 and undoes llama.cpp's Q/K row
permutation, so the result is laid out like any Hugging Face LLaMA checkpoint. The
tokenizer.json is webjudge's conversion of the same GGUF (tests prove it tokenizes like
the real SmolLM2 tokenizer; transformers' own GGUF conversion splits digits differently).

    $PY tools/reference/export_hf_checkpoint.py GGUF TOKENIZER_JSON OUT_DIR
"""

import json
import os
import shutil
import sys

import torch
from gguf import GGUFReader
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM


def main():
    gguf_path, tokenizer_json, out = sys.argv[1:4]
    d, name = os.path.split(os.path.abspath(gguf_path))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    # save_pretrained refuses models loaded from GGUF: write the tensors and config directly.
    os.makedirs(out, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        del state["lm_head.weight"]
    save_file(state, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1, default=str)
    shutil.copy(tokenizer_json, os.path.join(out, "tokenizer.json"))
    fields = GGUFReader(gguf_path).fields
    config = {"chat_template": fields["tokenizer.chat_template"].contents(),
              "add_bos_token": bool(fields["tokenizer.ggml.add_bos_token"].contents())}
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    print(out)


if __name__ == "__main__":
    main()
