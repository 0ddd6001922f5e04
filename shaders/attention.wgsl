// Causal attention over the KV cache, with grouped-query heads.
//
// The step's keys and values are already in the cache (rope.wgsl stores them).
// `attend` (prefill) gives each workgroup a tile of query rows that share one KV head: the
// query heads of (part of) one GQA group, for one or more consecutive tokens of one sequence.
// It walks the cached keys in tiles of WG with an online softmax (running max and sum per
// row), so every key and value read serves all rows of the tile, no score matrix is stored
// and any context fits in fixed workgroup memory.
// `attend_decode` is the same for one token per tile, specialized: its row count and head
// size are pipeline constants, so its loops have constant bounds and its per-row arrays stay
// in registers; keys and values are read a quad of pairs (16 bytes) per load; two barriers
// per key tile. A decode step has too few rows to fill a GPU, so its keys may also be split
// into ranges (flash-decoding), leaving unnormalized partial results that `combine_splits`
// merges.

#include "common.wgsl"

const WG: u32 = ATTENTION_KEYS;
// Shared with Rust: ATTENTION_MAX_ROWS query rows per workgroup, ATTENTION_Q_PAIRS value
// pairs of them staged (rows x head_dim / 2), ATTENTION_MAX_ACC accumulators per
// invocation (= ATTENTION_Q_PAIRS / WG).

struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    scale: f32,
    heads_per_block: u32,  // query heads of one KV group that share a workgroup
    tokens_per_tile: u32,  // tokens whose rows share a workgroup
    splits: u32,           // key ranges per row (attend_split, combine_splits)
    slot_positions: u32,   // positions each sequence's slot of the cache holds
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> q: array<f32>;
// Quads of f16 pairs (`key_quad`, `value_word` in common.wgsl).
@group(0) @binding(5) var<storage, read> k_cache: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read> v_cache: array<vec4<u32>>;
@group(0) @binding(7) var<storage, read_write> out: array<vec2<f32>>;
// Per split: unnormalized sums (row x pair), and each row's (max, sum).
@group(0) @binding(8) var<storage, read_write> split_acc: array<vec2<f32>>;
@group(0) @binding(9) var<storage, read_write> split_stats: array<vec2<f32>>;
@group(0) @binding(10) var<storage, read> places: array<TokenPlace>;

fn cache_shape() -> CacheShape {
    return CacheShape(params.n_kv_heads, params.head_dim / 2u, params.slot_positions);
}

// The tile's query rows (scaled), row-major by pair.
var<workgroup> q_tile: array<vec2<f32>, ATTENTION_Q_PAIRS>;
// Scores, then probabilities, of the current key tile: row-major by key.
var<workgroup> probs: array<f32, ATTENTION_MAX_ROWS * WG>;
var<workgroup> row_max: array<f32, ATTENTION_MAX_ROWS>;
var<workgroup> row_sum: array<f32, ATTENTION_MAX_ROWS>;
var<workgroup> row_correction: array<f32, ATTENTION_MAX_ROWS>;
// Per-invocation parts of a row's max or sum.
var<workgroup> part_results: array<f32, WG>;

// What one workgroup is working on (uniform across it).
struct Tile {
    slot: u32,        // the sequence of every token in the tile
    kv_head: u32,
    first_head: u32,  // query head of row 0
    first_token: u32,
    rows: u32,        // active rows: heads_per_block x tokens in the tile
}

// Row `r`'s token (within the step) and query head.
fn row_token(tile: Tile, r: u32) -> u32 {
    return tile.first_token + r / params.heads_per_block;
}

fn row_head(tile: Tile, r: u32) -> u32 {
    return tile.first_head + r % params.heads_per_block;
}

fn make_tile(block: u32, token_tile: u32) -> Tile {
    let blocks_per_group = params.n_heads / params.n_kv_heads / params.heads_per_block;
    var tile: Tile;
    tile.kv_head = block / blocks_per_group;
    tile.first_head = block * params.heads_per_block;
    tile.first_token = token_tile * params.tokens_per_tile;
    tile.slot = places[min(tile.first_token, step.n_tokens - 1u)].slot;
    let tokens = min(params.tokens_per_tile, step.n_tokens - min(step.n_tokens, tile.first_token));
    tile.rows = tokens * params.heads_per_block;
    return tile;
}

// The value pairs an invocation accumulates: pair `lane % pairs` (plus multiples of WG when
// head_dim / 2 exceeds WG) of rows `lane / pairs`, then every `row_step`-th row after it.
// acc[k * pair_chunks + c] holds the k-th such row's chunk c.
fn pair_chunks() -> u32 {
    return (params.head_dim / 2u + WG - 1u) / WG;
}

fn row_step() -> u32 {
    return max(1u, WG / (params.head_dim / 2u));
}

var<private> acc: array<vec2<f32>, ATTENTION_MAX_ACC>;

// What acc[a] of this invocation holds: a row of the tile (and of the step: token x
// n_heads + head) and a value pair; `owned` is false for slots it does not use.
struct AccSlot {
    owned: bool,
    tile_row: u32,
    row: u32,
    pair: u32,
}

fn acc_slot(lane: Lane, tile: Tile, a: u32) -> AccSlot {
    let pairs = params.head_dim / 2u;
    let first_row = lane.index / pairs;
    var slot: AccSlot;
    slot.tile_row = first_row + a / pair_chunks() * row_step();
    slot.pair = lane.index % pairs + a % pair_chunks() * WG;
    slot.owned = first_row < row_step() && slot.tile_row < tile.rows && slot.pair < pairs;
    slot.row = row_token(tile, slot.tile_row) * params.n_heads + row_head(tile, slot.tile_row);
    return slot;
}

// Online softmax over keys [first_key, last_key) for every row (each row also stops at its
// causal limit), accumulating this invocation's share of `probs x V` in `acc` and leaving
// each row's running max and sum in row_max / row_sum.
fn attend_keys(lane: Lane, tile: Tile, first_key: u32, last_key: u32) {
    let pairs = params.head_dim / 2u;
    for (var r = lane.index; r < tile.rows; r += WG) {
        row_max[r] = -3.0e38;
        row_sum[r] = 0.0;
    }
    for (var index = lane.index; index < tile.rows * pairs; index += WG) {
        let r = index / pairs;
        let head = row_head(tile, r);
        let base = (row_token(tile, r) * params.n_heads + head) * params.head_dim + 2u * (index % pairs);
        q_tile[index] = vec2<f32>(q[base], q[base + 1u]) * params.scale;
    }
    for (var a = 0u; a < ATTENTION_MAX_ACC; a++) {
        acc[a] = vec2<f32>(0.0);
    }
    workgroupBarrier();

    var scores: array<f32, ATTENTION_MAX_ROWS>;
    for (var start = first_key; start < last_key; start += WG) {
        // Scores: this invocation's key against every row.
        let key = start + lane.index;
        // Assigned each tile, not declared in the loop: Chromium (Tint, on SwiftShader) kept
        // the previous tile's values in a loop-scoped `var` that WGSL says starts at zero.
        scores = array<f32, ATTENTION_MAX_ROWS>();
        if key < last_key {
            for (var quad = 0u; quad < pairs / 4u; quad++) {
                let k_quad = k_cache[key_quad(cache_shape(), tile.slot, key, tile.kv_head, quad)];
                for (var j = 0u; j < 4u; j++) {
                    let k_pair = unpack2x16float(k_quad[j]);
                    for (var r = 0u; r < tile.rows; r++) {
                        scores[r] += dot(q_tile[r * pairs + 4u * quad + j], k_pair);
                    }
                }
            }
        }
        for (var r = 0u; r < tile.rows; r++) {
            probs[r * WG + lane.index] = scores[r];
        }
        workgroupBarrier();
        // Softmax bookkeeping: each row gets `lanes_per_row` invocations, which take every
        // lanes_per_row-th key of the tile, and the row's first one combines their parts.
        let in_tile = min(WG, last_key - start);
        let lanes_per_row = WG / row_slots(tile.rows);
        let r = lane.index / lanes_per_row;
        let part = lane.index % lanes_per_row;
        var visible = 0u;
        var part_max = -3.0e38;
        if r < tile.rows {
            // Causal: the row's token sees positions up to its own.
            let row_keys = places[row_token(tile, r)].position + 1u;
            visible = min(in_tile, max(row_keys, start) - start);
            for (var j = part; j < visible; j += lanes_per_row) {
                part_max = max(part_max, probs[r * WG + j]);
            }
        }
        part_results[lane.index] = part_max;
        workgroupBarrier();
        if r < tile.rows && part == 0u {
            var tile_max = -3.0e38;
            for (var i = 0u; i < lanes_per_row; i++) {
                tile_max = max(tile_max, part_results[lane.index + i]);
            }
            let new_max = max(row_max[r], tile_max);
            row_correction[r] = exp(row_max[r] - new_max);
            row_max[r] = new_max;
        }
        workgroupBarrier();
        var part_sum = 0.0;
        if r < tile.rows {
            for (var j = part; j < in_tile; j += lanes_per_row) {
                let p = select(0.0, exp(probs[r * WG + j] - row_max[r]), j < visible);
                probs[r * WG + j] = p;
                part_sum += p;
            }
        }
        part_results[lane.index] = part_sum;
        workgroupBarrier();
        if r < tile.rows && part == 0u {
            var sum = 0.0;
            for (var i = 0u; i < lanes_per_row; i++) {
                sum += part_results[lane.index + i];
            }
            row_sum[r] = row_sum[r] * row_correction[r] + sum;
        }
        workgroupBarrier();
        // probs x V: each value pair is read once for all of this invocation's rows.
        let first_row = lane.index / pairs;
        if first_row < row_step() {
            for (var c = 0u; c < pair_chunks(); c++) {
                let i = lane.index % pairs + c * WG;
                if i >= pairs {
                    break;
                }
                var a = c;
                for (var r = first_row; r < tile.rows; r += row_step()) {
                    acc[a] *= row_correction[r];
                    a += pair_chunks();
                }
                for (var j = 0u; j < in_tile; j++) {
                    let word = value_word(cache_shape(), tile.slot, start + j, tile.kv_head, i);
                    let v_pair = unpack2x16float(v_cache[word / 4u][word % 4u]);
                    a = c;
                    for (var r = first_row; r < tile.rows; r += row_step()) {
                        acc[a] += probs[r * WG + j] * v_pair;
                        a += pair_chunks();
                    }
                }
            }
        }
        workgroupBarrier();
    }
}

// The power of two at or above `rows` (at most ATTENTION_MAX_ROWS, which divides WG).
fn row_slots(rows: u32) -> u32 {
    var slots = 1u;
    while slots < rows {
        slots *= 2u;
    }
    return slots;
}

// Keys a tile's last row may see.
fn tile_keys(tile: Tile) -> u32 {
    return places[row_token(tile, tile.rows - 1u)].position + 1u;
}

// Grid: x = query head blocks, y = token tiles.
@compute @workgroup_size(WG)
fn attend(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    let tile = make_tile(wid.x, wid.y);
    if tile.rows == 0u {
        return;
    }
    attend_keys(lane, tile, 0u, tile_keys(tile));
    for (var a = 0u; a < ATTENTION_MAX_ACC; a++) {
        let slot = acc_slot(lane, tile, a);
        if slot.owned {
            out[slot.row * params.head_dim / 2u + slot.pair] = acc[a] / row_sum[slot.tile_row];
        }
    }
}


// ---- Decode: one token per tile ----

// Fixed per model when the pipeline is created (src/kernels/attention.rs): the query heads
// a workgroup attends (at most ATTENTION_DECODE_ROWS) and head_dim / 8, the quads of pairs
// (vec4<u32> loads) of one head.
override DECODE_ROWS: u32 = 1u;
override HEAD_QUADS: u32 = 16u;
const DECODE_MAX_QUADS: u32 = 32u; // head_dim 256
// Invocations that read one key's values, a quad each; the workgroup reads this many keys
// at once (an invocation left over when HEAD_QUADS does not divide WG only scores keys).
override KEY_LANES: u32 = WG / HEAD_QUADS;

// The rows' queries (scaled), two vec4s per quad: row r's quad q at 2 * (r * HEAD_QUADS + q).
var<workgroup> decode_q: array<vec4<f32>, 2u * ATTENTION_DECODE_ROWS * DECODE_MAX_QUADS>;
// The current key tile's scores, then probabilities, per row: r * WG + key.
var<workgroup> decode_scores: array<f32, ATTENTION_DECODE_ROWS * WG>;
var<workgroup> decode_probs: array<f32, ATTENTION_DECODE_ROWS * WG>;
// The end's sum over key lanes: each invocation's two vec4s of one row, and its part of the row's sum.
var<workgroup> decode_parts: array<vec4<f32>, 2u * WG>;
var<workgroup> decode_part_sums: array<f32, WG>;

// Key ranges a decode row's `n_keys` keys are split into: at most `params.splits`, of about
// ATTENTION_SPLIT_KEYS keys or more each, so a short context is not spread thin (each range
// costs a partial row in the merge). attend_decode and combine_splits agree through this.
fn splits_in_use(n_keys: u32) -> u32 {
    return clamp(n_keys / ATTENTION_SPLIT_KEYS, 1u, params.splits);
}

// Grid: x = query head blocks x splits (split fastest), y = tokens (one per sequence). Split
// s of the splits in use covers an equal share of the keys, in whole tiles of WG; with one
// split the output is finished here, otherwise the partial sums and each row's (max, sum)
// go to the merge.
@compute @workgroup_size(WG)
fn attend_decode(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    let split = wid.x % params.splits;
    let tile = make_tile(wid.x / params.splits, wid.y);
    if tile.rows == 0u {
        return;
    }
    let n_keys = places[tile.first_token].position + 1u;
    let splits = splits_in_use(n_keys);
    if split >= splits {
        return;
    }
    let per_split = (n_keys + splits * WG - 1u) / (splits * WG) * WG;
    let first_key = min(n_keys, split * per_split);
    let last_key = min(n_keys, first_key + per_split);

    for (var index = lane.index; index < DECODE_ROWS * 2u * HEAD_QUADS; index += WG) {
        let base = (tile.first_token * params.n_heads + tile.first_head) * params.head_dim + 4u * index;
        decode_q[index] = vec4<f32>(q[base], q[base + 1u], q[base + 2u], q[base + 3u]) * params.scale;
    }
    // Per row: the running max (the same in every invocation), this invocation's part of the
    // running sum (its own keys' probabilities), and its value quad's sums.
    var running_max: array<f32, ATTENTION_DECODE_ROWS>;
    var own_sum: array<f32, ATTENTION_DECODE_ROWS>;
    var value_sums: array<vec4<f32>, 2u * ATTENTION_DECODE_ROWS>;
    for (var r = 0u; r < DECODE_ROWS; r++) {
        running_max[r] = -3.0e38;
        own_sum[r] = 0.0;
        value_sums[2u * r] = vec4<f32>(0.0);
        value_sums[2u * r + 1u] = vec4<f32>(0.0);
    }
    let shape = cache_shape();
    let key_lane = lane.index / HEAD_QUADS;
    let quad = lane.index % HEAD_QUADS;
    workgroupBarrier();

    for (var start = first_key; start < last_key; start += WG) {
        let in_tile = min(WG, last_key - start);
        // Scores: this invocation's key against every row (-3e38 past the range: weight 0).
        var scores: array<f32, ATTENTION_DECODE_ROWS>;
        for (var r = 0u; r < DECODE_ROWS; r++) {
            scores[r] = 0.0;
        }
        if lane.index < in_tile {
            for (var q4 = 0u; q4 < HEAD_QUADS; q4++) {
                let k_quad = k_cache[key_quad(shape, tile.slot, start + lane.index, tile.kv_head, q4)];
                let k_lo = vec4<f32>(unpack2x16float(k_quad.x), unpack2x16float(k_quad.y));
                let k_hi = vec4<f32>(unpack2x16float(k_quad.z), unpack2x16float(k_quad.w));
                for (var r = 0u; r < DECODE_ROWS; r++) {
                    let at = 2u * (r * HEAD_QUADS + q4);
                    scores[r] += dot(decode_q[at], k_lo) + dot(decode_q[at + 1u], k_hi);
                }
            }
        } else {
            for (var r = 0u; r < DECODE_ROWS; r++) {
                scores[r] = -3.0e38;
            }
        }
        for (var r = 0u; r < DECODE_ROWS; r++) {
            decode_scores[r * WG + lane.index] = scores[r];
        }
        workgroupBarrier();
        // Every invocation finds each row's tile max itself (the same value everywhere), so
        // no further barrier is needed before the probabilities: with subgroups each subgroup
        // reduces the whole tile, otherwise each invocation reads it.
        var correction: array<f32, ATTENTION_DECODE_ROWS>;
        for (var r = 0u; r < DECODE_ROWS; r++) {
            var tile_max = -3.0e38;
#ifdef SUBGROUPS
            for (var j = lane.sg_lane; j < WG; j += lane.sg_size) {
                tile_max = max(tile_max, decode_scores[r * WG + j]);
            }
            tile_max = subgroupMax(tile_max);
#else
            for (var j = 0u; j < WG; j++) {
                tile_max = max(tile_max, decode_scores[r * WG + j]);
            }
#endif
            let new_max = max(running_max[r], tile_max);
            correction[r] = exp(running_max[r] - new_max);
            running_max[r] = new_max;
            let p = select(0.0, exp(scores[r] - new_max), lane.index < in_tile);
            decode_probs[r * WG + lane.index] = p;
            own_sum[r] = own_sum[r] * correction[r] + p;
        }
        workgroupBarrier();
        // probs x V: KEY_LANES keys at a time, each value quad read once for all rows.
        if key_lane < KEY_LANES {
            for (var r = 0u; r < DECODE_ROWS; r++) {
                value_sums[2u * r] *= correction[r];
                value_sums[2u * r + 1u] *= correction[r];
            }
            for (var j = key_lane; j < in_tile; j += KEY_LANES) {
                let v_quad = v_cache[value_word(shape, tile.slot, start + j, tile.kv_head, 4u * quad) / 4u];
                let v_lo = vec4<f32>(unpack2x16float(v_quad.x), unpack2x16float(v_quad.y));
                let v_hi = vec4<f32>(unpack2x16float(v_quad.z), unpack2x16float(v_quad.w));
                for (var r = 0u; r < DECODE_ROWS; r++) {
                    let p = decode_probs[r * WG + j];
                    value_sums[2u * r] += p * v_lo;
                    value_sums[2u * r + 1u] += p * v_hi;
                }
            }
        }
    }

    // Each row's sums over the key lanes, and its probabilities' sum over all invocations.
    let rows_in_step = step.n_tokens * params.n_heads;
    for (var r = 0u; r < DECODE_ROWS; r++) {
        workgroupBarrier();
        decode_parts[2u * lane.index] = value_sums[2u * r];
        decode_parts[2u * lane.index + 1u] = value_sums[2u * r + 1u];
        decode_part_sums[lane.index] = own_sum[r];
        workgroupBarrier();
        if lane.index < HEAD_QUADS {
            var lo = vec4<f32>(0.0);
            var hi = vec4<f32>(0.0);
            for (var k = 0u; k < KEY_LANES; k++) {
                lo += decode_parts[2u * (k * HEAD_QUADS + lane.index)];
                hi += decode_parts[2u * (k * HEAD_QUADS + lane.index) + 1u];
            }
            var sum = 0.0;
            for (var k = 0u; k < WG; k++) {
                sum += decode_part_sums[k];
            }
            let row = tile.first_token * params.n_heads + tile.first_head + r;
            let pair = row * params.head_dim / 2u + 4u * lane.index;
            if params.splits == 1u {
                lo /= sum;
                hi /= sum;
                out[pair] = lo.xy;
                out[pair + 1u] = lo.zw;
                out[pair + 2u] = hi.xy;
                out[pair + 3u] = hi.zw;
            } else {
                let at = split * rows_in_step * params.head_dim / 2u + pair;
                split_acc[at] = lo.xy;
                split_acc[at + 1u] = lo.zw;
                split_acc[at + 2u] = hi.xy;
                split_acc[at + 3u] = hi.zw;
                if lane.index == 0u {
                    split_stats[split * rows_in_step + row] = vec2<f32>(running_max[r], sum);
                }
            }
        }
    }
}

// One workgroup per (query head, token): rescales each split's sums to the common maximum.
@compute @workgroup_size(WG)
fn combine_splits(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.y * params.n_heads + wid.x;
    if wid.y >= step.n_tokens {
        return;
    }
    let splits = splits_in_use(places[wid.y].position + 1u);
    let pairs = params.head_dim / 2u;
    let rows_in_step = step.n_tokens * params.n_heads;
    var overall_max = -3.0e38;
    for (var s = 0u; s < splits; s++) {
        overall_max = max(overall_max, split_stats[s * rows_in_step + row].x);
    }
    var total = 0.0;
    for (var s = 0u; s < splits; s++) {
        let stats = split_stats[s * rows_in_step + row];
        total += stats.y * exp(stats.x - overall_max);
    }
    for (var i = lane.index; i < pairs; i += WG) {
        var sum = vec2<f32>(0.0);
        for (var s = 0u; s < splits; s++) {
            let stats = split_stats[s * rows_in_step + row];
            // A split that saw no keys has a max of -3e38 and zero sums: its weight is 0.
            sum += split_acc[(s * rows_in_step + row) * pairs + i] * exp(stats.x - overall_max);
        }
        out[row * pairs + i] = sum / total;
    }
}
