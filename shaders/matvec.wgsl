// Matrix-vector product for decode: y[out_offset + r] (+)= W[r, :] . x.
//
// A workgroup computes ROWS rows; LANES invocations share a row, each taking every
// LANES-th 32-value block (neighbours read neighbouring blocks, so a row's weights are
// read in contiguous runs), and the LANES partial sums meet in workgroup memory. No
// subgroup operations: the result does not depend on the adapter's subgroup size, and
// browsers without subgroups run the same code. A quantized block's dot product applies
// its scale and offset once per block, not once per weight (see `dot_block`).

#include "common.wgsl"
#include "quant.wgsl"

// MATVEC_WORKGROUP and MATVEC_ROWS come from src/kernels/variants.rs.
const WG: u32 = MATVEC_WORKGROUP;
const ROWS: u32 = MATVEC_ROWS;
const LANES: u32 = WG / ROWS;

struct Params {
    rows: u32,
    cols: u32,
    group: u32,
    params_offset: u32,
    out_offset: u32,
    // 1: read x from the step's last token row (the lm_head after a prefill chunk).
    x_last_row: u32,
    // 1: add to y (fuses the residual connection), 0: overwrite.
    epilogue: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> weights: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

var<workgroup> partial_sums: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = flat_workgroup(wid, nwg) * ROWS + lane.index / LANES;
    let first_block = lane.index % LANES;
    let blocks = params.cols / 32u;
    let x_base = select(0u, (step.n_tokens - 1u) * params.cols / 4u, params.x_last_row == 1u);
    var acc = 0.0;
    if row < params.rows {
        for (var b = first_block; b < blocks; b += LANES) {
            let xb = x_base + b * 8u;
            let xs = array<vec4<f32>, 8>(x[xb], x[xb + 1u], x[xb + 2u], x[xb + 3u], x[xb + 4u], x[xb + 5u], x[xb + 6u], x[xb + 7u]);
            acc += dot_block(row * blocks + b, params.params_offset, params.group, xs);
        }
    }
    partial_sums[lane.index] = acc;
    workgroupBarrier();
    if first_block == 0u && row < params.rows {
        var total = 0.0;
        for (var i = 0u; i < LANES; i++) {
            total += partial_sums[lane.index + i];
        }
        let out = params.out_offset + row;
        y[out] = finish_output(y[out], total, params.epilogue);
    }
}
