// SwiGLU activation, in place: gate = silu(gate) * up.

#include "common.wgsl"

const WG: u32 = 256u;

struct Params {
    ffn: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read_write> gate: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> up: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = flat_invocation(wid, nwg, lane);
    if index >= step.n_tokens * params.ffn / 4u {
        return;
    }
    let g = gate[index];
    gate[index] = g / (1.0 + exp(-g)) * up[index];
}
