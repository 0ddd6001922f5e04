#!/usr/bin/env python3
"""Writes tiny AutoGPTQ checkpoints to tests/fixtures/gptq_*/ for tests/gptq.rs, with numpy
written from the AutoGPTQ format alone (independent of webjudge's Rust):

- qweight: int32 [in/8, out]; the 4-bit code of W[n][k] at bits 4*(k%8) of qweight[k//8][n];
- qzeros: int32 [groups, out/8]; the zero point of output n in group g, minus one, at bits
  4*(n%8) of qzeros[g][n//8];
- scales: float16 [groups, out];
- g_idx: int32 [in], the group of each input column;
- W[n][k] = scales[g][n] * (q[k][n] - (qzeros[g][n] + 1)), g = g_idx[k].

Three checkpoints of one LLaMA layer (hidden 64, 4 heads of 16, 2 KV heads, FFN 128,
vocab 96; embedding, lm_head and norms plain float16, the embedding and lm_head on a q4
grid (see q4_grid) so that webjudge's default conversion stores them exactly and a
comparison of the converted model with transformers measures the GPTQ layers alone):

- gptq_actorder: desc_act, asymmetric zero points, group size 32, g_idx built as AutoGPTQ's
  act-order builds it (columns visited in a random order, g_idx[perm[i]] = i // 32); the
  layers reading one input share its order, as in AutoGPTQ, whose order comes from the
  input's statistics (q/k/v one, gate/up one, o and down each their own);
- gptq_plain_sym: symmetric (every stored zero 7, so zero + 1 = 8), plain order, group 32;
- gptq_plain_asym: asymmetric zero points (1..16), plain order, group 64.

Each directory gets config.json, quantize_config.json, model.safetensors and expected.json:
per linear weight (Hugging Face name, [out, in] row-major, Hugging Face row order) the
sha256 of its exact dequantized values as little-endian float32, their sum, and the first
8 values. Run with the reference venv:
    ~/.cache/webjudge/refvenv/bin/python tools/reference/gptq_fixture.py
"""

import hashlib
import json
import pathlib

import numpy as np
from safetensors.numpy import save_file

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, VOCAB = 64, 4, 2, 16, 128, 96
LINEAR = {  # name: (out, in)
    "self_attn.q_proj": (HEADS * HEAD_DIM, HIDDEN),
    "self_attn.k_proj": (KV_HEADS * HEAD_DIM, HIDDEN),
    "self_attn.v_proj": (KV_HEADS * HEAD_DIM, HIDDEN),
    "self_attn.o_proj": (HIDDEN, HEADS * HEAD_DIM),
    "mlp.gate_proj": (FFN, HIDDEN),
    "mlp.up_proj": (FFN, HIDDEN),
    "mlp.down_proj": (HIDDEN, FFN),
}


def pack_rows(codes):
    """[n*8, m] codes 0..15 -> int32 [n, m], code 8i+j at bits 4j of row i."""
    rows, cols = codes.shape
    words = np.zeros((rows // 8, cols), dtype=np.uint32)
    for j in range(8):
        words |= codes[j::8, :].astype(np.uint32) << np.uint32(4 * j)
    return words.view(np.int32)


def pack_cols(codes):
    """[m, n*8] codes 0..15 -> int32 [m, n], code 8i+j at bits 4j of column i."""
    rows, cols = codes.shape
    words = np.zeros((rows, cols // 8), dtype=np.uint32)
    for j in range(8):
        words |= codes[:, j::8].astype(np.uint32) << np.uint32(4 * j)
    return words.view(np.int32)


# The layers reading the same input.
INPUT_OF = {"self_attn.q_proj": "attn", "self_attn.k_proj": "attn", "self_attn.v_proj": "attn", "mlp.gate_proj": "mlp",
            "mlp.up_proj": "mlp"}


def q4_grid(rng, rows, cols, step, lowest, highest):
    """float16 values (b + q) * step, q in 0..16 and b in lowest..=highest-15 per group of 32
    along a row, every group holding both q = 0 and q = 15: quantizing them to q4 with groups
    of 32 by min and range (webjudge's default for dense weights) is exact, since step is a
    power of two."""
    codes = rng.integers(0, 16, size=(rows, cols))
    for row in range(rows):
        for group in range(0, cols, 32):
            ends = group + rng.permutation(32)[:2]
            codes[row, ends] = [0, 15]
    bases = np.repeat(rng.integers(lowest, highest - 14, size=(rows, cols // 32)), 32, axis=1)
    return ((bases + codes) * step).astype(np.float16)


def linear(rng, out, inputs, group, perm, sym):
    groups = (inputs + group - 1) // group
    q = rng.integers(0, 16, size=(inputs, out))
    # The zero points used; AutoGPTQ stores each minus one.
    zero = np.full((groups, out), 8) if sym else rng.integers(1, 17, size=(groups, out))
    # Scales up to 0.02 keep the random layer's attention soft enough that an f16 KV cache
    # moves its logits by thousandths, not hundredths (the greedy-id golden needs that).
    scales = rng.uniform(0.002, 0.02, size=(groups, out)).astype(np.float16)
    if perm is not None:
        g_idx = np.empty(inputs, dtype=np.int32)
        g_idx[perm] = np.arange(inputs) // group
    else:
        g_idx = (np.arange(inputs) // group).astype(np.int32)
    tensors = {
        "qweight": pack_rows(q),
        "qzeros": pack_cols(zero - 1),
        "scales": scales,
        "g_idx": g_idx,
    }
    # W[n][k] = scale * (q - zero), exact in float32 (an f16 scale times an integer in -16..15).
    w = scales.astype(np.float32)[g_idx, :] * (q - zero[g_idx, :]).astype(np.float32)
    return tensors, np.ascontiguousarray(w.T.astype(np.float32))


def write(name, seed, group, act_order, sym):
    rng = np.random.default_rng(seed)
    out = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / name
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        "model.embed_tokens.weight": q4_grid(rng, VOCAB, HIDDEN, 2.0**-4, -16, 16),
        "lm_head.weight": q4_grid(rng, VOCAB, HIDDEN, 2.0**-4, -20, 20),
        "model.norm.weight": rng.uniform(0.8, 1.2, size=HIDDEN).astype(np.float16),
        "model.layers.0.input_layernorm.weight": rng.uniform(0.8, 1.2, size=HIDDEN).astype(np.float16),
        "model.layers.0.post_attention_layernorm.weight": rng.uniform(0.8, 1.2, size=HIDDEN).astype(np.float16),
    }
    expected = {}
    perms = {}
    for layer, (rows, cols) in LINEAR.items():
        prefix = f"model.layers.0.{layer}"
        perm = None
        if act_order:
            key = INPUT_OF.get(layer, layer)
            if key not in perms:
                perms[key] = rng.permutation(cols)
            perm = perms[key]
        parts, w = linear(rng, rows, cols, group, perm, sym)
        for part, value in parts.items():
            tensors[f"{prefix}.{part}"] = value
        expected[f"{prefix}.weight"] = {
            "shape": [rows, cols],
            "sha256_f32le": hashlib.sha256(w.astype("<f4").tobytes()).hexdigest(),
            "sum": float(w.astype(np.float64).sum()),
            "first": [float(v) for v in w.flatten()[:8]],
        }
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "num_hidden_layers": 1,
        "hidden_size": HIDDEN,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "intermediate_size": FFN,
        "vocab_size": VOCAB,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 128,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float16",
    }
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    quantize_config = {
        "bits": 4,
        "group_size": group,
        "damp_percent": 0.01,
        "desc_act": act_order,
        "sym": sym,
        "true_sequential": True,
        "model_file_base_name": "model",
    }
    (out / "quantize_config.json").write_text(json.dumps(quantize_config, indent=1) + "\n")
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


write("gptq_actorder", 1, 32, act_order=True, sym=False)
write("gptq_plain_sym", 2, 32, act_order=False, sym=True)
write("gptq_plain_asym", 3, 64, act_order=False, sym=False)
