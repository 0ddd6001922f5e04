// Rotary position embedding, in place on the step's queries and keys. Adjacent
// pairs (2i, 2i+1) of each head rotate by position * theta^(-2i/head_dim); the
// converters permute Hugging Face checkpoints into this convention. cos/sin come
// from a table computed on the CPU, since large angles lose precision in GPU sin().

#include "common.wgsl"

const WG: u32 = 256u;

struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> cos_sin: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> q: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> k: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read> places: array<TokenPlace>;

fn rotate(v: vec2<f32>, cs: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(v.x * cs.x - v.y * cs.y, v.x * cs.y + v.y * cs.x);
}

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pairs = params.head_dim / 2u;
    let per_token = (params.n_heads + params.n_kv_heads) * pairs;
    let index = flat_invocation(wid, nwg, lane);
    let t = index / per_token;
    if t >= step.n_tokens {
        return;
    }
    let head = (index % per_token) / pairs;
    let i = index % pairs;
    let cs = cos_sin[places[t].position * pairs + i];
    if head < params.n_heads {
        let at = (t * params.n_heads + head) * pairs + i;
        q[at] = rotate(q[at], cs);
    } else {
        let at = (t * params.n_kv_heads + head - params.n_heads) * pairs + i;
        k[at] = rotate(k[at], cs);
    }
}
