//! Every GPU kernel against the plain CPU reference (src/model/reference.rs) on random
//! inputs, on the real GPU context (lavapipe in CI), for both shader variants: with
//! subgroup reductions (when the adapter has them) and the workgroup-memory fallback.
//! Small shapes cover the corner cases; each kernel also runs once at the real shapes
//! of Auto-J-13B (LLaMA-2-13B) and Auto-J-bilingual-6B (Yi-6B).
//!
//! Tolerances, and why (EPS = f32::EPSILON):
//!
//! - Embedding lookup: exact. A q4 or q5 value is `scale * q + offset` with an f16 scale and
//!   `q < 32`, so the product is exact in f32 and the one rounding of the sum is the same
//!   with or without a fused multiply-add; q8 products (f16 x i8) are exact too, and so
//!   are q4_k's and q5_k's (`d * sc` with a 6-bit `sc`, times `q < 32`); a q6_k value
//!   `(d * scale) * (q - 32)` is one correctly rounded product of an exact one; bf16 is a
//!   shift.
//! - Linear (matvec, matmul, all dtypes): the reference multiplies the *dequantized*
//!   weights (`format::dequantize`, bit-identical to the shader's decoding for the
//!   reason above), so only the f32 summation order differs. Each partial sum is
//!   rounded once and those errors add up like a random walk over the partial sums,
//!   which for these zero-mean inputs stay near `sqrt(k) ||w x||_2 + k |mean w x|`: the
//!   tolerance is `4 EPS sqrt(cols) (||w x||_2 + |sum w x|)` per output (see
//!   `common::dot_tolerance`), plus one rounding of the residual add with `accumulate`.
//!   The tests run at <= ~1/3 of it, while one wrongly decoded weight in a 13824-wide
//!   row already exceeds it many times over.
//! - Linear on the int8 matvec path (`MatvecPath::Int8`, its own GPU context): the reference
//!   is that path's math, x quantized in the same f32 operations and the rest in f64
//!   (`x8_dot`); the integer dot products are exact, so only a few f32 roundings per block
//!   and the sum over blocks remain (`x8_dot` gives the tolerance). Its distance from the
//!   exact product is bounded by x's roundings and checked to behave as their noise.
//! - RMSNorm: the sum of squares has relative error ~`EPS * sqrt(cols)` (random walk),
//!   inverseSqrt at most 2 ulp, then two products: `|want| * EPS * (2 sqrt(cols) + 8)`.
//! - RoPE: against the same f32 cos/sin table computed on the CPU, two products and a
//!   sum: `2 EPS (|a| + |b|)`, and for the cached keys half an f16 ulp more. Against the reference's f64 angle: the table's f32 angle
//!   `position * inv_freq` carries up to ~2 EPS relative error (inverse frequency and
//!   product roundings) and f32 cos/sin one more ulp, so the rotated pair may move by
//!   `|(a, b)| * (2 EPS * angle + 4 EPS)`: about 7e-4 relative at angle 3000, which is
//!   what Hugging Face's own f32 angles do.
//! - Attention: the KV cache is f16, so the reference rounds K and V with `round_f16`
//!   (and the cache contents are checked bit for bit). What remains is f32 noise in the
//!   scores (`~hd EPS` for these inputs), in exp (a few ulp) and in the n-key sums
//!   (`~n EPS` relative) of an average of values bounded by 1: `(n_keys + 4 hd) * EPS`.
//!   A wrong mask, head mapping or position moves outputs by >= 1e-2.
//! - SwiGLU: WGSL's exp is within `3 + 2|x|` ulp, plus a division and a product on each
//!   side: `|want| * EPS * (8 + 2|g|)`.
//! - Gather (act-order inputs): exact, a copy.
//! - Argmax: exact, ties to the lowest index. Sampling is checked statistically: with a
//!   tiny top_p it equals argmax; it only ever picks tokens of the reference nucleus
//!   (top_p is placed midway between two cumulative masses, so no rounding can move the
//!   boundary); token frequencies lie within 5 standard deviations of the renormalized
//!   nucleus probabilities; the same seed gives the same token.

mod common;

use std::ops::Range;
use std::time::Instant;

use common::*;
use half::f16;
use rand::rngs::SmallRng;
use rand::Rng;
use webjudge::format::{Architecture, DType, TensorEntry, TensorPart};
use webjudge::kernels::preprocess;
use webjudge::kernels::variants::{ATTENTION_KEYS, SHADER_CONSTANTS};
use webjudge::kernels::{
    attention, choose_token, embedding, gather, linear, normed_linear, record_all, rmsnorm, rope_and_store, rope_table,
    AttentionMode, Dispatch, Epilogue, Gpu, GpuTensor, Heads, InputNorm, KvCache, LinearKernel, LinearTokens,
    MatmulTile, SplitScratch, Step, TokenPlace,
};
use webjudge::model::reference;
use webjudge::model::MAX_SEQUENCES;

/// Runs each listed test once per shader variant: `fallback::NAME` and `subgroups::NAME`,
/// with the attributes given before its name.
macro_rules! for_both_variants {
    ($($(#[$attribute:meta])* $test:ident),* $(,)?) => {
        /// Shaders compiled without subgroup operations (workgroup-memory reductions).
        mod fallback {
            $(#[test]
            $(#[$attribute])*
            fn $test() {
                super::timed(stringify!($test), false, super::$test);
            })*
        }
        /// Shaders compiled with subgroup reductions, where the adapter has them.
        mod subgroups {
            $(#[test]
            $(#[$attribute])*
            fn $test() {
                super::timed(stringify!($test), true, super::$test);
            })*
        }
    };
}

// The linear layers at real shapes (weights up to ~90 MB, ~10 s each on lavapipe) run in the
// full tier only (`make test`; docs/testing.md).
for_both_variants!(
    embedding_all_dtypes_and_parts,
    rmsnorm_rows,
    linear_all_dtypes_modes_and_parts,
    projections_stacked_in_one_dispatch,
    matvec_more_rows_than_one_grid_dimension,
    normed_input_matvec,
    #[ignore = "full tier: make test"]
    linear_auto_j_13b_shapes,
    #[ignore = "full tier: make test"]
    linear_yi_6b_shapes,
    #[ignore = "full tier: make test"]
    k_quants_at_real_shapes,
    rope_positions_and_thetas,
    attention_prefill_then_decode,
    attention_decode_batch_across_slots,
    attention_real_shapes,
    decode_batch_rows_match_single_rows,
    gather_act_order_inputs,
    argmax_ties_go_to_lowest_index,
    sampling_nucleus_and_temperature,
);

/// The int8 matvec path (`MatvecPath::Int8`, its own GPU context): against its own math in
/// f64 at small shapes, batched rows bit for bit the single ones, and its distance from the
/// exact product at Auto-J-13B's width.
#[test]
fn int8_matvec_against_its_math() {
    let start = Instant::now();
    int8_matvec_small_shapes(int8_matvec_gpu());
    decode_batch_rows_match_single_rows(int8_matvec_gpu());
    eprintln!("int8_matvec_against_its_math: {:.2?}", start.elapsed());
}

#[test]
fn int8_matvec_error_at_auto_j_width() {
    let start = Instant::now();
    int8_matvec_error(int8_matvec_gpu());
    eprintln!("int8_matvec_error_at_auto_j_width: {:.2?}", start.elapsed());
}

fn timed(name: &str, subgroups: bool, test: fn(&'static Gpu)) {
    let Some(gpu) = gpu(subgroups) else {
        eprintln!("{name}: the adapter has no subgroups; only the fallback variant is tested");
        return;
    };
    let start = Instant::now();
    test(gpu);
    eprintln!("{name} (subgroups: {subgroups}): {:.2?}", start.elapsed());
}

/// The weight dtypes, group sizes and column counts the small tests cycle through: 192
/// columns (6 blocks; 3 groups of 64, so q8 parts of odd row counts have an odd number of
/// scales), and 512 (two super-blocks) for the K-quants.
const DTYPES: [(DType, usize, usize); 11] = [
    (DType::Q4, 32, 192),
    (DType::Q4, 64, 192),
    (DType::Q8, 32, 192),
    (DType::Q8, 64, 192),
    (DType::F16, 0, 192),
    (DType::F32, 0, 192),
    (DType::Bf16, 0, 192),
    (DType::Q5, 32, 192),
    (DType::Q4K, 256, 512),
    (DType::Q5K, 256, 512),
    (DType::Q6K, 256, 512),
];

fn u32_buffer(gpu: &Gpu, values: &[u32]) -> wgpu::Buffer {
    gpu.storage_with("test u32s", bytemuck::cast_slice(values))
}

fn embedding_all_dtypes_and_parts(gpu: &'static Gpu) {
    let r = Runner::new(gpu);
    let mut rng = rng(1);
    // First and last rows, both sides of every part boundary, repeats.
    let tokens: Vec<u32> = vec![0, 36, 37, 99, 5, 37, 63, 64, 98, 0];
    let ids = u32_buffer(gpu, &tokens);
    // Rows past 65,536 (Llama 3's and Qwen2's vocabularies), across a part boundary.
    let wide = Packed::random(&mut rng, DType::Q4, 64, 32, &[70000, 81936]);
    let wide_tokens: Vec<u32> = vec![65535, 65536, 69999, 70000, 151935, 0];
    let all = wide.dequantized();
    let x = r.storage_f32(&vec![0.0; wide_tokens.len() * 64]);
    let dispatches = embedding(gpu, &r.step, &wide.upload(gpu), &u32_buffer(gpu, &wide_tokens), &x);
    r.run(step(wide_tokens.len(), 0), &dispatches);
    let want: Vec<f32> = wide_tokens.iter().flat_map(|&t| all[t as usize * 64..][..64].iter().copied()).collect();
    assert_close("embedding rows past 65,536", &r.read_f32(&x, want.len()), &want, |_| 0.0);
    for (dtype, group, cols) in DTYPES {
        for parts in [&[100][..], &[37, 27, 36]] {
            let table = Packed::random(&mut rng, dtype, cols, group, parts);
            let all = table.dequantized();
            // One spare row checks nothing is written past the step's tokens.
            let x = r.storage_f32(&vec![-7.0; (tokens.len() + 1) * cols]);
            let dispatches = embedding(gpu, &r.step, &table.upload(gpu), &ids, &x);
            r.run(step(tokens.len(), 0), &dispatches);
            let got = r.read_f32(&x, (tokens.len() + 1) * cols);
            let mut want: Vec<f32> =
                tokens.iter().flat_map(|&t| all[t as usize * cols..][..cols].iter().copied()).collect();
            want.extend(vec![-7.0; cols]);
            assert_close(&format!("embedding {} parts {parts:?}", table.entry.name), &got, &want, |_| 0.0);
        }
    }
}

fn rmsnorm_rows(gpu: &'static Gpu) {
    let r = Runner::new(gpu);
    let mut rng = rng(2);
    // Odd width, Auto-J-13B and Yi-6B hidden sizes.
    for (cols, tokens, eps) in [(100, 4, 1e-5), (5120, 3, 1e-5), (4096, 2, 1e-6)] {
        let mut x = uniform(&mut rng, tokens * cols, 1.0);
        // Rows of very different scales, one all zero (then eps alone sets the scale).
        for (t, row) in x.chunks_mut(cols).enumerate() {
            let scale = [1.0, 1e3, 1e-3, 0.0][t % 4];
            row.iter_mut().for_each(|v| *v *= scale);
        }
        let weight = uniform(&mut rng, cols, 2.0);
        let out = r.storage_f32(&vec![-7.0; (tokens + 1) * cols]);
        let dispatch = rmsnorm(gpu, &r.step, &r.storage_f32(&x), &r.storage_f32(&weight), &out, cols, eps);
        r.run(step(tokens, 0), [&dispatch]);
        let got = r.read_f32(&out, (tokens + 1) * cols);
        let mut want: Vec<f32> = x.chunks(cols).flat_map(|row| reference::rmsnorm(row, &weight, eps)).collect();
        want.extend(vec![-7.0; cols]);
        let rel = EPS * (2.0 * (cols as f32).sqrt() + 8.0);
        assert_close(&format!("rmsnorm {cols}"), &got, &want, |i| want[i].abs() * rel + f32::MIN_POSITIVE);
    }
}

/// Which kernel a `linear` call runs, over which tokens, and the pairs the model runs.
type Linear = (LinearKernel, LinearTokens);
const MATVEC: Linear = (LinearKernel::Matvec, LinearTokens::Each);
const MATVEC_ONE: Linear = (LinearKernel::MatvecOneToken, LinearTokens::Each);
const MATVEC_LAST: Linear = (LinearKernel::MatvecOneToken, LinearTokens::Last);
const MATMUL: Linear = (LinearKernel::Matmul(MatmulTile::Narrow), LinearTokens::Each);
const MATMUL_WIDE: Linear = (LinearKernel::Matmul(MatmulTile::Wide), LinearTokens::Each);

/// Runs `linear` once on random inputs and checks every output against the reference
/// matvec of the dequantized weights; returns what the GPU wrote. With `norm` (weight, eps)
/// it runs `normed_linear`: the reference multiplies `reference::rmsnorm` of x, and the
/// tolerance adds the norm's own (`|product| EPS (2 sqrt(cols) + 8)`, as `rmsnorm_rows`).
#[allow(clippy::too_many_arguments)]
fn check_linear(
    r: &Runner,
    weights: &Packed,
    tensor: &GpuTensor,
    mode: Linear,
    n_tokens: usize,
    epilogue: Epilogue,
    norm: Option<(&[f32], f32)>,
    seed: u64,
) -> Vec<f32> {
    let (rows, cols) = (weights.rows(), weights.cols());
    let mut rng = rng(seed);
    let raw_x = uniform(&mut rng, n_tokens * cols, 1.0);
    let x = match norm {
        Some((weight, eps)) => raw_x.chunks(cols).flat_map(|row| reference::rmsnorm(row, weight, eps)).collect(),
        None => raw_x.clone(),
    };
    let outputs = if mode.1 == LinearTokens::Last { 1 } else { n_tokens };
    // On the int8 matvec path the reference is that path's math (`x8_dot`).
    let x8 = !matches!(mode.0, LinearKernel::Matmul(_)) && r.gpu.matvec.quantizes_x(weights.entry.dtype);
    let quantized: Vec<QuantizedX> = match x8 {
        true => raw_x.chunks(cols).map(|row| quantize_x8(row, norm)).collect(),
        false => Vec::new(),
    };
    let offsets = if x8 { weights.codes_zeroed().dequantized() } else { Vec::new() };
    // Storing must ignore the old contents, NaN included; SwiGLU gates over gate values of
    // order 1 (where silu bends).
    let y0 = match epilogue {
        Epilogue::Store => vec![f32::NAN; outputs * rows],
        Epilogue::Accumulate => uniform(&mut rng, outputs * rows, 100.0),
        Epilogue::SwiGlu => uniform(&mut rng, outputs * rows, 4.0),
        Epilogue::GateUp => panic!("stacked gate/up weights are checked by check_gate_up"),
    };
    let y = r.storage_f32(&y0);
    let raw_x = r.storage_f32(&raw_x);
    let dispatches = match norm {
        Some((weight, eps)) => {
            let norm = InputNorm { weight: &r.storage_f32(weight), eps };
            normed_linear(r.gpu, &r.step, tensor, &raw_x, norm, &y, mode.0, mode.1, epilogue)
        }
        None => linear(r.gpu, &r.step, tensor, &raw_x, &y, mode.0, mode.1, epilogue),
    };
    r.run(step(n_tokens, 0), &dispatches);
    let got = r.read_f32(&y, outputs * rows);

    let mut want = vec![0.0; outputs * rows];
    let mut tolerance = vec![0.0; outputs * rows];
    weights.for_each_rows(512, |first, chunk| {
        let chunk_rows = chunk.len() / cols;
        for o in 0..outputs {
            let t = if mode.1 == LinearTokens::Last { n_tokens - 1 } else { o };
            let xt = &x[t * cols..][..cols];
            let products: Vec<(f32, f32)> = match x8 {
                true => chunk
                    .chunks(cols)
                    .zip(offsets[first * cols..].chunks(cols))
                    .map(|(w, offset)| x8_dot(w, offset, &quantized[t]))
                    .collect(),
                false => reference::matvec(chunk, xt, chunk_rows, cols)
                    .into_iter()
                    .zip(chunk.chunks(cols))
                    .map(|(product, w)| (product, dot_tolerance(w, xt)))
                    .collect(),
            };
            for (i, (product, dot)) in products.into_iter().enumerate() {
                let at = o * rows + first + i;
                let norm_error = if norm.is_some() { EPS * (2.0 * (cols as f32).sqrt() + 8.0) } else { 0.0 };
                let dot = dot + product.abs() * norm_error;
                (want[at], tolerance[at]) = match epilogue {
                    Epilogue::Store => (product, dot),
                    Epilogue::Accumulate => (y0[at] + product, dot + 2.0 * EPS * (y0[at].abs() + product.abs())),
                    Epilogue::SwiGlu | Epilogue::GateUp => {
                        let gate = reference::swiglu(&[y0[at]], &[1.0])[0];
                        (gate * product, dot * gate.abs() + 4.0 * EPS * (gate * product).abs())
                    }
                };
            }
        }
    });
    let parts: Vec<usize> = weights.entry.parts.iter().map(|p| p.rows).collect();
    let normed = if norm.is_some() { " normed" } else { "" };
    let int8 = if x8 { " int8-x" } else { "" };
    let what = format!("linear{normed}{int8} {} parts {parts:?} {mode:?} x{n_tokens} {epilogue:?}", weights.entry.name);
    assert_close(&what, &got, &want, |i| tolerance[i]);
    got
}

/// x as the int8 matvec path multiplies it (quant.wgsl's `quantize_x8`, redone here in the
/// same f32 operations, x times the norm weight first where the matvec applies a norm): per
/// 32-value block the codes `round(x * (127 / max |x|))`, ties to even, and the scale
/// `max |x| / 127`; the norm's 1 / rms (f64) scales the finished sums.
struct QuantizedX {
    codes: Vec<f32>,
    scales: Vec<f32>,
    input_scale: f64,
}

fn quantize_x8(x: &[f32], norm: Option<(&[f32], f32)>) -> QuantizedX {
    let scaled: Vec<f32> = match norm {
        Some((weight, _)) => x.iter().zip(weight).map(|(v, g)| v * g).collect(),
        None => x.to_vec(),
    };
    let mean_square = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64;
    let input_scale = norm.map_or(1.0, |(_, eps)| 1.0 / (mean_square + f64::from(eps)).sqrt());
    let (mut codes, mut scales) = (Vec::with_capacity(x.len()), Vec::new());
    for block in scaled.chunks(32) {
        let largest = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let to_code = if largest > 0.0 { 127.0 / largest } else { 0.0 };
        codes.extend(block.iter().map(|v| (v * to_code).round_ties_even()));
        scales.push(largest / 127.0);
    }
    QuantizedX { codes, scales, input_scale }
}

/// The int8 path's product of one row of dequantized weights `w` with `x`, in f64: each
/// block's `scale * sum(w * code)` (q4's offset term included, as w = scale q + offset),
/// and a tolerance. The GPU's integer dot products are exact; what remains is a few f32
/// roundings per block (two scales times the integer sum, the offset times the scaled code
/// sum, their sum), each within `EPS` of `scale * sum((|w - offset| + |offset|) |code|)`
/// (`offset`: the weight at code 0, zero for q8), adding up like a random walk over the
/// blocks, then the f32 sum over the blocks as `dot_tolerance` bounds it.
fn x8_dot(w: &[f32], offset: &[f32], x: &QuantizedX) -> (f32, f32) {
    let (mut total, mut squares) = (0.0f64, 0.0f64);
    for (b, &scale) in x.scales.iter().enumerate() {
        let (mut sum, mut magnitude) = (0.0f64, 0.0f64);
        for i in b * 32..(b + 1) * 32 {
            let (w, offset, code) = (f64::from(w[i]), f64::from(offset[i]), f64::from(x.codes[i]));
            sum += w * code;
            magnitude += ((w - offset).abs() + offset.abs()) * code.abs();
        }
        total += f64::from(scale) * sum;
        squares += (f64::from(scale) * magnitude).powi(2);
    }
    let blocks = (x.scales.len() as f64).sqrt();
    let tolerance = 4.0 * f64::from(EPS) * ((blocks + 1.0) * squares.sqrt() + blocks * total.abs());
    ((total * x.input_scale) as f32, (tolerance * x.input_scale) as f32 + f32::MIN_POSITIVE)
}

fn linear_all_dtypes_modes_and_parts(gpu: &'static Gpu) {
    let r = Runner::new(gpu);
    let mut rng = rng(3);
    // 100 rows: not a multiple of the matmul's 64-row tile, nor a whole 128-row one (whose
    // second half, in the three parts, holds no rows).
    let runs = [
        (MATVEC, 1),
        (MATVEC_ONE, 1),
        // A decode batch: one token per sequence, up to the largest batch.
        (MATVEC, 3),
        (MATVEC, MAX_SEQUENCES),
        (MATVEC_LAST, 1),
        (MATVEC_LAST, 5),
        (MATMUL, 1),
        (MATMUL, 5),
        (MATMUL, 32),
        (MATMUL, 33),
        (MATMUL, 70),
    ];
    check_dtypes_and_runs(&r, &mut rng, &DTYPES, &runs, |_, _, _| ());
}

/// `check_linear` of random weights of each of `dtypes`, in one part and in three, in each of
/// `runs` with each epilogue but gate/up; then `more` of each tensor.
fn check_dtypes_and_runs(
    r: &Runner,
    rng: &mut SmallRng,
    dtypes: &[(DType, usize, usize)],
    runs: &[(Linear, usize)],
    mut more: impl FnMut(&mut SmallRng, &Packed, &GpuTensor),
) {
    for &(dtype, group, cols) in dtypes {
        for parts in [&[100][..], &[37, 27, 36]] {
            let weights = Packed::random(rng, dtype, cols, group, parts);
            let tensor = weights.upload(r.gpu);
            for &(mode, n_tokens) in runs {
                for epilogue in [Epilogue::Store, Epilogue::Accumulate, Epilogue::SwiGlu] {
                    let seed = rng.random();
                    let got = check_linear(r, &weights, &tensor, mode, n_tokens, epilogue, None, seed);
                    if mode == MATMUL {
                        // The wide tile sums each output in the same order: the same bits.
                        let wide = check_linear(r, &weights, &tensor, MATMUL_WIDE, n_tokens, epilogue, None, seed);
                        let differ = (0..got.len()).find(|&i| got[i].to_bits() != wide[i].to_bits());
                        assert!(
                            differ.is_none(),
                            "{dtype:?} {parts:?} x{n_tokens} {epilogue:?}: tiles differ at {differ:?}"
                        );
                    }
                }
            }
            more(rng, &weights, &tensor);
        }
    }
}

/// The int8 path's kernels for q4 and q8 (both group sizes, one part and several) in the
/// decode modes and epilogues, normed and not, against `x8_dot`; what it leaves exact (f16
/// weights, prefill's matmul) against the exact reference; and x blocks of zeros, which
/// must give zeros, not 0 / 0.
fn int8_matvec_small_shapes(gpu: &'static Gpu) {
    let r = Runner::new(gpu);
    let mut rng = rng(15);
    let runs = [(MATVEC_ONE, 1), (MATVEC, 3), (MATVEC, MAX_SEQUENCES), (MATVEC_LAST, 5), (MATMUL, 5)];
    check_dtypes_and_runs(&r, &mut rng, &DTYPES[..5], &runs, |rng, weights, tensor| {
        let (rows, cols) = (weights.rows(), weights.cols());
        let norm_weight = uniform(rng, cols, 2.0);
        for (mode, n_tokens) in [(MATVEC_ONE, 1), (MATVEC, MAX_SEQUENCES)] {
            let norm = Some((&norm_weight[..], 1e-5));
            check_linear(&r, weights, tensor, mode, n_tokens, Epilogue::Store, norm, rng.random());
        }
        let zeros = r.storage_f32(&vec![0.0; 2 * cols]);
        let y = r.storage_f32(&vec![f32::NAN; 2 * rows]);
        r.run(step(2, 0), &linear(gpu, &r.step, tensor, &zeros, &y, MATVEC.0, MATVEC.1, Epilogue::Store));
        let what = format!("int8-x {} of zeros", weights.entry.name);
        assert_close(&what, &r.read_f32(&y, 2 * rows), &vec![0.0; 2 * rows], |_| 0.0);
    });
}

/// How far the int8 path lands from the exact product at Auto-J-13B's hidden width (5120
/// columns, q4 in GPTQ's groups of 128, 256 rows, x uniform in [-1, 1)), for one token and a
/// batch: each output must be within the worst case of x's roundings (half a code step,
/// `max |x| / 254` of its block, times `sum |w|`), and those roundings must behave as
/// independent noise: the deviation over its predicted standard deviation
/// (`sqrt(sum w^2 step^2 / 12)`, uniform rounding errors) has a root mean square near 1.
/// Prints the relative error (KERNELS_REPORT is not needed: the figures go to stderr).
fn int8_matvec_error(gpu: &'static Gpu) {
    let r = Runner::new(gpu);
    let (cols, rows) = (5120, 256);
    let weights = Packed::random(&mut rng(16), DType::Q4, cols, 128, &[rows]);
    let tensor = weights.upload(gpu);
    let w = weights.dequantized();
    for (mode, n_tokens, seed) in [(MATVEC_ONE, 1, 17), (MATVEC, 4, 18)] {
        let got = check_linear(&r, &weights, &tensor, mode, n_tokens, Epilogue::Store, None, seed);
        // check_linear's x: the first draws of rng(seed).
        let x = uniform(&mut rng(seed), n_tokens * cols, 1.0);
        let (mut squared_error, mut squared_exact, mut squared_z, mut worst_of_bound) = (0.0, 0.0, 0.0, 0.0f64);
        for t in 0..n_tokens {
            let xt = &x[t * cols..][..cols];
            let steps: Vec<f64> =
                xt.chunks(32).map(|b| f64::from(b.iter().fold(0.0f32, |m, v| m.max(v.abs()))) / 127.0).collect();
            for row in 0..rows {
                let wr = &w[row * cols..][..cols];
                let exact: f64 = wr.iter().zip(xt).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
                let deviation = f64::from(got[t * rows + row]) - exact;
                let weighted = |power: i32| -> f64 {
                    wr.iter()
                        .enumerate()
                        .map(|(i, &a)| f64::from(a).abs().powi(power) * steps[i / 32].powi(power))
                        .sum()
                };
                let bound = weighted(1) / 2.0 + f64::from(dot_tolerance(wr, xt));
                assert!(deviation.abs() <= bound, "int8-x row {row} token {t}: {deviation} past the bound {bound}");
                worst_of_bound = worst_of_bound.max(deviation.abs() / bound);
                squared_z += deviation.powi(2) / (weighted(2) / 12.0);
                squared_error += deviation.powi(2);
                squared_exact += exact.powi(2);
            }
        }
        let outputs = (n_tokens * rows) as f64;
        let z_rms = (squared_z / outputs).sqrt();
        let relative = (squared_error / squared_exact).sqrt();
        eprintln!(
            "int8-x q4 {rows}x{cols} {mode:?} x{n_tokens}: relative RMS error {relative:.2e}, deviation / predicted \
             sigma RMS {z_rms:.3}, worst |deviation| / bound {worst_of_bound:.3}"
        );
        assert!((0.8..1.2).contains(&z_rms), "the int8 path's error is not x's rounding noise: {z_rms}");
    }
}

/// RMSNorm applied by the matvec as it reads its input (`normed_linear`, how decode layers
/// and the lm_head run) against the reference norm then matvec, in the decode modes (one
/// token, a batch, the last token); and stacked gate/up (`Epilogue::GateUp`) normed, on rows
/// of very different scales, as the gate and up projections normed apart, bit for bit. The
/// norm is the same code for every dtype: a 4-bit one with offsets (which multiply the sum
/// of the normed x), q5_k's fifth bits, q6_k and f16 (the cheap test of the fast tier).
fn normed_input_matvec(gpu: &'static Gpu) {
    let r = Runner::new(gpu);
    let mut rng = rng(12);
    let runs = [(MATVEC_ONE, 1), (MATVEC, MAX_SEQUENCES), (MATVEC_LAST, 3)];
    for (dtype, group, cols) in [DTYPES[0], DTYPES[4], DTYPES[9], DTYPES[10]] {
        let weights = Packed::random(&mut rng, dtype, cols, group, &[100]);
        let tensor = weights.upload(gpu);
        let norm_weight = uniform(&mut rng, cols, 2.0);
        for (mode, n_tokens) in runs {
            for epilogue in [Epilogue::Store, Epilogue::Accumulate] {
                let norm = Some((&norm_weight[..], 1e-5));
                check_linear(&r, &weights, &tensor, mode, n_tokens, epilogue, norm, rng.random());
            }
        }
        let [gate, up] = [(); 2].map(|_| Packed::random(&mut rng, dtype, cols, group, &[102]).upload(gpu));
        let stacked = GpuTensor::stack(gpu, "gate_up", &[&gate, &up]).expect("gate and up stack");
        let norm = InputNorm { weight: &r.storage_f32(&norm_weight), eps: 1e-6 };
        for (mode, n_tokens) in runs {
            let outputs = if mode.1 == LinearTokens::Last { 1 } else { n_tokens };
            // Rows of very different scales: the norm undoes them.
            let mut x = uniform(&mut rng, n_tokens * cols, 1.0);
            x.chunks_mut(cols)
                .enumerate()
                .for_each(|(t, row)| row.iter_mut().for_each(|v| *v *= [1.0, 1e3, 1e-3][t % 3]));
            let x = r.storage_f32(&x);
            let [apart, together] = [(); 2].map(|_| r.storage_f32(&vec![f32::NAN; outputs * 102]));
            let (k, t) = (mode.0, mode.1);
            let mut dispatches = normed_linear(gpu, &r.step, &gate, &x, norm, &apart, k, t, Epilogue::Store);
            dispatches.extend(normed_linear(gpu, &r.step, &up, &x, norm, &apart, k, t, Epilogue::SwiGlu));
            dispatches.extend(normed_linear(gpu, &r.step, &stacked, &x, norm, &together, k, t, Epilogue::GateUp));
            r.run(step(n_tokens, 0), &dispatches);
            let (want, got) = (r.read_u32(&apart, outputs * 102), r.read_u32(&together, outputs * 102));
            assert!(
                want.iter().all(|&w| f32::from_bits(w).is_finite()),
                "normed gate/up {dtype:?} {mode:?}: not finite"
            );
            assert_eq!(got, want, "normed gate/up {dtype:?} {mode:?} x{n_tokens}: stacked and apart differ");
        }
    }
}

/// The gate and up projections stacked into one tensor and run as `Epilogue::GateUp` give
/// bit for bit what the two separate dispatches give (gate stored, up with `SwiGlu`, checked
/// against the reference by `check_linear`): each row's sum runs in the same order.
fn check_gate_up(r: &Runner, gate: &Packed, up: &Packed, runs: &[(Linear, usize)], seed: u64) {
    let (ffn, cols) = (gate.rows(), gate.cols());
    let (gate_tensor, up_tensor) = (gate.upload(r.gpu), up.upload(r.gpu));
    let stacked = GpuTensor::stack(r.gpu, "gate_up", &[&gate_tensor, &up_tensor]).expect("gate and up stack");
    assert_eq!((stacked.rows, stacked.parts.len()), (2 * ffn, 1));
    let mut rng = rng(seed);
    for &(mode, n_tokens) in runs {
        let outputs = if mode.1 == LinearTokens::Last { 1 } else { n_tokens };
        let x = r.storage_f32(&uniform(&mut rng, n_tokens * cols, 1.0));
        let (apart, together) =
            (r.storage_f32(&vec![f32::NAN; outputs * ffn]), r.storage_f32(&vec![f32::NAN; outputs * ffn]));
        let mut dispatches = linear(r.gpu, &r.step, &gate_tensor, &x, &apart, mode.0, mode.1, Epilogue::Store);
        dispatches.extend(linear(r.gpu, &r.step, &up_tensor, &x, &apart, mode.0, mode.1, Epilogue::SwiGlu));
        dispatches.extend(linear(r.gpu, &r.step, &stacked, &x, &together, mode.0, mode.1, Epilogue::GateUp));
        r.run(step(n_tokens, 0), &dispatches);
        let (want, got) = (r.read_u32(&apart, outputs * ffn), r.read_u32(&together, outputs * ffn));
        let what = format!("gate/up {} {ffn}x{cols} {mode:?} x{n_tokens}", gate.entry.name);
        if let Some(i) = (0..want.len()).find(|&i| want[i] != got[i]) {
            panic!("{what}: output {i} is {} stacked, {} apart", f32::from_bits(got[i]), f32::from_bits(want[i]));
        }
    }
}

/// q, k and v stacked into one tensor, or apart and each placed at its rows of the stack's
/// output (`GpuTensor::into_rows_of`, for those that cannot stack), write the same bits.
fn check_qkv(r: &Runner, projections: [&Packed; 3], runs: &[(Linear, usize)], seed: u64) {
    let (rows, cols) = (projections.iter().map(|p| p.rows()).sum::<usize>(), projections[0].cols());
    let uploaded = projections.map(|p| p.upload(r.gpu));
    let stacked = GpuTensor::stack(r.gpu, "qkv", &uploaded.each_ref()).expect("q, k and v stack");
    let mut first_row = 0;
    let apart = uploaded.map(|tensor| {
        let own_rows = tensor.rows;
        first_row += own_rows;
        tensor.into_rows_of(first_row - own_rows, rows)
    });
    let mut rng = rng(seed);
    for &(mode, n_tokens) in runs {
        let x = r.storage_f32(&uniform(&mut rng, n_tokens * cols, 1.0));
        let (one, three) =
            (r.storage_f32(&vec![f32::NAN; n_tokens * rows]), r.storage_f32(&vec![f32::NAN; n_tokens * rows]));
        let mut dispatches = linear(r.gpu, &r.step, &stacked, &x, &one, mode.0, mode.1, Epilogue::Store);
        for tensor in &apart {
            dispatches.extend(linear(r.gpu, &r.step, tensor, &x, &three, mode.0, mode.1, Epilogue::Store));
        }
        r.run(step(n_tokens, 0), &dispatches);
        let (want, got) = (r.read_u32(&three, n_tokens * rows), r.read_u32(&one, n_tokens * rows));
        let what = format!("q/k/v {} {rows}x{cols} {mode:?} x{n_tokens}", projections[0].entry.name);
        assert!(want.iter().all(|&w| !f32::from_bits(w).is_nan()), "{what}: apart, some rows were not written");
        if let Some(i) = (0..want.len()).find(|&i| want[i] != got[i]) {
            panic!("{what}: output {i} is {} stacked, {} apart", f32::from_bits(got[i]), f32::from_bits(want[i]));
        }
    }
}

fn projections_stacked_in_one_dispatch(gpu: &'static Gpu) {
    let r = Runner::new(gpu);
    let mut rng = rng(11);
    let runs =
        [(MATVEC_ONE, 1), (MATVEC, MAX_SEQUENCES), (MATVEC_LAST, 3), (MATMUL, 5), (MATMUL, 70), (MATMUL_WIDE, 70)];
    for (dtype, group, cols) in DTYPES {
        // 102 outputs: not a multiple of a matvec workgroup's 8 or a matmul tile's 32.
        let gate = Packed::random(&mut rng, dtype, cols, group, &[102]);
        let up = Packed::random(&mut rng, dtype, cols, group, &[102]);
        check_gate_up(&r, &gate, &up, &runs, rng.random());
        let [q, k, v] = [96, 32, 32].map(|rows| Packed::random(&mut rng, dtype, cols, group, &[rows]));
        let steps = [(MATVEC_ONE, 1), (MATVEC, MAX_SEQUENCES), (MATMUL, 70), (MATMUL_WIDE, 70)];
        check_qkv(&r, [&q, &k, &v], &steps, rng.random());
    }
    // What cannot stack is left apart: several parts, two dtypes, or q8 scales that end
    // inside a word (37 rows of 3 groups).
    let stacks = |a: &Packed, b: &Packed| GpuTensor::stack(gpu, "s", &[&a.upload(gpu), &b.upload(gpu)]).is_some();
    let q4 = Packed::random(&mut rng, DType::Q4, 192, 32, &[64]);
    assert!(!stacks(&q4, &Packed::random(&mut rng, DType::Q4, 192, 32, &[32, 32])));
    assert!(!stacks(&q4, &Packed::random(&mut rng, DType::Q8, 192, 32, &[64])));
    let odd_scales = Packed::random(&mut rng, DType::Q8, 192, 64, &[37]);
    assert!(!stacks(&odd_scales, &odd_scales));
}

fn matvec_more_rows_than_one_grid_dimension(gpu: &'static Gpu) {
    // 70,000 rows need 70,000 workgroups: more than one dispatch dimension allows, so
    // the grid folds into two dimensions.
    let r = Runner::new(gpu);
    let weights = Packed::random(&mut rng(4), DType::F32, 32, 0, &[70_000]);
    let tensor = weights.upload(gpu);
    check_linear(&r, &weights, &tensor, MATVEC, 1, Epilogue::Store, None, 5);
    check_linear(&r, &weights, &tensor, MATVEC_LAST, 2, Epilogue::Accumulate, None, 6);
}

/// The GPU's greedy choice among `logits`, which must be the reference argmax.
fn check_argmax(r: &Runner, logits: &[f32]) -> u32 {
    let tokens = r.gpu.storage("token", 4);
    let dispatch = choose_token(r.gpu, &r.step, &r.storage_f32(logits), &tokens, logits.len(), true, true);
    r.run(step(1, 0), [&dispatch]);
    let got = r.read_u32(&tokens, 1)[0];
    assert_eq!(got as usize, reference::argmax(logits), "argmax over {} logits", logits.len());
    got
}

fn linear_auto_j_13b_shapes(gpu: &'static Gpu) {
    // LLaMA-2-13B: hidden 5120, FFN 13824, vocab 32000; q4 with GPTQ's group of 128.
    let r = Runner::new(gpu);
    let mut rng = rng(13);
    let up = Packed::random(&mut rng, DType::Q4, 5120, 128, &[13824]);
    let tensor = up.upload(gpu);
    check_linear(&r, &up, &tensor, MATVEC_ONE, 1, Epilogue::SwiGlu, None, 1);
    check_linear(&r, &up, &tensor, MATMUL, 3, Epilogue::SwiGlu, None, 2);
    check_linear(&r, &up, &tensor, MATMUL_WIDE, 3, Epilogue::SwiGlu, None, 2);
    drop(tensor);
    let gate = Packed::random(&mut rng, DType::Q4, 5120, 128, &[13824]);
    check_gate_up(&r, &gate, &up, &[(MATVEC, 2), (MATMUL, 3), (MATMUL_WIDE, 3)], 5);
    drop((gate, up));
    let down = Packed::random(&mut rng, DType::Q4, 13824, 128, &[5120]);
    // A batch of four sequences.
    check_linear(&r, &down, &down.upload(gpu), MATVEC, 4, Epilogue::Accumulate, None, 3);
    // The lm_head row-split into three parts, read from the last of a prefill's tokens.
    let head = Packed::random(&mut rng, DType::Q4, 5120, 128, &[12000, 12000, 8000]);
    let logits = check_linear(&r, &head, &head.upload(gpu), MATVEC_LAST, 3, Epilogue::Store, None, 4);
    check_argmax(&r, &logits);
}

fn linear_yi_6b_shapes(gpu: &'static Gpu) {
    // Yi-6B: hidden 4096, FFN 11008, vocab 64000; q4 with GGUF's group of 32.
    let r = Runner::new(gpu);
    let mut rng = rng(6);
    let up = Packed::random(&mut rng, DType::Q4, 4096, 32, &[11008]);
    check_linear(&r, &up, &up.upload(gpu), MATVEC_ONE, 1, Epilogue::SwiGlu, None, 1);
    let down = Packed::random(&mut rng, DType::Q4, 11008, 32, &[4096]);
    check_linear(&r, &down, &down.upload(gpu), MATVEC_ONE, 1, Epilogue::Accumulate, None, 2);
    // 64000 x 4096 q4 is 164 MB, over the 128 MiB binding limit: split as a converter would.
    let parts = binding_parts(DType::Q4, 64000, 4096, 32);
    assert!(parts.len() > 1, "the Yi lm_head must need several parts: {parts:?}");
    let head = Packed::random(&mut rng, DType::Q4, 4096, 32, &parts);
    let logits = check_linear(&r, &head, &head.upload(gpu), MATVEC, 1, Epilogue::Store, None, 3);
    check_argmax(&r, &logits);
}

/// Per token, its queries, keys and values side by side, as the q/k/v projection writes them.
fn qkv_rows(heads: Heads, n: usize, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
    let (q_dim, kv_dim) = (heads.n_heads * heads.head_dim, heads.n_kv_heads * heads.head_dim);
    (0..n)
        .flat_map(|t| [&q[t * q_dim..][..q_dim], &k[t * kv_dim..][..kv_dim], &v[t * kv_dim..][..kv_dim]])
        .flatten()
        .copied()
        .collect()
}

/// Rotates random queries and keys at each `(position, n_tokens)` chunk, in sequence slot 1
/// of two, and checks the queries and the cached keys against the CPU (same table) and the
/// reference RoPE (f64 angles); the cached values must be the f16-rounded inputs. With
/// `a.qkv_bias`, random biases are added first (an f32 sum, as the CPU's).
fn check_rope(r: &Runner, a: &Architecture, context: usize, chunks: &[(usize, usize)], seed: u64) {
    let heads = Heads { n_heads: a.n_heads, n_kv_heads: a.n_kv_heads, head_dim: a.head_dim };
    let Heads { n_heads, n_kv_heads, head_dim } = heads;
    let theta = a.rope_theta;
    let (pairs, kv_dim) = (head_dim / 2, n_kv_heads * head_dim);
    let table = rope_table(context, &a.rope_inverse_frequencies(), a.rope_attention_factor);
    let table_buffer = r.storage_f32(&table);
    let cache = KvCache::new(r.gpu, heads, context, 2);
    let slot = 1;
    let mut rng = rng(seed);
    let q_dim = n_heads * head_dim;
    let bias = a.qkv_bias.then(|| uniform(&mut rng, q_dim + 2 * kv_dim, 0.5));
    let bias_buffer = bias.as_ref().map(|b| r.storage_f32(b));
    for &(position, n) in chunks {
        let q = uniform(&mut rng, n * q_dim, 1.0);
        let k = uniform(&mut rng, n * kv_dim, 1.0);
        let v = uniform(&mut rng, n * kv_dim, 1.0);
        let qkv = r.storage_f32(&qkv_rows(heads, n, &q, &k, &v));
        let q_buffer = r.zeros(q.len());
        let dispatch =
            rope_and_store(r.gpu, &r.step, &table_buffer, heads, &qkv, bias_buffer.as_ref(), &q_buffer, &cache);
        // What RoPE rotates: the sums with their biases.
        let biased = |x: Vec<f32>, offset: usize, width: usize| match &bias {
            None => x,
            Some(b) => x.iter().enumerate().map(|(i, x)| x + b[offset + i % width]).collect(),
        };
        let (q, k, v) = (biased(q, 0, q_dim), biased(k, q_dim, kv_dim), biased(v, q_dim + kv_dim, kv_dim));
        let places = TokenPlace::run(slot, position, n);
        r.run((Step { n_tokens: n as u32, ..Default::default() }, places), [&dispatch]);
        let cached = |keys: bool| {
            let words = cache_words(r, &cache, heads, keys, slot, position..position + n);
            let halves = words.into_iter().flat_map(|w| [w as u16, (w >> 16) as u16]);
            halves.map(|h| f16::from_bits(h).to_f32()).collect::<Vec<_>>()
        };
        let want_v = reference::round_f16(&v);
        let got_v = cached(false);
        assert!(
            got_v.iter().zip(&want_v).all(|(a, b)| a.to_bits() == b.to_bits()),
            "v cache at {position} is not the f16-rounded values"
        );
        // Keys are rotated, then rounded to f16: one more rounding, half an f16 ulp.
        for (name, x, got, count, f16_ulps) in
            [("q", &q, r.read_f32(&q_buffer, q.len()), n_heads, 0.0), ("k", &k, cached(true), n_kv_heads, 0.5)]
        {
            let width = count * head_dim;
            // The same table on the CPU.
            let mut same_table = x.clone();
            for (index, pair) in same_table.chunks_exact_mut(2).enumerate() {
                let at = ((position + index / (width / 2)) * pairs + index % pairs) * 2;
                let (cos, sin) = (table[at], table[at + 1]);
                let (a, b) = (pair[0], pair[1]);
                pair.copy_from_slice(&[a * cos - b * sin, a * sin + b * cos]);
            }
            let pair_size = |i: usize| (x[i & !1].abs() + x[i | 1].abs()) * a.rope_attention_factor;
            let rounding = |i: usize| f16_ulps * (same_table[i].abs() * f32::powi(2.0, -10) + f32::powi(2.0, -24));
            let what = format!("rope {name} theta {theta} position {position}");
            assert_close(&what, &got, &same_table, |i| 2.0 * EPS * pair_size(i) + rounding(i) + f32::MIN_POSITIVE);
            // The reference, with f64 angles.
            let mut exact = x.clone();
            for (t, row) in exact.chunks_exact_mut(width).enumerate() {
                reference::rope(row, a, position + t);
            }
            // Divisors of at least 1 (all that any scaling here has) only shrink the angle.
            let tolerance = |i: usize| {
                let (t, pair) = (i / width, (i % head_dim) / 2);
                let angle = (position + t) as f32 * theta.powf(-2.0 * pair as f32 / head_dim as f32);
                pair_size(i) * (2.0 * EPS * angle + 4.0 * EPS) + rounding(i) + f32::MIN_POSITIVE
            };
            assert_close(&format!("{what} vs f64 angles"), &got, &exact, tolerance);
        }
    }
}

/// The words of `slot`'s `positions` in the key (`keys`) or value cache, position-major
/// (heads, then pairs), read through the layout shaders/common.wgsl documents: values
/// position-major, keys pair-major within each tile of ATTENTION_KEYS positions.
fn cache_words(
    r: &Runner,
    cache: &KvCache,
    heads: Heads,
    keys: bool,
    slot: usize,
    positions: Range<usize>,
) -> Vec<u32> {
    let pairs = heads.head_dim / 2;
    let kv_pairs = heads.n_kv_heads * pairs;
    let all = r.read_u32(if keys { &cache.k } else { &cache.v }, (slot + 1) * cache.context * kv_pairs);
    let tile = ATTENTION_KEYS as usize;
    let word = |position: usize, j: usize| {
        let (at, head, i) = (slot * cache.context + position, j / pairs, j % pairs);
        match keys {
            true => (((at / tile * heads.n_kv_heads + head) * pairs / 4 + i / 4) * tile + at % tile) * 4 + i % 4,
            false => at * kv_pairs + j,
        }
    };
    let (all, word) = (&all, &word);
    positions.flat_map(|position| (0..kv_pairs).map(move |j| all[word(position, j)])).collect()
}

/// Queries into `q`, and keys and values into the cache at the step's places, unrotated
/// (a table of cos 1, sin 0): what attention reads, as the layer's RoPE pass leaves it.
fn store_unrotated(
    r: &Runner,
    heads: Heads,
    cache: &KvCache,
    q: &[f32],
    k: &[f32],
    v: &[f32],
) -> (wgpu::Buffer, Dispatch) {
    let n = q.len() / (heads.n_heads * heads.head_dim);
    let identity: Vec<f32> = (0..cache.context * heads.head_dim / 2).flat_map(|_| [1.0, 0.0]).collect();
    let q_buffer = r.zeros(q.len());
    let qkv = r.storage_f32(&qkv_rows(heads, n, q, k, v));
    let dispatch = rope_and_store(r.gpu, &r.step, &r.storage_f32(&identity), heads, &qkv, None, &q_buffer, cache);
    (q_buffer, dispatch)
}

fn rope_positions_and_thetas(gpu: &'static Gpu) {
    let r = Runner::new(gpu);
    let rope = |n_heads, n_kv_heads, head_dim, rope_theta| Architecture {
        n_heads,
        n_kv_heads,
        head_dim,
        rope_theta,
        ..hf::yi_6b_layer()
    };
    // Small GQA shapes: position 0 (identity), one token, chunks at later positions.
    check_rope(&r, &rope(6, 2, 64, 10000.0), 256, &[(0, 3), (1, 1), (61, 5), (240, 16)], 1);
    check_rope(&r, &rope(9, 3, 64, 100000.0), 256, &[(7, 2)], 2);
    // Auto-J-13B: 40 heads x 128, theta 1e4, to the end of its 4096 context.
    check_rope(&r, &rope(40, 40, 128, 10000.0), 4096, &[(5, 3), (4090, 6)], 3);
    // Yi-6B: 32 / 4 heads x 128, theta 5e6, far into the context.
    check_rope(&r, &rope(32, 4, 128, 5e6), 4096, &[(3000, 2), (4095, 1)], 4);
    // Llama-3.1-8B: 32 / 8 heads x 128, theta 5e5, its RoPE scaling (factor 8, original
    // context 8192), far into the context.
    let mut llama31 = rope(32, 8, 128, 500000.0);
    llama31.rope_frequency_divisors = llama31.llama3_rope_divisors(hf::LLAMA31_ROPE_SCALING);
    check_rope(&r, &llama31, 8192, &[(2, 3), (8190, 2)], 5);
    // Qwen2.5-7B (CompassJudger-1-7B): 28 / 4 heads x 128, theta 1e6, q/k/v biases.
    let qwen25 = Architecture { qkv_bias: true, ..rope(28, 4, 128, 1e6) };
    check_rope(&r, &qwen25, 4096, &[(0, 3), (4093, 3)], 6);
    // Phi-3.5-mini: 32 heads x 96, LongRoPE within its original 4096 positions: short
    // factors from 1 to 3 (as its own rise) and cos and sin times the attention factor of
    // its 32-fold extension, to the end of the context.
    let mut phi35 = rope(32, 32, 96, 10000.0);
    phi35.rope_frequency_divisors = (0..48).map(|i| 1.0 + 2.0 * (i as f32 / 47.0).powi(2)).collect();
    phi35.rope_attention_factor = (1.0 + 32f32.ln() / 4096f32.ln()).sqrt();
    check_rope(&r, &phi35, 4096, &[(0, 2), (4090, 6)], 7);
}

/// Feeds chunks of tokens through the KV store and attention (a prefill of several tokens, then
/// decode steps) and checks each output and finally the f16 cache contents.
fn check_attention(r: &Runner, heads: Heads, chunks: &[usize], seed: u64) {
    let Heads { n_heads, n_kv_heads, head_dim } = heads;
    let (q_dim, kv_dim) = (n_heads * head_dim, n_kv_heads * head_dim);
    let context = chunks.iter().sum::<usize>() + 2;
    let cache = KvCache::new(r.gpu, heads, context, 1);
    // The adapter's choice (one range on lavapipe) and a forced split into key ranges.
    let scratches = [SplitScratch::new(r.gpu, heads, 1), SplitScratch::with_splits(r.gpu, heads, 4, 1)];
    let mut rng = rng(seed);
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    let mut position = 0;
    for &n in chunks {
        // Queries of scale 4 make scores of order 1: a peaked but not one-hot softmax.
        let q_values = uniform(&mut rng, n * q_dim, 4.0);
        let k_values = uniform(&mut rng, n * kv_dim, 1.0);
        let v_values = uniform(&mut rng, n * kv_dim, 1.0);
        let modes =
            if n == 1 { scratches.iter().map(AttentionMode::Decode).collect() } else { vec![AttentionMode::Prefill] };
        let (q, store) = store_unrotated(r, heads, &cache, &q_values, &k_values, &v_values);
        let mut want = Vec::with_capacity(n * q_dim);
        for t in 0..n {
            keys.push(reference::round_f16(&k_values[t * kv_dim..][..kv_dim]));
            values.push(reference::round_f16(&v_values[t * kv_dim..][..kv_dim]));
            want.extend(reference::attend(&q_values[t * q_dim..][..q_dim], &keys, &values, n_heads, n_kv_heads));
        }
        let tolerance = |i: usize| (position + i / q_dim + 1 + 4 * head_dim) as f32 * EPS;
        for (index, mode) in modes.into_iter().enumerate() {
            // A second one-token run stores the same keys and values again: no change.
            let out = r.zeros(n * q_dim);
            let dispatches = attention(r.gpu, &r.step, heads, mode, &q, &cache, &out);
            r.run(step(n, position), std::iter::once(&store).chain(&dispatches));
            let got = r.read_f32(&out, n * q_dim);
            let what = format!("attention {heads:?} {n} tokens at position {position} (mode {index})");
            assert_close(&what, &got, &want, tolerance);
        }
        position += n;
    }
    for (name, is_keys, expected) in [("k", true, &keys), ("v", false, &values)] {
        let got = cache_words(r, &cache, heads, is_keys, 0, 0..position);
        let halves: Vec<f16> = expected.iter().flatten().map(|&x| f16::from_f32(x)).collect();
        let want: Vec<u32> = webjudge::format::pack_f16_words(&halves).collect();
        assert!(got == want, "{name} cache of {heads:?} differs from the f16-rounded inputs");
    }
}

fn attention_prefill_then_decode(gpu: &'static Gpu) {
    let r = Runner::new(gpu);
    let heads = |n_heads, n_kv_heads, head_dim| Heads { n_heads, n_kv_heads, head_dim };
    // GQA 3:1 (SmolLM2-like); prefill in two chunks crossing the 64-key tile, then decode.
    check_attention(&r, heads(6, 2, 64), &[40, 30, 1, 1, 1], 1);
    // Decode over two of four key ranges (the context decides how many get keys: 601 keys
    // make ranges of 320 and 281); prefill tiles of 5 tokens x 3 heads with a partial last
    // tile.
    check_attention(&r, heads(9, 3, 64), &[600, 1], 6);
    // A head dim of 16: eight invocations per value pair.
    check_attention(&r, heads(4, 2, 16), &[16, 16, 16, 16, 6, 1, 1], 7);
    // GQA 8:1, a small head dim; a single prefill longer than a tile.
    check_attention(&r, heads(16, 2, 32), &[5, 70, 1], 2);
    // MHA at the largest head dim the kernel supports (two value pairs per lane).
    check_attention(&r, heads(4, 4, 256), &[66, 1], 3);
}

/// Several sequences, each in its own cache slot: prompts of different lengths prefilled
/// one slot at a time, then decode steps with one token per sequence (each at its own
/// position), in the adapter's mode and split into key ranges, then a step of single-token
/// rows as batched generation mixes them: the last sequence's next three (a prompt's rest),
/// which attend to each other's keys stored in the same step, and the first one's next token.
/// Each row must attend only to its own sequence's keys, up to its own position, and read
/// only the key ranges its own context fills: in the mixed step the last sequence's rows
/// take the places where the first one's longer context filled more ranges.
fn check_batched_attention(r: &Runner, heads: Heads, prompts: &[usize], decode_steps: usize, seed: u64) {
    let Heads { n_heads, n_kv_heads, head_dim } = heads;
    let (q_dim, kv_dim) = (n_heads * head_dim, n_kv_heads * head_dim);
    let slots = prompts.len();
    let context = prompts.iter().max().unwrap() + decode_steps + 3;
    let cache = KvCache::new(r.gpu, heads, context, slots);
    let rows = slots.max(4);
    let scratches = [SplitScratch::new(r.gpu, heads, rows), SplitScratch::with_splits(r.gpu, heads, 4, rows)];
    let mut rng = rng(seed);
    let mut keys = vec![Vec::new(); slots];
    let mut values = vec![Vec::new(); slots];
    // Rows of (slot, tokens): each prompt alone, then every slot together per decode step,
    // then the mixed step.
    let mut steps: Vec<Vec<(usize, usize)>> = prompts.iter().enumerate().map(|(s, &n)| vec![(s, n)]).collect();
    steps.extend((0..decode_steps).map(|_| (0..slots).map(|s| (s, 1)).collect()));
    steps.push(vec![(slots - 1, 3), (0, 1)]);
    for rows in steps {
        let n: usize = rows.iter().map(|&(_, tokens)| tokens).sum();
        let q_values = uniform(&mut rng, n * q_dim, 4.0);
        let k_values = uniform(&mut rng, n * kv_dim, 1.0);
        let v_values = uniform(&mut rng, n * kv_dim, 1.0);
        let (mut places, mut want, mut t) = (Vec::new(), Vec::new(), 0);
        for &(slot, tokens) in &rows {
            places.extend(TokenPlace::run(slot, keys[slot].len(), tokens));
            for _ in 0..tokens {
                keys[slot].push(reference::round_f16(&k_values[t * kv_dim..][..kv_dim]));
                values[slot].push(reference::round_f16(&v_values[t * kv_dim..][..kv_dim]));
                let q = &q_values[t * q_dim..][..q_dim];
                want.extend(reference::attend(q, &keys[slot], &values[slot], n_heads, n_kv_heads));
                t += 1;
            }
        }
        let modes = if rows.len() > 1 || n == 1 {
            scratches.iter().map(AttentionMode::Decode).collect()
        } else {
            vec![AttentionMode::Prefill]
        };
        let (q, store) = store_unrotated(r, heads, &cache, &q_values, &k_values, &v_values);
        let tolerance = |i: usize| (context + 4 * head_dim + i / q_dim) as f32 * EPS;
        for (index, mode) in modes.into_iter().enumerate() {
            let out = r.zeros(n * q_dim);
            let dispatches = attention(r.gpu, &r.step, heads, mode, &q, &cache, &out);
            let step = Step { n_tokens: n as u32, ..Default::default() };
            r.run((step, places.clone()), std::iter::once(&store).chain(&dispatches));
            let got = r.read_f32(&out, n * q_dim);
            assert_close(&format!("attention {heads:?} rows {rows:?} (mode {index})"), &got, &want, tolerance);
        }
    }
}

fn attention_decode_batch_across_slots(gpu: &'static Gpu) {
    let r = Runner::new(gpu);
    // GQA 3:1 (SmolLM2-like): three sequences, the first long enough for three key ranges.
    check_batched_attention(&r, Heads { n_heads: 6, n_kv_heads: 2, head_dim: 64 }, &[800, 70, 5], 2, 8);
    // Auto-J-13B's heads, two sequences.
    check_batched_attention(&r, Heads { n_heads: 40, n_kv_heads: 40, head_dim: 128 }, &[9, 3], 1, 9);
}

/// The types of llama.cpp's Q4_K_M and Q5_K_M files at Auto-J-13B's and Yi-6B's shapes, as
/// those mixes place them: Q4_K and Q5_K projections, Q6_K for the down projection and the
/// lm_head, Q5 and BF16 where a GGUF has them; every kernel that reads weights.
fn k_quants_at_real_shapes(gpu: &'static Gpu) {
    let r = Runner::new(gpu);
    let mut rng = rng(15);
    // Auto-J-13B: the gate and up projections (5120 -> 13824) stacked, and down (13824 -> 5120).
    let gate = Packed::random(&mut rng, DType::Q4K, 5120, 256, &[13824]);
    let up = Packed::random(&mut rng, DType::Q4K, 5120, 256, &[13824]);
    check_gate_up(&r, &gate, &up, &[(MATVEC_ONE, 1), (MATMUL, 3), (MATMUL_WIDE, 3)], 1);
    check_linear(&r, &up, &up.upload(gpu), MATVEC, 4, Epilogue::SwiGlu, None, 2);
    drop((gate, up));
    let down = Packed::random(&mut rng, DType::Q6K, 13824, 256, &[5120]);
    check_linear(&r, &down, &down.upload(gpu), MATVEC_ONE, 1, Epilogue::Accumulate, None, 3);
    check_linear(&r, &down, &down.upload(gpu), MATMUL, 3, Epilogue::Accumulate, None, 4);
    check_linear(&r, &down, &down.upload(gpu), MATMUL_WIDE, 3, Epilogue::Accumulate, None, 4);
    drop(down);
    let up = Packed::random(&mut rng, DType::Q5K, 5120, 256, &[13824]);
    check_linear(&r, &up, &up.upload(gpu), MATVEC, 2, Epilogue::Store, None, 5);
    drop(up);
    // The lm_head in Q6_K (135.7 MB: two parts under WebGPU's default 128 MiB binding), read
    // from the last of a prefill's tokens, then its argmax.
    let head = Packed::random(&mut rng, DType::Q6K, 5120, 256, &binding_parts(DType::Q6K, 32000, 5120, 256));
    let logits = check_linear(&r, &head, &head.upload(gpu), MATVEC_LAST, 3, Epilogue::Store, None, 6);
    check_argmax(&r, &logits);
    // Yi-6B: the FFN in Q5 (Q5_0/Q5_1 files), the embedding in BF16 and Q4_K.
    let down = Packed::random(&mut rng, DType::Q5, 11008, 32, &[4096]);
    check_linear(&r, &down, &down.upload(gpu), MATVEC_ONE, 1, Epilogue::Accumulate, None, 7);
    check_linear(&r, &down, &down.upload(gpu), MATMUL, 5, Epilogue::Accumulate, None, 8);
    drop(down);
    for (dtype, group) in [(DType::Bf16, 0), (DType::Q4K, 256)] {
        let parts = binding_parts(dtype, 64000, 4096, group);
        let table = Packed::random(&mut rng, dtype, 4096, group, &parts);
        let tokens: Vec<u32> = vec![0, 63999, parts[0] as u32 - 1, parts[0] as u32, 31337];
        let x = r.storage_f32(&vec![0.0; tokens.len() * 4096]);
        r.run(step(tokens.len(), 0), &embedding(gpu, &r.step, &table.upload(gpu), &u32_buffer(gpu, &tokens), &x));
        let got = r.read_f32(&x, tokens.len() * 4096);
        let mut want = Vec::new();
        for &t in &tokens {
            let (index, start) = part_of_row(&parts, t as usize);
            want.extend(table.part_rows(index, t as usize - start, t as usize - start + 1));
        }
        assert_close(&format!("embedding {dtype:?} 64000 x 4096"), &got, &want, |_| 0.0);
    }
}

/// The part holding `row` and the part's first row.
fn part_of_row(parts: &[usize], row: usize) -> (usize, usize) {
    let mut start = 0;
    for (index, &rows) in parts.iter().enumerate() {
        if row < start + rows {
            return (index, start);
        }
        start += rows;
    }
    panic!("row {row} is past {start} rows");
}

/// Batching must not change a sequence's numbers: each row of a batched decode matvec is
/// bit for bit what the same token gives alone, through the one-token variant a single
/// sequence's decode runs (the greedy output of a prompt must not depend on the batch it
/// ran in), for every dtype.
fn decode_batch_rows_match_single_rows(gpu: &'static Gpu) {
    let r = Runner::new(gpu);
    let mut rng = rng(14);
    for (dtype, group, cols) in DTYPES {
        let weights = Packed::random(&mut rng, dtype, cols, group, &[37, 27, 36]);
        let tensor = weights.upload(gpu);
        let (rows, cols, batch) = (weights.rows(), weights.cols(), 5);
        let x = uniform(&mut rng, batch * cols, 1.0);
        let y = r.zeros(batch * rows);
        let x_buffer = r.storage_f32(&x);
        let dispatches = linear(gpu, &r.step, &tensor, &x_buffer, &y, MATVEC.0, MATVEC.1, Epilogue::Store);
        r.run(step(batch, 0), &dispatches);
        let together = r.read_f32(&y, batch * rows);
        for t in 0..batch {
            let alone_y = r.zeros(rows);
            let alone_x = r.storage_f32(&x[t * cols..][..cols]);
            let dispatches =
                linear(gpu, &r.step, &tensor, &alone_x, &alone_y, MATVEC_ONE.0, MATVEC_ONE.1, Epilogue::Store);
            r.run(step(1, 0), &dispatches);
            let alone = r.read_f32(&alone_y, rows);
            let batched = &together[t * rows..][..rows];
            let same = alone.iter().zip(batched).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{dtype:?}: row {t} of a batch of {batch} differs from the token alone");
        }
    }
}

fn attention_real_shapes(gpu: &'static Gpu) {
    let r = Runner::new(gpu);
    // Auto-J-13B: 40 heads x 128, no GQA.
    check_attention(&r, Heads { n_heads: 40, n_kv_heads: 40, head_dim: 128 }, &[70, 1, 1], 4);
    // Yi-6B: 32 query heads sharing 4 KV heads (8:1).
    check_attention(&r, Heads { n_heads: 32, n_kv_heads: 4, head_dim: 128 }, &[70, 1, 1], 5);
}

/// Random permutations of a small width and of Auto-J-13B's hidden size, over several
/// tokens (a prefill chunk): every row is gathered in the order, nothing past the step's
/// tokens is written.
fn gather_act_order_inputs(gpu: &'static Gpu) {
    let r = Runner::new(gpu);
    let mut rng = rng(11);
    for (inputs, tokens) in [(40, 3), (5120, 3)] {
        let mut order: Vec<u32> = (0..inputs as u32).collect();
        for i in (1..inputs).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let entry = TensorEntry {
            name: format!("blk.0.attn_q.input_order {inputs}"),
            dtype: DType::U32,
            shape: vec![inputs],
            group_size: 0,
            parts: vec![TensorPart { row_start: 0, rows: 1, shard: 0, offset: 0, length: inputs as u64 * 4 }],
            input_order: None,
        };
        let order_tensor = GpuTensor::upload(gpu, &entry, [bytemuck::cast_slice(&order[..])]);
        let x = uniform(&mut rng, tokens * inputs, 1.0);
        let out = r.storage_f32(&vec![-7.0; (tokens + 1) * inputs]);
        let dispatch = gather(gpu, &r.step, &order_tensor, &r.storage_f32(&x), &out);
        r.run(step(tokens, 0), [&dispatch]);
        let got = r.read_f32(&out, (tokens + 1) * inputs);
        let mut want: Vec<f32> = x.chunks(inputs).flat_map(|row| order.iter().map(|&k| row[k as usize])).collect();
        want.extend(vec![-7.0; inputs]);
        assert_close(&format!("gather {inputs}"), &got, &want, |_| 0.0);
    }
}

fn argmax_ties_go_to_lowest_index(gpu: &'static Gpu) {
    let r = Runner::new(gpu);
    let mut rng = rng(8);
    // Fewer logits than lanes, all tied.
    check_argmax(&r, &[0.5; 7]);
    check_argmax(&r, &[-1e30; 300]);
    // `(vocab, indices holding the maximum)`: ties within one lane's stride (5, 261) and
    // across lanes in both orders, at the ends of the vocabulary.
    // Vocabularies past 65,536 (Llama 3's 128,256, Qwen2's padded 151,936): ids past 16 bits.
    let cases: [(usize, &[usize]); 9] = [
        (1000, &[900, 13, 500]),
        (1000, &[261, 5]),
        (1000, &[262, 5]),
        (1000, &[999]),
        (1000, &[0, 999]),
        (32000, &[31999, 257, 256]),
        (64000, &[63999, 40000]),
        (128256, &[128255, 65536]),
        (151936, &[151935, 100000]),
    ];
    for (vocab, peaks) in cases {
        let mut logits = uniform(&mut rng, vocab, 10.0);
        for &p in peaks {
            logits[p] = 11.0;
        }
        assert_eq!(check_argmax(&r, &logits) as usize, *peaks.iter().min().unwrap());
    }
    // No planted peak, large negative logits.
    let logits: Vec<f32> = uniform(&mut rng, 64000, 5.0).iter().map(|v| v - 1e4).collect();
    check_argmax(&r, &logits);
}

/// Draws one token per seed in `seeds` from `logits` with the GPU sampler.
fn sample_tokens(r: &Runner, logits: &[f32], temperature: f32, top_p: f32, seeds: &[u32]) -> Vec<u32> {
    let gpu = r.gpu;
    let tokens = gpu.storage("token", 4);
    let drawn = gpu.storage("drawn tokens", seeds.len() as u64 * 4);
    let dispatch = choose_token(gpu, &r.step, &r.storage_f32(logits), &tokens, logits.len(), false, true);
    for (i, &seed) in seeds.iter().enumerate() {
        let step = Step { n_tokens: 1, seed, temperature, top_p, choosing: 1 };
        r.step.write(gpu, &step, &TokenPlace::run(0, 17, 1));
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        record_all(&mut encoder, [&dispatch], 1);
        encoder.copy_buffer_to_buffer(&tokens, 0, &drawn, i as u64 * 4, 4);
        gpu.queue.submit([encoder.finish()]);
    }
    r.read_u32(&drawn, seeds.len())
}

/// Samples `draws` tokens at (temperature, top_p) and checks they come from the
/// reference nucleus with the reference's renormalized frequencies.
fn check_nucleus(r: &Runner, logits: &[f32], temperature: f32, top_p: f32, draws: u32) {
    let nucleus = reference::nucleus(logits, temperature, top_p);
    let seeds: Vec<u32> = (0..draws).map(|i| i.wrapping_mul(2_654_435_761)).collect();
    let drawn = sample_tokens(r, logits, temperature, top_p, &seeds);
    let mut counts = vec![0u32; logits.len()];
    for &t in &drawn {
        assert!(nucleus.iter().any(|&(n, _)| n as u32 == t), "token {t} drawn outside the nucleus {nucleus:?}");
        counts[t as usize] += 1;
    }
    for &(token, p) in &nucleus {
        let (expected, count) = (draws as f32 * p, counts[token] as f32);
        let sigma = (draws as f32 * p * (1.0 - p)).sqrt();
        assert!(
            (count - expected).abs() <= 5.0 * sigma + 1.0,
            "T {temperature} top_p {top_p}: token {token} drawn {count} times, expected {expected:.1} (p {p:.4})"
        );
    }
}

/// A top_p midway between the cumulative masses of the `k - 1` and `k` most probable
/// tokens, so the nucleus is exactly the top `k` whatever the rounding.
fn top_p_keeping(logits: &[f32], temperature: f32, k: usize) -> f32 {
    let all = reference::nucleus(logits, temperature, 1.0);
    let mass = |n: usize| all[..n].iter().map(|&(_, p)| p).sum::<f32>();
    let top_p = 0.5 * (mass(k - 1) + mass(k));
    assert_eq!(reference::nucleus(logits, temperature, top_p).len(), k);
    top_p
}

fn sampling_nucleus_and_temperature(gpu: &'static Gpu) {
    let r = Runner::new(gpu);
    let mut rng = rng(9);
    let logits = uniform(&mut rng, 50, 3.0);
    let best = reference::argmax(&logits) as u32;

    // A vanishing nucleus is the most probable token, whatever the seed or temperature.
    let seeds: Vec<u32> = (0..20).collect();
    for temperature in [0.3, 1.0, 5.0] {
        assert!(sample_tokens(&r, &logits, temperature, 1e-6, &seeds).iter().all(|&t| t == best));
    }
    // The same seed draws the same token; different seeds draw different ones.
    let seeds: Vec<u32> = (0..64).collect();
    let first = sample_tokens(&r, &logits, 1.0, 1.0, &seeds);
    assert_eq!(first, sample_tokens(&r, &logits, 1.0, 1.0, &seeds), "sampling is not repeatable");
    let distinct: std::collections::BTreeSet<_> = first.iter().collect();
    assert!(distinct.len() > 5, "64 seeds drew only {distinct:?}");

    // Nuclei of a few tokens at several temperatures, and no cut at all.
    for (temperature, k) in [(0.7, 4), (1.0, 10), (2.0, 25)] {
        check_nucleus(&r, &logits, temperature, top_p_keeping(&logits, temperature, k), 1000);
    }
    check_nucleus(&r, &logits, 1.5, 1.0, 1000);

    // A full Yi-6B vocabulary: picks stay in the nucleus.
    let logits = uniform(&mut rng, 64000, 8.0);
    check_nucleus(&r, &logits, 0.8, top_p_keeping(&logits, 0.8, 40), 50);
    // Qwen2's padded 151,936: a nucleus of ids past 65,536 only.
    let mut logits = uniform(&mut rng, 151936, 1.0);
    for id in [70000, 151935, 99999] {
        logits[id] = 30.0;
    }
    check_nucleus(&r, &logits, 1.0, top_p_keeping(&logits, 1.0, 3), 50);
}

/// A workgroup of 4 invocations: smaller than lavapipe's subgroups (8 lanes at 256 bits),
/// as an adapter may report subgroups larger than a kernel's workgroup.
const PROBE_SHADER: &str = r#"
#include "common.wgsl"
const WG: u32 = 4u;
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    let value = input[wid.x * WG + lane.index];
    let sum = workgroup_sum(value, lane);
    let max = workgroup_max(value, lane);
    if lane.index == 0u {
        output[3u * wid.x] = sum;
        output[3u * wid.x + 1u] = max;
#ifdef SUBGROUPS
        output[3u * wid.x + 2u] = f32(lane.sg_size);
#endif
    }
}
"#;

/// common.wgsl's workgroup_sum and workgroup_max over workgroups smaller than a subgroup:
/// the subgroup variant must count the one subgroup that holds the whole workgroup.
#[test]
fn reductions_with_subgroups_larger_than_the_workgroup() {
    let Some(gpu) = gpu(true) else {
        eprintln!("the adapter has no subgroups: nothing to test");
        return;
    };
    let lookup = |name: &str| match name {
        "probe.wgsl" => Some(PROBE_SHADER),
        "common.wgsl" => Some(include_str!("../shaders/common.wgsl")),
        _ => None,
    };
    let expanded = preprocess::expand("probe.wgsl", &["SUBGROUPS"], SHADER_CONSTANTS, &lookup).expect("probe shader");
    let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("reduction probe"),
        source: wgpu::ShaderSource::Wgsl(expanded.text.into()),
    });
    let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("reduction probe"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let groups = 3;
    let input: Vec<f32> = (0..4 * groups).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
    let r = Runner::new(gpu);
    let output = r.zeros(3 * groups);
    let bind_group = gpu.bind(&pipeline, &[(0, &r.storage_f32(&input)), (1, &output)]);
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups as u32, 1, 1);
    }
    gpu.queue.submit([encoder.finish()]);
    let got = r.read_f32(&output, 3 * groups);
    for (group, values) in input.chunks(4).enumerate() {
        let sg_size = got[3 * group + 2];
        assert!(sg_size > 4.0, "the adapter's subgroups ({sg_size}) do not exceed the workgroup: nothing probed");
        let sum: f32 = values.iter().sum();
        let max = values.iter().copied().fold(f32::MIN, f32::max);
        assert_eq!((got[3 * group], got[3 * group + 1]), (sum, max), "workgroup {group} of {values:?}");
    }
}
