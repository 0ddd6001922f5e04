#!/usr/bin/env python3
"""A LLaMA-architecture GGUF of a judge's real shapes with random weights, for benchmarks where
the judge's own weights cannot be had (no network, as on a lent GPU machine, or no time for a
7 GB download): speed depends on the shapes and types, not on the values.

- Shapes: `autoj-13b` (Auto-J-13B: LLaMA-2-13B), `autoj-6b` (Auto-J-bilingual-6B: Yi-6B),
  `prometheus-7b` (Prometheus 2 7B: Mistral-7B), `tiny` (2 layers, for checking the file).
- Types: the layers' matrices in `--type` (q4_0, q4_1: the test model's, or q8_0), the token
  embedding and output in q8_0, the norms in f32. Codes are random; each block's scale (and
  q4_1's minimum) is fixed and small, so activations stay finite through every layer.
- Vocabulary: the model's size, SentencePiece-style (llama.cpp's `llama` tokenizer model):
  <unk>, <s>, </s>, the 256 byte pieces, then distinct made-up pieces.
- Written with numpy alone from the GGUF v3 layout (ggml's gguf.md): header, metadata,
  tensor infos, data aligned to 32 bytes; one tensor in memory at a time.

Usage: python3 tools/synthetic_gguf.py SHAPES OUT.gguf [--type q4_1] [--seed 0]
"""

import argparse
import struct
import sys

import numpy as np

# name: (layers, hidden, heads, kv heads, ffn, vocab, context, rope theta)
SHAPES = {
    "autoj-13b": (40, 5120, 40, 40, 13824, 32000, 4096, 10000.0),
    "autoj-6b": (32, 4096, 32, 4, 11008, 64000, 4096, 5000000.0),
    "prometheus-7b": (32, 4096, 32, 8, 14336, 32000, 32768, 1000000.0),
    "tiny": (2, 256, 4, 2, 512, 512, 4096, 10000.0),
}
EPS = 1e-5
ALIGNMENT = 32
BLOCK = 32
# ggml type ids, and each block's fixed head (f16 scale, q4_1's f16 minimum) and random bytes.
F32 = 0
TYPES = {
    "q4_0": (2, np.array([0.005], np.float16).tobytes(), 16),
    "q4_1": (3, np.array([0.005, -0.04], np.float16).tobytes(), 16),
    "q8_0": (8, np.array([0.0005], np.float16).tobytes(), 32),
}
# llama_ftype of a file whose matrices are mostly of each type.
FILE_TYPES = {"q4_0": 2, "q4_1": 3, "q8_0": 7}
# GGUF metadata value types.
UINT32, INT32, FLOAT32, STRING, ARRAY = 4, 5, 6, 8, 9
# llama.cpp's token types.
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


def string(text):
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def value(kind, item):
    if kind == STRING:
        return string(item)
    return struct.pack({UINT32: "<I", INT32: "<i", FLOAT32: "<f"}[kind], item)


def metadata(key, kind, item):
    """One key and its value: a list becomes an array of `kind`."""
    if isinstance(item, list):
        body = b"".join(value(kind, element) for element in item)
        return string(key) + struct.pack("<IIQ", ARRAY, kind, len(item)) + body
    return string(key) + struct.pack("<I", kind) + value(kind, item)


def vocabulary(size):
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{byte:02X}>" for byte in range(256)]
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256
    letters = "abcdefghijklmnopqrstuvwxyz"
    index = 0
    while len(pieces) < size:
        word, n = "", index
        while True:
            word, n = letters[n % 26] + word, n // 26
            if n == 0:
                break
        pieces.append("\u2581" + word)
        types.append(NORMAL)
        index += 1
    scores = [0.0] * 259 + [-float(i) for i in range(size - 259)]
    return pieces, scores, types


def tensors(shapes, matrix_type):
    layers, hidden, heads, kv_heads, ffn, vocab, _, _ = shapes
    head_dim = hidden // heads
    yield "token_embd.weight", (hidden, vocab), "q8_0"
    for layer in range(layers):
        name = f"blk.{layer}."
        yield name + "attn_norm.weight", (hidden,), "f32"
        yield name + "attn_q.weight", (hidden, heads * head_dim), matrix_type
        yield name + "attn_k.weight", (hidden, kv_heads * head_dim), matrix_type
        yield name + "attn_v.weight", (hidden, kv_heads * head_dim), matrix_type
        yield name + "attn_output.weight", (heads * head_dim, hidden), matrix_type
        yield name + "ffn_norm.weight", (hidden,), "f32"
        yield name + "ffn_gate.weight", (hidden, ffn), matrix_type
        yield name + "ffn_up.weight", (hidden, ffn), matrix_type
        yield name + "ffn_down.weight", (ffn, hidden), matrix_type
    yield "output_norm.weight", (hidden,), "f32"
    yield "output.weight", (hidden, vocab), "q8_0"


def nbytes(dims, kind):
    count = int(np.prod(dims))
    if kind == "f32":
        return 4 * count
    _, head, random = TYPES[kind]
    return count // BLOCK * (len(head) + random)


def data(dims, kind, rng):
    count = int(np.prod(dims))
    if kind == "f32":
        return np.ones(count, np.float32).tobytes()
    _, head, random = TYPES[kind]
    blocks = np.empty((count // BLOCK, len(head) + random), np.uint8)
    blocks[:, : len(head)] = np.frombuffer(head, np.uint8)
    blocks[:, len(head) :] = rng.integers(0, 256, size=(count // BLOCK, random), dtype=np.uint8)
    return blocks.tobytes()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shapes", choices=sorted(SHAPES))
    parser.add_argument("out")
    parser.add_argument("--type", default="q4_1", choices=sorted(TYPES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shapes = SHAPES[args.shapes]
    layers, hidden, heads, kv_heads, ffn, vocab, context, theta = shapes
    pieces, scores, types = vocabulary(vocab)
    fields = [
        metadata("general.architecture", STRING, "llama"),
        metadata("general.name", STRING, f"synthetic {args.shapes} ({args.type}, random weights)"),
        metadata("general.alignment", UINT32, ALIGNMENT),
        metadata("general.file_type", UINT32, FILE_TYPES[args.type]),
        metadata("llama.context_length", UINT32, context),
        metadata("llama.embedding_length", UINT32, hidden),
        metadata("llama.block_count", UINT32, layers),
        metadata("llama.feed_forward_length", UINT32, ffn),
        metadata("llama.rope.dimension_count", UINT32, hidden // heads),
        metadata("llama.attention.head_count", UINT32, heads),
        metadata("llama.attention.head_count_kv", UINT32, kv_heads),
        metadata("llama.attention.layer_norm_rms_epsilon", FLOAT32, EPS),
        metadata("llama.rope.freq_base", FLOAT32, theta),
        metadata("llama.vocab_size", UINT32, vocab),
        metadata("tokenizer.ggml.model", STRING, "llama"),
        metadata("tokenizer.ggml.tokens", STRING, pieces),
        metadata("tokenizer.ggml.scores", FLOAT32, scores),
        metadata("tokenizer.ggml.token_type", INT32, types),
        metadata("tokenizer.ggml.bos_token_id", UINT32, 1),
        metadata("tokenizer.ggml.eos_token_id", UINT32, 2),
        metadata("tokenizer.ggml.unknown_token_id", UINT32, 0),
    ]
    plan = list(tensors(shapes, args.type))
    infos, offset = [], 0
    for name, dims, kind in plan:
        type_id = F32 if kind == "f32" else TYPES[kind][0]
        infos.append(string(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, type_id, offset))
        offset += -(-nbytes(dims, kind) // ALIGNMENT) * ALIGNMENT
    rng = np.random.default_rng(args.seed)
    with open(args.out, "wb") as out:
        out.write(b"GGUF" + struct.pack("<IQQ", 3, len(plan), len(fields)))
        out.write(b"".join(fields) + b"".join(infos))
        out.write(b"\0" * (-out.tell() % ALIGNMENT))
        for _, dims, kind in plan:
            out.write(data(dims, kind, rng))
            out.write(b"\0" * (-out.tell() % ALIGNMENT))
    print(f"{args.out}: {len(plan)} tensors, {offset / 2**30:.2f} GiB", file=sys.stderr)


if __name__ == "__main__":
    main()
