// Shared by every kernel: the per-step uniform, dispatch indexing and workgroup
// reductions. An including shader defines `const WG: u32` (its workgroup size, a
// power of two).

// Values that change between submissions; everything else is fixed per dispatch.
struct Step {
    n_tokens: u32,     // tokens in this step
    seed: u32,         // sampling seed
    temperature: f32,  // sampling temperature (sampling.wgsl)
    top_p: f32,        // nucleus mass (sampling.wgsl)
    choosing: u32,     // leading tokens that choose a next token; the others only extend their context
}

// Where a token of the step belongs: its sequence's KV cache slot and its position in that
// sequence (one `array<TokenPlace>` entry per token, for the kernels that need it).
struct TokenPlace {
    slot: u32,
    position: u32,
}

// One layer's KV cache (src/kernels/attention.rs, `KvCache`): f16 pairs, a slot of
// `slot_positions` positions (whole tiles of ATTENTION_KEYS) per sequence. Values are
// position-major: a key's head_dim values are contiguous, read a quad of pairs (one
// vec4<u32>) at a time. Keys are quad-major within each tile, as attention reads them with an
// invocation per key: each invocation loads a quad of its key's pairs, and the invocations of
// one load read consecutive quads. A prefix of whole tiles is one contiguous range. A head's
// pairs are a whole number of quads (head_dim is a multiple of 8).
struct CacheShape {
    kv_heads: u32,
    pairs: u32,
    slot_positions: u32,
}

fn value_word(c: CacheShape, slot: u32, pos: u32, head: u32, i: u32) -> u32 {
    return ((slot * c.slot_positions + pos) * c.kv_heads + head) * c.pairs + i;
}

// The quad (vec4<u32>) of a key's pairs 4q..4q+3.
fn key_quad(c: CacheShape, slot: u32, pos: u32, head: u32, q: u32) -> u32 {
    let tile = (slot * c.slot_positions + pos) / ATTENTION_KEYS;
    return ((tile * c.kv_heads + head) * (c.pairs / 4u) + q) * ATTENTION_KEYS + pos % ATTENTION_KEYS;
}

fn key_word(c: CacheShape, slot: u32, pos: u32, head: u32, i: u32) -> u32 {
    return key_quad(c, slot, pos, head, i / 4u) * 4u + i % 4u;
}

#ifdef SUBGROUPS
struct Lane {
    @builtin(local_invocation_index) index: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_size) sg_size: u32,
}
#else
struct Lane {
    @builtin(local_invocation_index) index: u32,
}
#endif

// Dispatches wider than 65535 workgroups are folded into y.
fn flat_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

fn flat_invocation(wid: vec3<u32>, nwg: vec3<u32>, lane: Lane) -> u32 {
    return flat_workgroup(wid, nwg) * WG + lane.index;
}

var<workgroup> reduce_scratch: array<f32, WG>;

#ifdef SUBGROUPS
// How many subgroups the workgroup spans. Subgroup sizes are powers of two, as WG is, so
// either the subgroups tile the workgroup exactly or one subgroup holds all of it (an
// adapter may report subgroups larger than a small workgroup): rounding up counts that
// one, whose lane 0 is invocation 0.
fn subgroups_in_workgroup(lane: Lane) -> u32 {
    return (WG + lane.sg_size - 1u) / lane.sg_size;
}
#endif

// Sum of `value` over the workgroup; every invocation must call it.
fn workgroup_sum(value: f32, lane: Lane) -> f32 {
#ifdef SUBGROUPS
    let partial = subgroupAdd(value);
    if lane.sg_lane == 0u {
        reduce_scratch[lane.index / lane.sg_size] = partial;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var i = 0u; i < subgroups_in_workgroup(lane); i++) {
        total += reduce_scratch[i];
    }
#else
    reduce_scratch[lane.index] = value;
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        workgroupBarrier();
        if lane.index < stride {
            reduce_scratch[lane.index] += reduce_scratch[lane.index + stride];
        }
    }
    workgroupBarrier();
    let total = reduce_scratch[0];
#endif
    workgroupBarrier();
    return total;
}

// Maximum of `value` over the workgroup; every invocation must call it.
fn workgroup_max(value: f32, lane: Lane) -> f32 {
#ifdef SUBGROUPS
    let partial = subgroupMax(value);
    if lane.sg_lane == 0u {
        reduce_scratch[lane.index / lane.sg_size] = partial;
    }
    workgroupBarrier();
    var total = reduce_scratch[0];
    for (var i = 1u; i < subgroups_in_workgroup(lane); i++) {
        total = max(total, reduce_scratch[i]);
    }
#else
    reduce_scratch[lane.index] = value;
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        workgroupBarrier();
        if lane.index < stride {
            reduce_scratch[lane.index] = max(reduce_scratch[lane.index], reduce_scratch[lane.index + stride]);
        }
    }
    workgroupBarrier();
    let total = reduce_scratch[0];
#endif
    workgroupBarrier();
    return total;
}
