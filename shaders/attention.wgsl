// Causal attention over the KV cache, with grouped-query heads.
//
// `store_kv` appends the step's keys and values to the cache as f16 pairs.
// `attend` gives each (query head, token) one workgroup that walks the cached keys in
// tiles with an online softmax (running max and sum), so no score matrix is ever
// stored and any context length fits in fixed workgroup memory.

#include "common.wgsl"

const WG: u32 = 64u;
// Value pairs each invocation owns: head_dim up to 2 * 2 * WG = 256.
const PAIRS_PER_LANE: u32 = 2u;

struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read> v: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(6) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(7) var<storage, read_write> out: array<vec2<f32>>;

// Cache word of pair `i` of KV head `head` at position `pos`.
fn cache_word(pos: u32, head: u32, i: u32) -> u32 {
    return (pos * params.n_kv_heads + head) * (params.head_dim / 2u) + i;
}

@compute @workgroup_size(WG)
fn store_kv(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let kv_pairs = params.n_kv_heads * params.head_dim / 2u;
    let index = flat_invocation(wid, nwg, lane);
    let t = index / kv_pairs;
    if t >= step.n_tokens {
        return;
    }
    let word = (step.position + t) * kv_pairs + index % kv_pairs;
    k_cache[word] = pack2x16float(k[index]);
    v_cache[word] = pack2x16float(v[index]);
}

var<workgroup> q_head: array<vec2<f32>, 128>;
var<workgroup> probs: array<f32, WG>;
var<workgroup> partial_acc: array<vec2<f32>, WG>;

// One workgroup per (query head, token) walks the cached keys in tiles of WG: each
// invocation scores one key of the tile, the tile's maximum and sum are workgroup
// reductions, and the weighted sum of values is spread over every invocation. With
// head_dim / 2 value pairs below WG, the invocations split into WG / pairs groups that
// each take every group-th key of a tile, and the groups' sums meet at the end.
@compute @workgroup_size(WG)
fn attend(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    let head = wid.x;
    let t = wid.y;
    if t >= step.n_tokens {
        return;
    }
    let pairs = params.head_dim / 2u;
    let kv_head = head / (params.n_heads / params.n_kv_heads);
    let q_base = (t * params.n_heads + head) * params.head_dim;
    for (var i = lane.index; i < pairs; i += WG) {
        q_head[i] = vec2<f32>(q[q_base + 2u * i], q[q_base + 2u * i + 1u]) * params.scale;
    }
    workgroupBarrier();

    // Value pairs and keys this invocation accumulates: `key_groups` > 1 only for head_dim
    // up to WG, where pair = lane % pairs and the lane takes keys `group` modulo key_groups.
    let key_groups = max(1u, WG / pairs);
    let group = lane.index / pairs;
    let n_keys = step.position + t + 1u;
    var running_max = -3.0e38;
    var running_sum = 0.0;
    var acc: array<vec2<f32>, PAIRS_PER_LANE>;
    for (var start = 0u; start < n_keys; start += WG) {
        let key = start + lane.index;
        var score = -3.0e38;
        if key < n_keys {
            score = 0.0;
            for (var i = 0u; i < pairs; i++) {
                score += dot(unpack2x16float(k_cache[cache_word(key, kv_head, i)]), q_head[i]);
            }
        }
        let new_max = max(running_max, workgroup_max(score, lane));
        let correction = exp(running_max - new_max);
        let p = select(0.0, exp(score - new_max), key < n_keys);
        probs[lane.index] = p;
        running_sum = running_sum * correction + workgroup_sum(p, lane);
        running_max = new_max;
        let in_tile = min(WG, n_keys - start);
        if key_groups > 1u {
            if group < key_groups {
                let i = lane.index % pairs;
                var a = acc[0] * correction;
                for (var j = group; j < in_tile; j += key_groups) {
                    a += probs[j] * unpack2x16float(v_cache[cache_word(start + j, kv_head, i)]);
                }
                acc[0] = a;
            }
        } else {
            for (var c = 0u; c < PAIRS_PER_LANE; c++) {
                let i = lane.index + c * WG;
                if i < pairs {
                    var a = acc[c] * correction;
                    for (var j = 0u; j < in_tile; j++) {
                        a += probs[j] * unpack2x16float(v_cache[cache_word(start + j, kv_head, i)]);
                    }
                    acc[c] = a;
                }
            }
        }
        workgroupBarrier();
    }
    let out_base = (t * params.n_heads + head) * pairs;
    if key_groups > 1u {
        partial_acc[lane.index] = acc[0];
        workgroupBarrier();
        if lane.index < pairs {
            var total = vec2<f32>(0.0);
            for (var g = 0u; g < key_groups; g++) {
                total += partial_acc[g * pairs + lane.index];
            }
            out[out_base + lane.index] = total / running_sum;
        }
    } else {
        for (var c = 0u; c < PAIRS_PER_LANE; c++) {
            let i = lane.index + c * WG;
            if i < pairs {
                out[out_base + i] = acc[c] / running_sum;
            }
        }
    }
}
