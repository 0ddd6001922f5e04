#!/usr/bin/env python3
"""Greedy generation of the act-order GPTQ fixture (tests/fixtures/gptq_actorder, written by
gptq_fixture.py) with Hugging Face transformers, for tests/gptq.rs.

The GPTQ layers are dequantized with numpy from the AutoGPTQ format alone
(W[n][k] = scales[g][n] * (q[k][n] - (qzeros[g][n] + 1)), g = g_idx[k]; exact in float32),
the other tensors widened from float16, and the model run as transformers'
LlamaForCausalLM in float32 with eager attention on the CPU. Per prompt it records the greedy
ids, every step's logits (the vocabulary has 96 entries) and the top-1/top-2 gaps, in
tests/fixtures/gptq_actorder/golden.json. The prompts are the first two of a fixed list of
candidates whose every step's top-1/top-2 gap is at least MIN_GAP, so that agreement on the
ids is not decided by rounding. Run with the reference venv:
    ~/.cache/webjudge/refvenv/bin/python tools/reference/gptq_golden.py
"""

import json
import pathlib

import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import LlamaConfig, LlamaForCausalLM

FIXTURE = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "gptq_actorder"
CANDIDATES = [[1, k, 7 * k % 96, 3 * k % 96] for k in range(4, 96)]
CASES = 2
NEW_TOKENS = 16
MIN_GAP = 0.15


def unpack_rows(words):
    """int32 [n, m] -> [n*8, m] codes, code 8i+j at bits 4j of row i."""
    words = words.view(np.uint32)
    codes = np.empty((words.shape[0] * 8, words.shape[1]), dtype=np.int64)
    for j in range(8):
        codes[j::8, :] = (words >> np.uint32(4 * j)) & 15
    return codes


def unpack_cols(words):
    """int32 [m, n] -> [m, n*8] codes, code 8i+j at bits 4j of column i."""
    words = words.view(np.uint32)
    codes = np.empty((words.shape[0], words.shape[1] * 8), dtype=np.int64)
    for j in range(8):
        codes[:, j::8] = (words >> np.uint32(4 * j)) & 15
    return codes


def dequantize(tensors, prefix):
    q = unpack_rows(tensors[f"{prefix}.qweight"])  # [in, out]
    zero = unpack_cols(tensors[f"{prefix}.qzeros"]) + 1  # [groups, out]
    scales = tensors[f"{prefix}.scales"].astype(np.float32)
    g_idx = tensors[f"{prefix}.g_idx"]
    w = scales[g_idx, :] * (q - zero[g_idx, :]).astype(np.float32)
    return np.ascontiguousarray(w.T)  # [out, in]


def main():
    config = json.loads((FIXTURE / "config.json").read_text())
    tensors = load_file(str(FIXTURE / "model.safetensors"))
    state = {}
    for name, value in tensors.items():
        if name.endswith(".qweight"):
            prefix = name[: -len(".qweight")]
            state[f"{prefix}.weight"] = torch.from_numpy(dequantize(tensors, prefix))
        elif not name.endswith((".qzeros", ".scales", ".g_idx")):
            state[name] = torch.from_numpy(value.astype(np.float32))
    llama = LlamaConfig(**{k: v for k, v in config.items() if k != "torch_dtype"})
    llama._attn_implementation = "eager"
    model = LlamaForCausalLM(llama).to(torch.float32).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)

    cases = []
    with torch.no_grad():
        for prompt in CANDIDATES:
            if len(cases) == CASES:
                break
            ids, steps = list(prompt), []
            for _ in range(NEW_TOKENS):
                logits = model(torch.tensor([ids])).logits[0, -1]
                steps.append(logits)
                ids.append(int(torch.argmax(logits)))
            gaps = [float(torch.topk(s, 2).values[0] - torch.topk(s, 2).values[1]) for s in steps]
            if min(gaps) < MIN_GAP:
                continue
            cases.append({
                "prompt_ids": prompt,
                "ids": ids[len(prompt):],
                "min_top2_gap": min(gaps),
                "top2_gaps": [round(g, 5) for g in gaps],
                "logits": [[round(float(v), 6) for v in s] for s in steps],
            })
            largest = max(float(s.abs().max()) for s in steps)
            print(f"prompt {prompt}: ids {ids[len(prompt):]}, min top-2 gap {min(gaps):.4f}, largest |logit| {largest:.2f}")
    source = (f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, "
              "float32, eager attention, GPTQ layers dequantized with numpy")
    # One case per line: the logits are long.
    text = (f'{{"source": {json.dumps(source)},\n "min_gap": {MIN_GAP},\n "cases": [\n  '
            + ",\n  ".join(json.dumps(c) for c in cases) + "\n ]\n}\n")
    (FIXTURE / "golden.json").write_text(text)


main()
