// Input gather for act-order weights: gathered[t, i] = x[t, order[i]] for every token t of
// the step, so a weight whose columns are stored sorted by GPTQ group reads its inputs in
// the same order (see src/kernels/gather.rs).

#include "common.wgsl"

const WG: u32 = DEFAULT_WORKGROUP;

struct Params {
    inputs: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> order: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> gathered: array<f32>;

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = flat_invocation(wid, nwg, lane);
    if index >= step.n_tokens * params.inputs {
        return;
    }
    let row_start = index - index % params.inputs;
    gathered[index] = x[row_start + order[index % params.inputs]];
}
