// Matrix-matrix product for prefill: Y[t, out_offset + r] (+)= X[t, :] . W[r, :]
// for every token t of the step. Tiled: a workgroup computes MATMUL_TILE_TOKENS tokens x
// MATMUL_TILE_ROWS rows (64 x 64, from src/kernels/variants.rs), stepping through the
// columns one 32-value block at a time; each weight block is decoded once into workgroup
// memory and reused by every token of the tile. Each invocation owns 4 tokens x 4 rows, so
// every pair of vec4 loads from workgroup memory feeds 16 multiply-adds. The two tiles
// take exactly WebGPU's default 16 KiB of workgroup memory, so the next block is staged in
// registers, not in a second pair of tiles: its reads are in flight during the products.

#include "common.wgsl"
#include "quant.wgsl"

const WG: u32 = DEFAULT_WORKGROUP;
const TILE_T: u32 = MATMUL_TILE_TOKENS;
const TILE_R: u32 = MATMUL_TILE_ROWS;
// Invocations along the rows and the tokens of the tile; each owns 4 of each.
const ROW_LANES: u32 = TILE_R / 4u;
const TOKEN_LANES: u32 = TILE_T / 4u;
const_assert ROW_LANES * TOKEN_LANES == WG;
// Four invocations decode each row's 32-value block, a quarter each.
const_assert TILE_R * 4u == WG;
// The block's x values are TILE_T x 8 vec4s, loaded a whole number of times by WG invocations.
const_assert TILE_T * 8u % WG == 0u;

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

// w_tile[k * ROW_LANES + i] holds W[4i..4i+4, k] of the tile; x_tile[k * TOKEN_LANES + j]
// holds X[4j..4j+4, k].
var<workgroup> w_tile: array<vec4<f32>, BLOCK_VALUES * ROW_LANES>;
var<workgroup> x_tile: array<vec4<f32>, BLOCK_VALUES * TOKEN_LANES>;

// X_PASSES vec4s of x per invocation: the block's TILE_T x 8.
const X_PASSES: u32 = TILE_T * 8u / WG;

// What one invocation brings of a block into the tiles: a quarter of one row's weights,
// decoded (values 8q..8q+7 of row lane / 4, q = lane % 4), and X_PASSES vec4s of x.
struct Share {
    w: array<vec4<f32>, 2>,
    x: array<vec4<f32>, X_PASSES>,
}

fn load_share(lane: Lane, row0: u32, token0: u32, b: u32) -> Share {
    var share: Share;
    let blocks = params.cols / BLOCK_VALUES;
    let tile_row = lane.index / 4u;
    if row0 + tile_row < params.rows {
        let row = gate_up_row(row0 + tile_row, params.rows, params.epilogue);
        share.w = load_quarter(row * blocks + b, lane.index % 4u, params.params_offset, params.group);
    }
    for (var pass_ = 0u; pass_ < X_PASSES; pass_++) {
        let item = lane.index + pass_ * WG;
        let t = item / 8u;
        if token0 + t < step.n_tokens {
            share.x[pass_] = x[((token0 + t) * params.cols + b * BLOCK_VALUES) / 4u + item % 8u];
        }
    }
    return share;
}

fn store_share(lane: Lane, share: Share) {
    let tile_row = lane.index / 4u;
    let quarter = lane.index % 4u;
    for (var k = 0u; k < 8u; k++) {
        w_tile[(quarter * 8u + k) * ROW_LANES + tile_row / 4u][tile_row % 4u] = share.w[k / 4u][k % 4u];
    }
    for (var pass_ = 0u; pass_ < X_PASSES; pass_++) {
        let item = lane.index + pass_ * WG;
        let t = item / 8u;
        let k4 = item % 8u;
        for (var j = 0u; j < 4u; j++) {
            x_tile[(k4 * 4u + j) * TOKEN_LANES + t / 4u][t % 4u] = share.x[pass_][j];
        }
    }
}

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.x * TILE_R;
    let token0 = wid.y * TILE_T;
    let blocks = params.cols / BLOCK_VALUES;
    let my_rows = lane.index % ROW_LANES;
    let my_tokens = lane.index / ROW_LANES;
    var acc: array<vec4<f32>, 4>;
    // Double-buffered through registers: block b + 1 is read from memory before block b's
    // products, so its loads are in flight while they run, and the tiles stay in 16 KiB.
    var share = load_share(lane, row0, token0, 0u);
    for (var b = 0u; b < blocks; b++) {
        store_share(lane, share);
        workgroupBarrier();
        if b + 1u < blocks {
            share = load_share(lane, row0, token0, b + 1u);
        }
        for (var k = 0u; k < BLOCK_VALUES; k++) {
            let w = w_tile[k * ROW_LANES + my_rows];
            let xs = x_tile[k * TOKEN_LANES + my_tokens];
            acc[0] += xs.x * w;
            acc[1] += xs.y * w;
            acc[2] += xs.z * w;
            acc[3] += xs.w * w;
        }
        workgroupBarrier();
    }
    if params.epilogue == EPILOGUE_GATE_UP {
        // The invocation's rows are the gate rows, then the up rows, of two outputs.
        for (var i = 0u; i < 4u; i++) {
            let t = token0 + my_tokens * 4u + i;
            for (var j = 0u; j < 2u; j++) {
                let r = (row0 + my_rows * 4u) / 2u + j;
                if t < step.n_tokens && r < params.rows / 2u {
                    y[t * params.out_stride + params.out_offset + r] = silu(acc[i][j]) * acc[i][j + 2u];
                }
            }
        }
        return;
    }
    for (var i = 0u; i < 4u; i++) {
        let t = token0 + my_tokens * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let r = row0 + my_rows * 4u + j;
            if t < step.n_tokens && r < params.rows {
                let out = t * params.out_stride + params.out_offset + r;
                y[out] = finish_output(y[out], acc[i][j], params.epilogue);
            }
        }
    }
}
