#!/usr/bin/env python3
"""The importance matrix of tests/fixtures/mistral_tiny for a calibration text, computed as
llama.cpp's llama-imatrix defines it, in numpy from the checkpoint as published.

For every linear weight, the mean over all calibration tokens of the square of each input
column's activation (llama-imatrix's `values[j] / counts[j]`): the attention norm's output for
q/k/v, the attention's output for o, the feed-forward norm's output for gate/up, SwiGLU's output
for down; none for the lm_head (llama-imatrix skips `output.weight` by default). The text is
tokenized by the `tokenizers` library from the fixture's tokenizer.json (BOS, then the text
without special tokens) and cut as llama-imatrix cuts it: whole chunks of 512 tokens (of all the
tokens for a shorter text), each led by BOS, each from an empty context. The forward pass is
float64 over the bfloat16 weights read from model.safetensors by hand, with Hugging Face's own
RoPE convention (rotate_half over unpermuted q/k rows), so nothing of webjudge's is used.

Writes tests/golden/imatrix_mistral_tiny.json: the text, the chunks' token ids and, per weight
(model directory names), the importance.

Usage: python3 tools/reference/imatrix_reference.py   (needs numpy, tokenizers==0.23.3)
"""

import json
import struct
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "tests" / "fixtures" / "mistral_tiny"
OUT = ROOT / "tests" / "golden" / "imatrix_mistral_tiny.json"
CONTEXT = 512
# Two whole chunks and a remainder that is dropped.
TEXT = " ".join(
    f"Judge {i}: the response answers the question{' well' if i % 3 else ''}, cites {i % 7} sources "
    f"and {'keeps' if i % 2 else 'breaks'} the format; verdict [[{'A' if i % 5 else 'B'}]]."
    for i in range(20)
)


def read_safetensors(path: Path) -> dict:
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    data = raw[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "BF16", info["dtype"]
        start, end = info["data_offsets"]
        bits = np.frombuffer(data[start:end], dtype="<u2").astype(np.uint32) << 16
        tensors[name] = bits.view(np.float32).astype(np.float64).reshape(info["shape"])
    return tensors


def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rope(x, positions, theta):
    # Hugging Face's rotate_half: the first and second halves of each head are the pairs.
    head_dim = x.shape[-1]
    inv = theta ** (-np.arange(0, head_dim, 2) / head_dim)
    angles = positions[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(angles)] * 2, axis=-1)[:, None, :]
    sin = np.concatenate([np.sin(angles)] * 2, axis=-1)[:, None, :]
    first, second = x[..., : head_dim // 2], x[..., head_dim // 2 :]
    return x * cos + np.concatenate([-second, first], axis=-1) * sin


def main() -> None:
    config = json.loads((MODEL / "config.json").read_text())
    w = read_safetensors(MODEL / "model.safetensors")
    tokenizer = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    bos = config["bos_token_id"]
    tokens = [bos] + tokenizer.encode(TEXT, add_special_tokens=False).ids
    context = min(CONTEXT, len(tokens))
    chunks = [tokens[i : i + context] for i in range(0, len(tokens) - context + 1, context)]
    for chunk in chunks:
        chunk[0] = bos

    heads, kv_heads, head_dim = config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]
    eps, theta = config["rms_norm_eps"], config["rope_theta"]
    sums: dict = {}

    def record(names, layer, x):
        for name in names:
            key = f"blk.{layer}.{name}.weight"
            sums[key] = sums.get(key, 0) + (x * x).sum(axis=0)

    for chunk in chunks:
        n = len(chunk)
        positions = np.arange(n, dtype=np.float64)
        mask = np.triu(np.full((n, n), -np.inf), 1)
        x = w["model.embed_tokens.weight"][chunk]
        for layer in range(config["num_hidden_layers"]):
            p = lambda name: w[f"model.layers.{layer}.{name}.weight"]
            h = rms_norm(x, p("input_layernorm"), eps)
            record(["attn_q", "attn_k", "attn_v"], layer, h)
            q = rope((h @ p("self_attn.q_proj").T).reshape(n, heads, head_dim), positions, theta)
            k = rope((h @ p("self_attn.k_proj").T).reshape(n, kv_heads, head_dim), positions, theta)
            v = (h @ p("self_attn.v_proj").T).reshape(n, kv_heads, head_dim)
            group = heads // kv_heads
            outputs = []
            for head in range(heads):
                scores = q[:, head] @ k[:, head // group].T / np.sqrt(head_dim) + mask
                scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
                outputs.append((scores / scores.sum(axis=-1, keepdims=True)) @ v[:, head // group])
            attention = np.concatenate(outputs, axis=-1)
            record(["attn_output"], layer, attention)
            x = x + attention @ p("self_attn.o_proj").T
            h = rms_norm(x, p("post_attention_layernorm"), eps)
            record(["ffn_gate", "ffn_up"], layer, h)
            gate, up = h @ p("mlp.gate_proj").T, h @ p("mlp.up_proj").T
            activated = gate / (1.0 + np.exp(-gate)) * up
            record(["ffn_down"], layer, activated)
            x = x + activated @ p("mlp.down_proj").T

    count = sum(len(chunk) for chunk in chunks)
    OUT.write_text(
        json.dumps(
            {
                "source": "tools/reference/imatrix_reference.py (numpy float64 forward of tests/fixtures/mistral_tiny)",
                "text": TEXT,
                "chunks": chunks,
                "importance": {name: [float(v) for v in total / count] for name, total in sorted(sums.items())},
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {OUT}: {len(chunks)} chunks of {context}, {len(tokens)} tokens")


if __name__ == "__main__":
    main()
