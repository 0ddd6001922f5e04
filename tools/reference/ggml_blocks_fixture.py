"""Raw blocks of every GGML type webjudge imports, and their values as gguf-py dequantizes them.

gguf-py's numpy dequantizers (`gguf.quants.dequantize`, package `gguf` 0.19.0) follow
llama.cpp's `dequantize_row_*` in ggml-quants.c operation for operation, so the f32 bits they
give are the values a converted tensor must hold exactly. For each type the fixture has blocks
of four kinds:

- random bytes with ordinary scales (every code and every 6-bit scale/min pattern occurs);
- extreme scales: the largest finite f16 (65504), the smallest normal (2^-14), a subnormal
  (2^-24) and negative scales, so products that round or stay exact are both covered;
- an all-zero block;
- a block whose codes are all at their maximum.

Writes tests/fixtures/ggml_blocks.json: per type, `blocks` (hex of the raw GGUF bytes, blocks
back to back) and `values` (hex of the little-endian f32 values, in order).

Usage: python3 tools/reference/ggml_blocks_fixture.py   (needs gguf==0.19.0 and numpy)
"""

import json
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize

TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "BF16"]
# Where each type keeps its f16 scales inside a block (byte offsets), so the fixture can set them.
F16_FIELDS = {
    "Q4_0": [0],
    "Q4_1": [0, 2],
    "Q5_0": [0],
    "Q5_1": [0, 2],
    "Q8_0": [0],
    "Q4_K": [0, 2],
    "Q5_K": [0, 2],
    "Q6_K": [208],
}
EXTREME_SCALES = [65504.0, 2.0**-14, 2.0**-24, -3.5, -65504.0, 0.0]
OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "ggml_blocks.json"


def set_f16(block: np.ndarray, offset: int, value: float) -> None:
    block[offset : offset + 2] = np.frombuffer(np.float16(value).tobytes(), dtype=np.uint8)


def blocks_for(name: str, rng: np.random.Generator) -> np.ndarray:
    _, bytes_per_block = GGML_QUANT_SIZES[GGMLQuantizationType[name]]
    if name == "BF16":
        # Finite bf16 values of every exponent, both signs, zeros and subnormals.
        bits = rng.integers(0, 1 << 16, size=256, dtype=np.uint16)
        finite = (bits & 0x7F80) != 0x7F80
        bits = np.where(finite, bits, bits & 0x807F)
        bits[:4] = [0x0000, 0x8000, 0x0001, 0x7F7F]
        return bits.view(np.uint8).reshape(-1, 2)
    kinds = []
    for scale_set in ([0.01, 0.002], EXTREME_SCALES[:2], EXTREME_SCALES[2:4], EXTREME_SCALES[4:]):
        block = rng.integers(0, 256, size=bytes_per_block, dtype=np.uint8)
        for offset, scale in zip(F16_FIELDS[name], scale_set * 2):
            set_f16(block, offset, scale)
        kinds.append(block)
    kinds.append(np.zeros(bytes_per_block, dtype=np.uint8))
    full = np.full(bytes_per_block, 0xFF, dtype=np.uint8)
    for offset in F16_FIELDS[name]:
        set_f16(full, offset, 0.5)
    kinds.append(full)
    return np.stack(kinds)


def main() -> None:
    rng = np.random.default_rng(20261206)
    fixture = {
        "source": "tools/reference/ggml_blocks_fixture.py (gguf-py 0.19.0 gguf.quants.dequantize)",
        "types": {},
    }
    for name in TYPES:
        qtype = GGMLQuantizationType[name]
        values_per_block, bytes_per_block = GGML_QUANT_SIZES[qtype]
        raw = blocks_for(name, rng).reshape(-1)
        count = raw.size // bytes_per_block * values_per_block
        values = dequantize(raw, qtype).astype(np.float32).reshape(-1)
        assert values.size == count, (name, values.size, count)
        fixture["types"][name] = {"blocks": raw.tobytes().hex(), "values": values.astype("<f4").tobytes().hex()}
    OUT.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
