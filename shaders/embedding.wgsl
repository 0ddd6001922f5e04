// Token embedding lookup: x[t] = embedding row tokens[t], decoded to f32. Dispatched
// once per tensor part; a part writes only the tokens whose rows it holds.

#include "common.wgsl"
#include "quant.wgsl"

const WG: u32 = EMBEDDING_WORKGROUP;

struct Params {
    row_start: u32,
    rows: u32,
    cols: u32,
    group: u32,
    params_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> weights: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> tokens: array<u32>;
@group(0) @binding(4) var<storage, read_write> x: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let blocks = params.cols / BLOCK_VALUES;
    let index = flat_invocation(wid, nwg, lane);
    let t = index / blocks;
    let b = index % blocks;
    if t >= step.n_tokens {
        return;
    }
    let id = tokens[t];
    if id < params.row_start || id >= params.row_start + params.rows {
        return;
    }
    let values = load_block((id - params.row_start) * blocks + b, params.params_offset, params.group);
    let base = (t * params.cols + b * BLOCK_VALUES) / 4u;
    for (var i = 0u; i < 8u; i++) {
        x[base + i] = values[i];
    }
}
