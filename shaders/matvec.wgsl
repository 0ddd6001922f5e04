// Matrix-vector product for decode: y[out_offset + r] (+)= W[r, :] . x, one
// workgroup per row; invocations stride over 32-value blocks with vectorized loads
// and meet in a workgroup reduction.

#include "common.wgsl"
#include "quant.wgsl"

const WG: u32 = 64u;

struct Params {
    rows: u32,
    cols: u32,
    group: u32,
    params_offset: u32,
    out_offset: u32,
    // 1: read x from the step's last token row (the lm_head after a prefill chunk).
    x_last_row: u32,
    // 1: add to y (fuses the residual connection), 0: overwrite.
    accumulate: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> weights: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = flat_workgroup(wid, nwg);
    if row >= params.rows {
        return;
    }
    let blocks = params.cols / 32u;
    let x_base = select(0u, (step.n_tokens - 1u) * params.cols / 4u, params.x_last_row == 1u);
    var acc = 0.0;
    for (var b = lane.index; b < blocks; b += WG) {
        let w = load_block(row * blocks + b, params.params_offset, params.group);
        let xb = x_base + b * 8u;
        for (var i = 0u; i < 8u; i++) {
            acc += dot(w[i], x[xb + i]);
        }
    }
    let total = workgroup_sum(acc, lane);
    if lane.index == 0u {
        let out = params.out_offset + row;
        y[out] = select(0.0, y[out], params.accumulate == 1u) + total;
    }
}
