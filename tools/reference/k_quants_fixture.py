"""f32 rows and the Q4_K, Q5_K and Q6_K blocks llama.cpp's own quantizer makes of them, without
and with an importance matrix.

Calls `ggml_quantize_chunk` in the ggml library that `llama-cpp-python` 0.3.16 builds from its
vendored llama.cpp, through ctypes: without an importance matrix (`quantize_row_q{4,5,6}_K_ref`)
and with one (`quantize_row_q{4,5,6}_K_impl`, and Q4_1's and Q5_1's `_impl` for webjudge's q4
and q5), the values read as rows of `ROW` values and the importance one positive value per column,
spread over three orders of magnitude as activations' mean squares are.
The rows cover the branches of the searches: Gaussian, Laplace and heavy-tailed rows, all-positive and
all-negative super-blocks (the minimum clamped to zero), a zero and a constant super-block,
magnitudes below and above Q6_K's 1e-15 all-zero threshold, large values, and sub-blocks whose
scales differ by orders of magnitude (6-bit scales that round to zero).

Writes tests/fixtures/k_quants.json: `values` and `importance` (hex of little-endian f32),
`row` and, per type, `blocks` (hex of the GGUF bytes without an importance matrix; absent for
Q4_1 and Q5_1) and `weighted_blocks` (with it).

Usage: python3 tools/reference/k_quants_fixture.py   (needs llama-cpp-python==0.3.16, numpy)
"""

import ctypes
import json
from pathlib import Path

import llama_cpp
import numpy as np

SUPER_BLOCK = 256
# ggml type id and bytes per super-block.
TYPES = {"Q4_K": (12, 144), "Q5_K": (13, 176), "Q6_K": (14, 210)}
# Weighted only: webjudge's q4 (groups of 32) and q5 against llama.cpp's Q4_1 and Q5_1 (32 values).
WEIGHTED_ONLY = {"Q4_1": (3, 20, 32), "Q5_1": (7, 24, 32)}
ROW = 2 * SUPER_BLOCK
OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "k_quants.json"


def ggml_library() -> ctypes.CDLL:
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    for name in ("libggml-base.so", "libggml.so"):
        path = lib_dir / name
        if path.exists():
            lib = ctypes.CDLL(str(path))
            if hasattr(lib, "ggml_quantize_chunk"):
                return lib
    raise SystemExit(f"no ggml_quantize_chunk in {lib_dir}")


def rows(rng: np.random.Generator) -> np.ndarray:
    blocks = [
        rng.standard_normal(SUPER_BLOCK) * 0.02,
        rng.standard_t(3, SUPER_BLOCK) * 0.05,
        np.abs(rng.standard_normal(SUPER_BLOCK)) + 0.5,
        -np.abs(rng.standard_normal(SUPER_BLOCK)) - 0.25,
        np.zeros(SUPER_BLOCK),
        np.full(SUPER_BLOCK, 0.75),
        rng.standard_normal(SUPER_BLOCK) * 1e-20,
        rng.standard_normal(SUPER_BLOCK) * 1e-10,
        rng.standard_normal(SUPER_BLOCK) * 1e4,
        np.concatenate([rng.standard_normal(32) * 10.0 ** -k for k in range(8)]),
        np.concatenate([rng.standard_normal(16) * 10.0 ** -(k % 5) for k in range(16)]),
        rng.standard_normal(SUPER_BLOCK) * 0.02 + np.where(rng.random(SUPER_BLOCK) < 0.02, 1.0, 0.0),
    ]
    # Weight-like rows, many of them, so that every candidate of the searches wins somewhere.
    blocks += [rng.standard_normal(SUPER_BLOCK) * rng.uniform(0.005, 0.1) for _ in range(8)]
    blocks += [rng.laplace(0, 0.02, SUPER_BLOCK) + rng.uniform(-0.01, 0.01) for _ in range(4)]
    return np.concatenate(blocks).astype(np.float32)


def main() -> None:
    lib = ggml_library()
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_void_p,
    ]
    rng = np.random.default_rng(20261206)
    values = rows(rng)
    importance = (10.0 ** rng.uniform(-2, 1, ROW)).astype(np.float32)
    fixture = {
        "source": "tools/reference/k_quants_fixture.py (llama-cpp-python 0.3.16: ggml_quantize_chunk)",
        "values": values.astype("<f4").tobytes().hex(),
        "row": ROW,
        "importance": importance.astype("<f4").tobytes().hex(),
        "types": {},
    }

    def quantize(ggml_type, block_bytes, block_values, n_per_row, weights):
        n_rows = values.size // n_per_row
        out = np.zeros(values.size // block_values * block_bytes, dtype=np.uint8)
        pointer = None if weights is None else weights.ctypes.data
        written = lib.ggml_quantize_chunk(ggml_type, values.ctypes.data, out.ctypes.data, 0, n_rows, n_per_row, pointer)
        assert written == out.size, (ggml_type, written, out.size)
        return out.tobytes().hex()

    for name, (ggml_type, block_bytes) in TYPES.items():
        fixture["types"][name] = {
            "blocks": quantize(ggml_type, block_bytes, SUPER_BLOCK, SUPER_BLOCK, None),
            "weighted_blocks": quantize(ggml_type, block_bytes, SUPER_BLOCK, ROW, importance),
        }
    for name, (ggml_type, block_bytes, block_values) in WEIGHTED_ONLY.items():
        fixture["types"][name] = {"weighted_blocks": quantize(ggml_type, block_bytes, block_values, ROW, importance)}
    OUT.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
