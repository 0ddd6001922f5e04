// A plain copy, the bandwidth yardstick `webjudge bench` sets beside the matvec.

#include "common.wgsl"

const WG: u32 = DEFAULT_WORKGROUP;

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = flat_invocation(wid, nwg, lane);
    if index < arrayLength(&src) {
        dst[index] = src[index];
    }
}
