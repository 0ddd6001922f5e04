// Picks the next token of each logits row on the GPU (one workgroup per row), writing it to
// tokens[row] where the next step's embedding lookup reads it; only those ids are copied
// back to the CPU. Row r is the step's token r, or with `last_token_only` the one row of the
// step's last token (the lm_head after a prefill chunk).
//
// `argmax`: greedy; ties go to the lowest id, as torch.argmax does.
// `sample`: temperature and nucleus (top-p) sampling. The nucleus threshold is found
// by bisection on probability mass, then a Gumbel-max draw over the kept tokens
// samples exactly from the renormalized distribution without sorting.

#include "common.wgsl"

const WG: u32 = DEFAULT_WORKGROUP;
const BISECTION_STEPS: u32 = 24u;

struct Params {
    vocab: u32,
    last_token_only: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> tokens: array<u32>;
@group(0) @binding(4) var<storage, read> places: array<TokenPlace>;

var<workgroup> best_value: array<f32, WG>;
var<workgroup> best_index: array<u32, WG>;

// Index of the largest score over the workgroup's candidates (lowest index on ties).
fn workgroup_argmax(value: f32, index: u32, lane: Lane) -> u32 {
    best_value[lane.index] = value;
    best_index[lane.index] = index;
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        workgroupBarrier();
        if lane.index < stride {
            let other = lane.index + stride;
            let v = best_value[other];
            let i = best_index[other];
            if v > best_value[lane.index] || (v == best_value[lane.index] && i < best_index[lane.index]) {
                best_value[lane.index] = v;
                best_index[lane.index] = i;
            }
        }
    }
    workgroupBarrier();
    return best_index[0];
}

// The row this workgroup chooses for: its logits start at row * vocab.
var<private> row: u32;

fn logit(i: u32) -> f32 {
    return logits[row * params.vocab + i];
}

// A row past the step's choosing tokens has no logits (the whole workgroup returns). Taken
// from the workgroup id, not `row`: a private variable is not uniform to WGSL's analysis.
fn skipped_row(workgroup_row: u32) -> bool {
    return params.last_token_only == 0u && workgroup_row >= step.choosing;
}

@compute @workgroup_size(WG)
fn argmax(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    row = wid.y;
    if skipped_row(wid.y) {
        return;
    }
    var value = -3.4e38;
    var index = 0xffffffffu;
    for (var i = lane.index; i < params.vocab; i += WG) {
        if logit(i) > value {
            value = logit(i);
            index = i;
        }
    }
    let chosen = workgroup_argmax(value, index, lane);
    if lane.index == 0u {
        tokens[row] = chosen;
    }
}

fn hash(x: u32) -> u32 {
    // PCG output permutation.
    let state = x * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// Uniform in (0, 1), independent per (seed, position, token): `position` is the position
// the chosen token will take.
fn uniform01(i: u32, position: u32) -> f32 {
    let h = hash(i ^ hash(step.seed ^ hash(position)));
    return (f32(h >> 8u) + 0.5) / 16777216.0;
}

// Total probability of the tokens whose probability is at least `threshold`.
fn mass_at_least(threshold: f32, max_logit: f32, inv_total: f32, lane: Lane) -> f32 {
    var mass = 0.0;
    for (var i = lane.index; i < params.vocab; i += WG) {
        let p = exp((logit(i) - max_logit) / step.temperature) * inv_total;
        mass += select(0.0, p, p >= threshold);
    }
    return workgroup_sum(mass, lane);
}

@compute @workgroup_size(WG)
fn sample(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    row = wid.y;
    if skipped_row(wid.y) {
        return;
    }
    let token = select(row, step.n_tokens - 1u, params.last_token_only == 1u);
    let next_position = places[token].position + 1u;
    var local_max = -3.4e38;
    for (var i = lane.index; i < params.vocab; i += WG) {
        local_max = max(local_max, logit(i));
    }
    let max_logit = workgroup_max(local_max, lane);
    var local_total = 0.0;
    for (var i = lane.index; i < params.vocab; i += WG) {
        local_total += exp((logit(i) - max_logit) / step.temperature);
    }
    let inv_total = 1.0 / workgroup_sum(local_total, lane);

    // Largest threshold whose kept mass still reaches top_p; the top token (p = inv_total)
    // is always kept.
    var low = 0.0;
    var high = inv_total;
    if step.top_p < 1.0 {
        for (var s = 0u; s < BISECTION_STEPS; s++) {
            let middle = 0.5 * (low + high);
            if mass_at_least(middle, max_logit, inv_total, lane) >= step.top_p {
                low = middle;
            } else {
                high = middle;
            }
        }
    }

    var value = -3.4e38;
    var index = 0xffffffffu;
    for (var i = lane.index; i < params.vocab; i += WG) {
        let scaled = (logit(i) - max_logit) / step.temperature;
        if exp(scaled) * inv_total >= low {
            let key = scaled - log(-log(uniform01(i, next_position)));
            if key > value {
                value = key;
                index = i;
            }
        }
    }
    let chosen = workgroup_argmax(value, index, lane);
    if lane.index == 0u {
        tokens[row] = chosen;
    }
}
