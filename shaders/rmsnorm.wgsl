// RMSNorm over each token's row: out = x / sqrt(mean(x^2) + eps) * weight.
// One workgroup per row.

#include "common.wgsl"

const WG: u32 = DEFAULT_WORKGROUP;

struct Params {
    cols: u32,
    eps: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    // Dispatched as Workgroups::PerToken(1): the token is y.
    let row = wid.y;
    if row >= step.n_tokens {
        return;
    }
    let base = row * params.cols;
    var squares = 0.0;
    for (var i = lane.index; i < params.cols; i += WG) {
        let v = x[base + i];
        squares += v * v;
    }
    let inv_rms = inverseSqrt(workgroup_sum(squares, lane) / f32(params.cols) + params.eps);
    for (var i = lane.index; i < params.cols; i += WG) {
        out[base + i] = x[base + i] * inv_rms * weight[i];
    }
}
