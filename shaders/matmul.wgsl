// Matrix-matrix product for prefill: Y[t, out_offset + r] (+)= X[t, :] . W[r, :]
// for every token t of the step. Tiled: a workgroup computes MATMUL_TILE_TOKENS tokens x
// a tile's rows (src/kernels/variants.rs), stepping through the columns a stage at a time;
// each weight value is decoded once into workgroup memory and reused by every token of the
// tile, and each output is summed column by column whatever the tile. Two tiles
// (`MatmulTile` in src/kernels/linear.rs):
//
// - 64 x 64 (CPU adapters): each invocation owns 4 tokens x 4 rows, so every two vec4 loads
//   from workgroup memory feed 16 multiply-adds; a stage is a whole 32-value block, and the
//   two tiles take exactly WebGPU's default 16 KiB.
// - 64 x 128 (MATMUL_WIDE, GPUs): 4 tokens x 8 rows (two groups of 4 rows, half a tile
//   apart), so every three vec4 loads feed 32 multiply-adds; a stage is half a block, which
//   keeps the tiles in 12.2 KiB, under the default 16 KiB on every adapter (a whole block
//   would take 24 KiB), at the same 512 multiply-adds per invocation between barriers as
//   the narrow tile's whole blocks; and the tile stores are padded to be free of bank
//   conflicts (the narrow layout's are 4-way for weights and 8-way for x on 32 banks).
//   On lavapipe it measured slower than the narrow tile (`MatmulTile::for_adapter`).
//
// The next stage is staged in registers, not in a second pair of tiles: its reads are in
// flight during the products.
//
// Expected effect of the wide tile on a real GPU (not yet measured). RTX 3060: 28 SMs, each
// with 128 FP32 lanes (4 warp FMA instructions a clock) and shared memory serving one
// 128-byte wavefront a clock. Per warp, per 512 FMA instructions (128 SM clocks of FMA):
// - narrow: 32 columns x (weights: 16 distinct vec4s, 2 wavefronts; x: 2 vec4s broadcast,
//   1) = 96 wavefronts of loads, plus stores of 8 weight values 4-way conflicted (32) and
//   8 x values 8-way (64): 192 wavefronts, so shared memory bounds the FMAs at 67% of peak;
// - wide: 16 columns x (weights: 2 loads of 8 distinct vec4s, 1 each; x: 4 vec4s broadcast,
//   1) = 48, plus 8 + 4 conflict-free stores: 60 wavefronts, 47% of the FMA time, so the
//   FMAs bound it (about 86% of issue slots are FMAs in the inner loop).
//   In floats read per FMA: 12 per 32 (0.375) against 8 per 16 (0.5).
// Global reads per 131072 FMAs (a workgroup's stage): x 4 KiB (64 tokens x 16 f32) against
// 8 KiB, weights the same (q4: about 1.1 KiB): f32 x dominates, so the tile grows in rows,
// not tokens. Waves for Auto-J-13B's projections at 128-token chunks (two token tiles),
// assuming 3 resident workgroups per SM for the wide tile (about 80 registers an
// invocation, 32 of them sums; 84 on 28 SMs) and 4 for the narrow (112):
// qkv 5120->15360: 240 workgroups, 2.9 waves (narrow: 480, 4.3);
// 5120->5120 and 13824->5120: 80, 0.95 waves (narrow: 160, 1.4);
// gate_up 5120->27648: 432, 5.1 waves (narrow: 864, 7.7).
// Work over whole waves: 95%, 95%, 86% (narrow 86%, 71%, 96%); weighted by the FMAs of a
// layer (25%, 31%, 45%) 92% against 87%. Together: about 1.3x the matmul's FMA rate
// (0.86 x 0.92 against 0.67 x 0.87 of peak). At 2 resident workgroups per SM the 5120-row
// projections would take 1.4 waves again; a GPU's 512-token prefill chunks (GPU_PREFILL_CHUNK)
// make them 320 workgroups, 5.7 waves at 2 per SM and 3.8 at 3, 95% busy either way.

#include "common.wgsl"
#include "quant.wgsl"

const WG: u32 = DEFAULT_WORKGROUP;
const TILE_T: u32 = MATMUL_TILE_TOKENS;
#ifdef MATMUL_WIDE
const TILE_R: u32 = MATMUL_WIDE_TILE_ROWS;
// Padding (in vec4s) that makes the stores conflict-free on 32 banks of 4 bytes (see the
// tiles below).
const W_PAD: u32 = 4u;
const X_PAD: u32 = 2u;
#else
const TILE_R: u32 = MATMUL_TILE_ROWS;
// A CPU has no banks, and padding would take the tiles past 16 KiB.
const W_PAD: u32 = 0u;
const X_PAD: u32 = 0u;
#endif
// Invocations along the tokens and the rows of the tile; each owns 4 tokens and
// ROW_GROUPS groups of 4 rows, ROW_LANES * 4 rows apart.
const TOKEN_LANES: u32 = TILE_T / 4u;
const ROW_LANES: u32 = WG / TOKEN_LANES;
const ROW_GROUPS: u32 = TILE_R / (ROW_LANES * 4u);
const_assert ROW_GROUPS * ROW_LANES * 4u == TILE_R;
const_assert ROW_LANES % 8u == 0u;
// A stage: ROW_QUARTERS invocations decode one quarter (8 values) each of every row's block.
const ROW_QUARTERS: u32 = WG / TILE_R;
const STAGE_VALUES: u32 = ROW_QUARTERS * 8u;
const_assert TILE_R * ROW_QUARTERS == WG;
const_assert BLOCK_VALUES % STAGE_VALUES == 0u;
// X_PASSES vec4s of x per invocation: the stage's TILE_T x STAGE_VALUES values.
const X_VEC4S: u32 = STAGE_VALUES / 4u;
const X_PASSES: u32 = TILE_T * X_VEC4S / WG;
const_assert X_PASSES * WG == TILE_T * X_VEC4S;

struct Params {
    rows: u32,
    cols: u32,
    group: u32,
    params_offset: u32,
    out_offset: u32,
    out_stride: u32,
    epilogue: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> weights: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// The tiles hold column k of the stage as vec4s of 4 rows (or 4 tokens), each column's
// vec4s contiguous, so the products read consecutive vec4s. The wide tile's padding makes
// its stores conflict-free: a warp stores one value each for 16 rows (two invocations a
// row, columns 0-7 and 8-15), and columns 8-15 start W_PAD vec4s (16 banks) further; it
// stores x for 8 tokens (four invocations a token, columns 4i..4i+3), and each group of
// four columns starts X_PAD vec4s (8 banks) further.
var<workgroup> w_tile: array<vec4<f32>, STAGE_VALUES * TILE_R / 4u + (ROW_QUARTERS - 1u) * W_PAD>;
var<workgroup> x_tile: array<vec4<f32>, STAGE_VALUES * TOKEN_LANES + (X_VEC4S - 1u) * X_PAD>;

// The vec4 of W[4g..4g+4, k] and of X[4g..4g+4, k] (tile rows and tokens, stage column k).
fn w_slot(k: u32, g: u32) -> u32 {
    return k * (TILE_R / 4u) + k / 8u * W_PAD + g;
}

fn x_slot(k: u32, g: u32) -> u32 {
    return k * TOKEN_LANES + k / 4u * X_PAD + g;
}

// What one invocation brings of a stage into the tiles: a quarter of one row's block,
// decoded (values 8q..8q+7 of tile row lane / ROW_QUARTERS), and X_PASSES vec4s of x.
// Neighbouring invocations read neighbouring words: a row's quarters, a token's vec4s.
struct Share {
    w: array<vec4<f32>, 2>,
    x: array<vec4<f32>, X_PASSES>,
}

fn load_share(lane: Lane, row0: u32, token0: u32, stage: u32) -> Share {
    var share: Share;
    let blocks = params.cols / BLOCK_VALUES;
    let stages_per_block = BLOCK_VALUES / STAGE_VALUES;
    let b = stage / stages_per_block;
    let part = stage % stages_per_block;
    let tile_row = lane.index / ROW_QUARTERS;
    if row0 + tile_row < params.rows {
        let row = gate_up_row(row0 + tile_row, params.rows, params.epilogue);
        let quarter = part * ROW_QUARTERS + lane.index % ROW_QUARTERS;
        share.w = load_quarter(row * blocks + b, quarter, params.params_offset, params.group);
    }
    for (var pass_ = 0u; pass_ < X_PASSES; pass_++) {
        let item = lane.index + pass_ * WG;
        let t = item / X_VEC4S;
        if token0 + t < step.n_tokens {
            let first = (token0 + t) * params.cols + b * BLOCK_VALUES + part * STAGE_VALUES;
            share.x[pass_] = x[first / 4u + item % X_VEC4S];
        }
    }
    return share;
}

fn store_share(lane: Lane, share: Share) {
    let tile_row = lane.index / ROW_QUARTERS;
    let k0 = lane.index % ROW_QUARTERS * 8u;
    for (var k = 0u; k < 8u; k++) {
        w_tile[w_slot(k0 + k, tile_row / 4u)][tile_row % 4u] = share.w[k / 4u][k % 4u];
    }
    for (var pass_ = 0u; pass_ < X_PASSES; pass_++) {
        let item = lane.index + pass_ * WG;
        let t = item / X_VEC4S;
        let k4 = item % X_VEC4S * 4u;
        for (var j = 0u; j < 4u; j++) {
            x_tile[x_slot(k4 + j, t / 4u)][t % 4u] = share.x[pass_][j];
        }
    }
}

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.x * TILE_R;
    let token0 = wid.y * TILE_T;
    let stages = params.cols / STAGE_VALUES;
    // Row groups my_rows (+ ROW_LANES), token group my_tokens: eight neighbouring
    // invocations share their tokens and read neighbouring weight vec4s.
    let my_rows = lane.index % 8u + lane.index / (8u * TOKEN_LANES) * 8u;
    let my_tokens = lane.index / 8u % TOKEN_LANES;
    // acc[4g + i]: token i's sums of row group g.
    var acc: array<vec4<f32>, 4u * ROW_GROUPS>;
#ifdef MATMUL_WIDE
    // Whether the tile's second half of rows holds any: a part's last tile may not (the
    // same for the whole workgroup), and then their products are skipped.
    let second_half = row0 + TILE_R / 2u < params.rows;
#endif
    var share = load_share(lane, row0, token0, 0u);
    for (var s = 0u; s < stages; s++) {
        store_share(lane, share);
        workgroupBarrier();
        if s + 1u < stages {
            share = load_share(lane, row0, token0, s + 1u);
        }
        for (var k = 0u; k < STAGE_VALUES; k++) {
            let xs = x_tile[x_slot(k, my_tokens)];
            let w = w_tile[w_slot(k, my_rows)];
            acc[0] += xs.x * w;
            acc[1] += xs.y * w;
            acc[2] += xs.z * w;
            acc[3] += xs.w * w;
#ifdef MATMUL_WIDE
            if second_half {
                let w2 = w_tile[w_slot(k, my_rows + ROW_LANES)];
                acc[4] += xs.x * w2;
                acc[5] += xs.y * w2;
                acc[6] += xs.z * w2;
                acc[7] += xs.w * w2;
            }
#endif
        }
        workgroupBarrier();
    }
    for (var g = 0u; g < ROW_GROUPS; g++) {
        let first_row = row0 + (my_rows + g * ROW_LANES) * 4u;
        for (var i = 0u; i < 4u; i++) {
            let t = token0 + my_tokens * 4u + i;
            let sums = acc[g * 4u + i];
            if params.epilogue == EPILOGUE_GATE_UP {
                // The 4 rows are the gate rows, then the up rows, of two outputs.
                for (var j = 0u; j < 2u; j++) {
                    let r = first_row / 2u + j;
                    if t < step.n_tokens && r < params.rows / 2u {
                        y[t * params.out_stride + params.out_offset + r] = silu(sums[j]) * sums[j + 2u];
                    }
                }
            } else {
                for (var j = 0u; j < 4u; j++) {
                    let r = first_row + j;
                    if t < step.n_tokens && r < params.rows {
                        let out = t * params.out_stride + params.out_offset + r;
                        y[out] = finish_output(y[out], sums[j], params.epilogue);
                    }
                }
            }
        }
    }
}
