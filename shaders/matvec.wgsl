// Matrix-vector product for decode: y[t, out_offset + r] (+)= W[r, :] . x[t] for each token t
// of the step, single-token rows of a batch (up to MATVEC_MAX_TOKENS): a weight block is read
// once for all of them, which is what batching gains, since decode is bound by reading the
// weights.
//
// A workgroup computes ROWS rows. An invocation owns ROWS_PER_LANE neighbouring rows (4 for
// one token, 8 for a batch) and every LANES-th 32-value block of them: each x block it loads
// serves all its rows (software adapters pay for every load; on lavapipe loading each
// token's x is most of a batched step), and neighbouring invocations read neighbouring
// blocks of a row, so weights are read in contiguous runs. The LANES partial sums of each output meet in
// workgroup memory. No subgroup operations: the result does not depend on the adapter's
// subgroup size, and browsers without subgroups run the same code. A quantized block's dot
// product applies its scale and offset once per block, not once per weight, and the sum of
// x the offset multiplies is taken once per x block for all the lane's rows (`dot_block`).
// Every output is summed in the same order whatever the batch, so a sequence's numbers do
// not depend on the sequences decoded beside it.
//
// With MATVEC_NORMED_INPUT, x is the residual stream and the kernel applies RMSNorm to it as
// it reads it (src/kernels/linear.rs, `normed_linear`): each x block is multiplied by the
// norm weight, its squares summed on the side; since W (x g / rms) = (W (x g)) / rms, the
// token's 1 / rms scales the finished sums. So a decode layer has no norm dispatch of its
// own (two fewer per layer, where a norm was one workgroup per token).
//
// With MATVEC_X8 (q4 and q8 weights; `MatvecPath::Int8` in src/kernels/linear.rs), each x
// block is quantized to signed 8 bits with a scale (`quantize_x8`, in quant.wgsl) and
// multiplied with the weight codes by WGSL's packed integer dot product (`dot4I8Packed`),
// the scales applied in f32 once per block: per 8 q4 weights two masks, a shift and two
// packed dot products where the exact decode spends five operations per weight, the
// arithmetic that rivals the memory time on NVIDIA (llama.cpp's Vulkan mmvq path does the
// same). The lane
// quantizes x where it loads it, after the norm: the normed and batched variants need no
// new buffer or dispatch, where a quantizing pass before the matvec would need the norm
// dispatch back (the normed x exists only in here) and a buffer for the codes. Per x block
// that costs a lane 32 multiplies, rounds and adds, served by its 4 or 16 rows, against
// about 130 operations saved per row. Every workgroup quantizes a block alike, so rows agree. It
// changes the math (docs/quantization.md says by how much), so it is chosen, not default.

#include "common.wgsl"
#include "quant.wgsl"

// MATVEC_WORKGROUP, MATVEC_ROWS, MATVEC_BATCH_ROWS and MATVEC_MAX_TOKENS come from
// src/kernels/variants.rs.
const WG: u32 = MATVEC_WORKGROUP;
#ifdef MATVEC_ONE_TOKEN
// A step of one token (src/kernels/linear.rs, `LinearKernel::MatvecOneToken`): accumulators
// and workgroup memory for one token, not a batch's; the same sums in the same order.
const MAX_TOKENS: u32 = 1u;
const ROWS: u32 = MATVEC_ROWS;
const ROWS_PER_LANE: u32 = 4u;
const PASS_TOKENS: u32 = 1u;
#else
const MAX_TOKENS: u32 = MATVEC_MAX_TOKENS;
const ROWS: u32 = MATVEC_BATCH_ROWS;
const ROWS_PER_LANE: u32 = 16u;
// The lanes' parts of every token do not fit in workgroup memory at once: they meet a few
// tokens at a time.
const PASS_TOKENS: u32 = MATVEC_PASS_TOKENS;
#endif
const LANES: u32 = WG / (ROWS / ROWS_PER_LANE);
// A lane's rows in fours, each four the components of a vec4 accumulator.
const QUADS: u32 = ROWS_PER_LANE / 4u;
const_assert ROWS % ROWS_PER_LANE == 0u;
const_assert ROWS_PER_LANE % 4u == 0u;
const_assert MAX_TOKENS % PASS_TOKENS == 0u;
// Both variants give a row's blocks to as many lanes alike: the same sums, bit for bit.
const_assert LANES == WG / (MATVEC_ROWS / 4u);

struct Params {
    rows: u32,
    cols: u32,
    group: u32,
    params_offset: u32,
    out_offset: u32,
    // Which tokens: MATVEC_TOKENS_EACH, MATVEC_TOKENS_LAST (the lm_head after a prefill
    // chunk, written to row 0) or MATVEC_TOKENS_CHOOSING (the leading `step.choosing`).
    tokens: u32,
    // src/kernels/linear.rs's `Epilogue`: store, add (the residual), or SwiGLU.
    epilogue: u32,
    // Outputs per token in y.
    out_stride: u32,
    // RMSNorm's epsilon (MATVEC_NORMED_INPUT).
    norm_eps: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> weights: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// partial_sums[(t * ROWS_PER_LANE + r) * WG + lane]: lane's share of its row r for the
// pass's token t.
var<workgroup> partial_sums: array<f32, PASS_TOKENS * ROWS_PER_LANE * WG>;

#ifdef MATVEC_NORMED_INPUT
@group(0) @binding(5) var<storage, read> norm_weight: array<vec4<f32>>;
// squares_by_lane[t * LANES + i]: the squares of token t's x over lane i's blocks, for the
// lanes of the first LANES (between them they read every block once).
var<workgroup> squares_by_lane: array<f32, MAX_TOKENS * LANES>;
#endif

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let first_row = flat_workgroup(wid, nwg) * ROWS;
    let my_rows = first_row + lane.index / LANES * ROWS_PER_LANE;
    let first_block = lane.index % LANES;
    let blocks = params.cols / BLOCK_VALUES;
    let last_only = params.tokens == MATVEC_TOKENS_LAST;
    let used = select(step.n_tokens, step.choosing, params.tokens == MATVEC_TOKENS_CHOOSING);
    let tokens = select(min(used, MAX_TOKENS), 1u, last_only);
    let first_token = select(0u, step.n_tokens - 1u, last_only);
    // Rows past the end read the last row (no branch in the loop) and are never written.
    let last_row = params.rows - 1u;
    // acc[t * QUADS + r / 4][r % 4]: token t's sum for the lane's row r.
    var acc = array<vec4<f32>, MAX_TOKENS * QUADS>();
#ifdef MATVEC_NORMED_INPUT
    var squares = array<f32, MAX_TOKENS>();
#endif
    for (var b = first_block; b < blocks; b += LANES) {
        // The lane's rows of this block are read once, before the tokens that multiply them.
        var packed: array<PackedBlock, ROWS_PER_LANE>;
        for (var r = 0u; r < ROWS_PER_LANE; r++) {
            let row = gate_up_row(min(my_rows + r, last_row), params.rows, params.epilogue);
            packed[r] = load_packed(row * blocks + b, params.params_offset, params.group);
        }
        // Constant trip counts (not `tokens`) let compilers unroll and keep `acc` in registers.
        for (var t = 0u; t < MAX_TOKENS; t++) {
            if t >= tokens {
                break;
            }
            let xb = (first_token + t) * params.cols / 4u + b * 8u;
            var xs = array<vec4<f32>, 8>(x[xb], x[xb + 1u], x[xb + 2u], x[xb + 3u], x[xb + 4u], x[xb + 5u], x[xb + 6u], x[xb + 7u]);
#ifdef MATVEC_NORMED_INPUT
            var block_squares = vec4<f32>(0.0);
            for (var i = 0u; i < 8u; i++) {
                block_squares += xs[i] * xs[i];
                xs[i] *= norm_weight[b * 8u + i];
            }
            squares[t] += dot(block_squares, vec4<f32>(1.0));
#endif
#ifdef MATVEC_X8
            let x8 = quantize_x8(xs);
            for (var q = 0u; q < QUADS; q++) {
                acc[t * QUADS + q] += vec4<f32>(
                    dot_block_x8(packed[4u * q], x8),
                    dot_block_x8(packed[4u * q + 1u], x8),
                    dot_block_x8(packed[4u * q + 2u], x8),
                    dot_block_x8(packed[4u * q + 3u], x8),
                );
            }
#else
            let x_sum = x_block_sum(xs);
            for (var q = 0u; q < QUADS; q++) {
                acc[t * QUADS + q] += vec4<f32>(
                    dot_block(packed[4u * q], xs, x_sum),
                    dot_block(packed[4u * q + 1u], xs, x_sum),
                    dot_block(packed[4u * q + 2u], xs, x_sum),
                    dot_block(packed[4u * q + 3u], xs, x_sum),
                );
            }
#endif
        }
    }
#ifdef MATVEC_NORMED_INPUT
    if lane.index < LANES {
        for (var t = 0u; t < MAX_TOKENS; t++) {
            squares_by_lane[t * LANES + lane.index] = squares[t];
        }
    }
    // The first pass's barrier makes them visible before any output reads them.
#endif
    let gate_up = params.epilogue == EPILOGUE_GATE_UP;
    let outputs = select(ROWS, ROWS / 2u, gate_up);
    for (var pass_first = 0u; pass_first < MAX_TOKENS; pass_first += PASS_TOKENS) {
        if pass_first >= tokens {
            break;
        }
        if pass_first > 0u {
            // The previous pass's sums are read before they are overwritten.
            workgroupBarrier();
        }
        let pass_tokens = min(tokens - pass_first, PASS_TOKENS);
        // Only the step's tokens: software adapters pay for every store.
        for (var t = 0u; t < PASS_TOKENS; t++) {
            if t >= pass_tokens {
                break;
            }
            for (var r = 0u; r < ROWS_PER_LANE; r++) {
                partial_sums[(t * ROWS_PER_LANE + r) * WG + lane.index] = acc[(pass_first + t) * QUADS + r / 4u][r % 4u];
            }
        }
        workgroupBarrier();
        // Each output (token, row of the workgroup) sums its LANES parts, in a fixed order. A
        // gate/up output sums its gate row and its up row (two further) and applies SwiGLU.
        for (var o = lane.index; o < pass_tokens * outputs; o += WG) {
            let t = o / outputs;
            let j = o % outputs;
            let row_in_group = select(j, j / 2u * 4u + j % 2u, gate_up);
            let scale = input_scale(pass_first + t);
            var value = lane_total(t, row_in_group) * scale;
            var row = first_row + row_in_group;
            var rows = params.rows;
            if gate_up {
                value = silu(value) * (lane_total(t, row_in_group + 2u) * scale);
                row = first_row / 2u + j;
                rows /= 2u;
            }
            if row < rows {
                let out = (pass_first + t) * params.out_stride + params.out_offset + row;
                y[out] = finish_output(y[out], value, params.epilogue);
            }
        }
    }
}

// What a token's sums are multiplied by: 1 / rms of its x where the kernel normalizes its
// input (the lanes' squares in lane order), else 1.
fn input_scale(t: u32) -> f32 {
#ifdef MATVEC_NORMED_INPUT
    var total = 0.0;
    for (var i = 0u; i < LANES; i++) {
        total += squares_by_lane[t * LANES + i];
    }
    return inverseSqrt(total / f32(params.cols) + params.norm_eps);
#else
    return 1.0;
#endif
}

// Token t's sum for row `row_in_group` of the workgroup: its lanes' parts, in lane order.
fn lane_total(t: u32, row_in_group: u32) -> f32 {
    let r = row_in_group % ROWS_PER_LANE;
    let first_lane = row_in_group / ROWS_PER_LANE * LANES;
    var total = 0.0;
    for (var i = 0u; i < LANES; i++) {
        total += partial_sums[(t * ROWS_PER_LANE + r) * WG + first_lane + i];
    }
    return total;
}
