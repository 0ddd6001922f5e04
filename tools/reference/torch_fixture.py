"""Writes tests/fixtures/torch_tiny.bin, a real torch.save of a small state dict, and
tests/fixtures/torch_tiny.json with its tensors (dtype, shape, values), so that
tests/hf_import.rs checks src/convert/torch_pickle.rs against PyTorch's own output.

The state dict is an nn.Linear's (an OrderedDict with `_metadata`) plus tensors of each
accepted dtype, a 0-d scalar, and two views into one shared storage (the second at a
non-zero storage offset). Run with the reference venv:
    /root/.cache/webjudge/refvenv/bin/python tools/reference/torch_fixture.py
"""

import json
import pathlib

import torch

out = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures"
torch.manual_seed(0)
state = torch.nn.Linear(4, 3).half().state_dict()
state["model.layers.0.input_layernorm.weight"] = torch.randn(6)
state["model.embed_tokens.weight"] = torch.randn(2, 3).bfloat16()
state["scalar"] = torch.tensor(2.5)
shared = torch.randn(24).half()
state["view.first"] = shared[:12].view(3, 4)
state["view.second"] = shared[12:].view(2, 2, 3)
torch.save(state, out / "torch_tiny.bin")

names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
expected = {
    name: {"dtype": names[t.dtype], "shape": list(t.shape), "values": t.float().flatten().tolist()}
    for name, t in state.items()
}
(out / "torch_tiny.json").write_text(json.dumps(expected, indent=1) + "\n")
