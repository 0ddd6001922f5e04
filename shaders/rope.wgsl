// Rotary position embedding and the KV cache store, in one pass over the step's q/k/v
// projection (`qkv`: per token its queries, then keys, then values). Adjacent pairs
// (2i, 2i+1) of each head rotate by position * theta^(-2i/head_dim); the converters
// permute Hugging Face checkpoints into this convention. cos/sin come from a table
// computed on the CPU, since large angles lose precision in GPU sin(). Rotated queries go
// to `q` for attention; rotated keys and the values go, as f16 pairs, to the token's
// sequence slot and position of the cache (`key_word`, `value_word` in common.wgsl).
// With QKV_BIAS, each projection's bias (`qkv_bias`: queries', keys', values', as a
// token's sums lie) is added first, for every weight type and kernel that wrote the sums.

#include "common.wgsl"

const WG: u32 = DEFAULT_WORKGROUP;

struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    slot_positions: u32,  // positions each sequence's slot of the cache holds
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> cos_sin: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> qkv: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> q: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(6) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(7) var<storage, read> places: array<TokenPlace>;
#ifdef QKV_BIAS
@group(0) @binding(8) var<storage, read> qkv_bias: array<vec2<f32>>;
#endif

// Pair `i` of a token's q/k/v sums (starting at `token`), with its bias.
fn projected(token: u32, i: u32) -> vec2<f32> {
#ifdef QKV_BIAS
    return qkv[token + i] + qkv_bias[i];
#else
    return qkv[token + i];
#endif
}

fn rotate(v: vec2<f32>, cs: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(v.x * cs.x - v.y * cs.y, v.x * cs.y + v.y * cs.x);
}

// One invocation per query pair and per key/value pair of each token.
@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pairs = params.head_dim / 2u;
    let q_pairs = params.n_heads * pairs;
    let kv_pairs = params.n_kv_heads * pairs;
    let per_token = q_pairs + kv_pairs;
    let index = flat_invocation(wid, nwg, lane);
    let t = index / per_token;
    if t >= step.n_tokens {
        return;
    }
    let i = index % per_token;
    let place = places[t];
    let cs = cos_sin[place.position * pairs + i % pairs];
    let token = t * (q_pairs + 2u * kv_pairs);
    if i < q_pairs {
        q[t * q_pairs + i] = rotate(projected(token, i), cs);
    } else {
        let kv = i - q_pairs;
        let shape = CacheShape(params.n_kv_heads, pairs, params.slot_positions);
        let head = kv / pairs;
        let pair = kv % pairs;
        let key = rotate(projected(token, q_pairs + kv), cs);
        k_cache[key_word(shape, place.slot, place.position, head, pair)] = pack2x16float(key);
        let value = projected(token, q_pairs + kv_pairs + kv);
        v_cache[value_word(shape, place.slot, place.position, head, pair)] = pack2x16float(value);
    }
}
