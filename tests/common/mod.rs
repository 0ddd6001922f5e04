//! Shared helpers for the GPU tests: one GPU context per shader variant, random weights
//! generated directly in their packed layouts, running dispatches and reading results,
//! and a comparison that reports the worst offenders.
#![allow(dead_code)]

pub mod hf;

use std::path::Path;
use std::sync::OnceLock;

use half::f16;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use webjudge::format::manifest::MAX_BINDING_BYTES;
use webjudge::format::{dequantize, DType, Manifest, TensorEntry, TensorPart};
use webjudge::kernels::{record_all, Dispatch, Gpu, GpuOptions, GpuTensor, MatvecPath, Step, StepBuffers, TokenPlace};

pub const EPS: f32 = f32::EPSILON;

/// The GPU context for one shader variant, shared by every test of this binary so each
/// pipeline compiles once. `None` when subgroups are asked for but the adapter lacks them.
pub fn gpu(allow_subgroups: bool) -> Option<&'static Gpu> {
    static FALLBACK: OnceLock<Gpu> = OnceLock::new();
    static SUBGROUPS: OnceLock<Gpu> = OnceLock::new();
    let cell = if allow_subgroups { &SUBGROUPS } else { &FALLBACK };
    let gpu = cell.get_or_init(|| {
        pollster::block_on(Gpu::new(GpuOptions { allow_subgroups, ..Default::default() }))
            .expect("no GPU adapter: install lavapipe (apt-get install mesa-vulkan-drivers libvulkan1)")
    });
    (gpu.subgroups == allow_subgroups).then_some(gpu)
}

/// The GPU context of the int8 matvec path (`MatvecPath::Int8`), shared like [`gpu`]'s;
/// without subgroups, which the matvec does not use.
pub fn int8_matvec_gpu() -> &'static Gpu {
    static INT8: OnceLock<Gpu> = OnceLock::new();
    INT8.get_or_init(|| {
        pollster::block_on(Gpu::new(GpuOptions {
            allow_subgroups: false,
            matvec: MatvecPath::Int8,
            ..Default::default()
        }))
        .expect("no GPU adapter with WGSL's packed_4x8_integer_dot_product")
    })
}

pub fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

/// `n` values uniform in `[-scale, scale)`.
pub fn uniform(rng: &mut SmallRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

pub fn bytes_of_f32(values: &[f32]) -> &[u8] {
    bytemuck::cast_slice(values)
}

/// A weight tensor as a model directory stores it: its manifest entry and each part's
/// packed words.
pub struct Packed {
    pub entry: TensorEntry,
    pub parts: Vec<Vec<u32>>,
}

impl Packed {
    /// Random `rows x cols` weights in `dtype` (values roughly within `[-1, 1]`), made
    /// directly as packed words (random nibbles / bytes and random f16 group
    /// parameters) so even vocabulary-sized tensors take little setup time. `part_rows`
    /// gives each part's row count.
    pub fn random(rng: &mut SmallRng, dtype: DType, cols: usize, group: usize, part_rows: &[usize]) -> Self {
        let group = if dtype.is_quantized() { group } else { 0 };
        dtype.check_shape(cols as u64, group as u64).expect("test shape");
        let mut parts = Vec::new();
        let mut entries = Vec::new();
        let (mut row_start, mut offset) = (0, 0);
        for &rows in part_rows {
            let words = random_part(rng, dtype, rows * cols, group);
            let length = words.len() as u64 * 4;
            assert_eq!(length, dtype.part_bytes(rows as u64, cols as u64, group.max(1) as u64));
            entries.push(TensorPart { row_start, rows, shard: 0, offset, length });
            parts.push(words);
            row_start += rows;
            offset += length;
        }
        let entry = TensorEntry {
            name: format!("{dtype:?} {row_start}x{cols}"),
            dtype,
            shape: vec![row_start, cols],
            group_size: group,
            parts: entries,
            input_order: None,
        };
        Self { entry, parts }
    }

    pub fn rows(&self) -> usize {
        self.entry.rows()
    }

    pub fn cols(&self) -> usize {
        self.entry.cols()
    }

    pub fn upload(&self, gpu: &Gpu) -> GpuTensor {
        GpuTensor::upload(gpu, &self.entry, self.parts.iter().map(|p| bytemuck::cast_slice(p)))
    }

    /// Rows `start..end` of part `index` (part-relative), decoded by the documented
    /// layout (`format::dequantize`) applied to just those rows' words.
    pub fn part_rows(&self, index: usize, start: usize, end: usize) -> Vec<f32> {
        let (dtype, cols, group) = (self.entry.dtype, self.cols(), self.entry.group_size);
        let words = &self.parts[index];
        let n = self.entry.parts[index].rows * cols;
        let sub = dtype.part_slice(words, n, start * cols..end * cols, group.max(1));
        dequantize(dtype, &sub, end - start, cols, group.max(1))
    }

    /// Calls `f(first_row, rows)` over the whole tensor in chunks of at most `chunk`
    /// rows (even, for q8's paired scales), never materializing it all in f32.
    pub fn for_each_rows(&self, chunk: usize, mut f: impl FnMut(usize, &[f32])) {
        assert!(chunk.is_multiple_of(2));
        for (index, part) in self.entry.parts.iter().enumerate() {
            let mut start = 0;
            while start < part.rows {
                let end = (start + chunk).min(part.rows);
                f(part.row_start + start, &self.part_rows(index, start, end));
                start = end;
            }
        }
    }

    /// The same tensor with every code 0 (q4's offsets, q8's zeros), its parameters kept:
    /// what the int8 matvec test's tolerance needs of a block besides its values.
    pub fn codes_zeroed(&self) -> Packed {
        let (dtype, cols) = (self.entry.dtype, self.cols() as u64);
        let parts = self
            .parts
            .iter()
            .zip(&self.entry.parts)
            .map(|(words, part)| {
                let codes = dtype.params_word_offset(part.rows as u64, cols) as usize;
                [&vec![0; codes][..], &words[codes..]].concat()
            })
            .collect();
        Packed { entry: self.entry.clone(), parts }
    }

    /// The whole tensor in f32 (small tensors only).
    pub fn dequantized(&self) -> Vec<f32> {
        let mut all = Vec::with_capacity(self.rows() * self.cols());
        self.for_each_rows(1 << 20, |_, rows| all.extend_from_slice(rows));
        all
    }
}

fn random_part(rng: &mut SmallRng, dtype: DType, n: usize, group: usize) -> Vec<u32> {
    let mut codes = vec![0u32; dtype.params_word_offset(n as u64, 1) as usize];
    rng.fill(&mut codes[..]);
    let mut f16s = |count: usize, base: f32| -> Vec<f16> {
        (0..count).map(|_| f16::from_f32(base * rng.random_range(0.5f32..1.5))).collect()
    };
    let pairs = |low: Vec<f16>, high: Vec<f16>| -> Vec<u32> {
        low.iter().zip(&high).map(|(l, h)| u32::from(l.to_bits()) | (u32::from(h.to_bits()) << 16)).collect()
    };
    let super_blocks = n / 256;
    match dtype {
        DType::Q4 | DType::Q5 => {
            // Value = scale * q + offset with q in 0..16 (0..32): offsets near -7.5 (-15.5)
            // scale centre the values on zero.
            let levels = if dtype == DType::Q4 { 7.5 } else { 15.5 };
            let scales = f16s(n / group, 1.0 / levels);
            let shifts = f16s(n / group, -levels);
            let offsets = scales.iter().zip(&shifts).map(|(&s, &k)| f16::from_f32(s.to_f32() * k.to_f32())).collect();
            let params = pairs(scales, offsets);
            if dtype == DType::Q4 {
                codes.extend(params);
            } else {
                let fifth_bits: Vec<u32> = (0..params.len()).map(|_| rng.random()).collect();
                codes.extend(params.iter().zip(fifth_bits).flat_map(|(&p, f)| [p, f]));
            }
            codes
        }
        DType::Q4K | DType::Q5K => {
            // Value = d * sc * q - dmin * m with 6-bit sc and m: about [-1, 1].
            let levels = if dtype == DType::Q4K { 15.0 } else { 31.0 };
            let d_dmin = pairs(f16s(super_blocks, 2.0 / (levels * 63.0)), f16s(super_blocks, 1.0 / 63.0));
            let words = dtype.params_words_per_group() as usize;
            for d_dmin in d_dmin {
                codes.push(d_dmin);
                codes.extend((1..words).map(|_| rng.random::<u32>()));
            }
            codes
        }
        DType::Q6K => {
            // Value = d * scale * (q - 32) with signed 8-bit scales: about [-1, 1].
            for d in f16s(super_blocks, 1.0 / (32.0 * 127.0)) {
                codes.push(u32::from(d.to_bits()));
                codes.extend((1..dtype.params_words_per_group()).map(|_| rng.random::<u32>()));
            }
            codes
        }
        DType::Q8 => {
            let scales = f16s(n / group, 1.0 / 127.0);
            codes.extend(webjudge::format::pack_f16_words(&scales));
            codes
        }
        DType::F16 => {
            let values: Vec<f16> = (0..n).map(|_| f16::from_f32(rng.random_range(-1.0f32..1.0))).collect();
            webjudge::format::pack_f16_words(&values).collect()
        }
        DType::Bf16 => {
            let values: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            webjudge::format::encode(DType::Bf16, &values, 0)
        }
        DType::F32 => (0..n).map(|_| rng.random_range(-1.0f32..1.0).to_bits()).collect(),
        DType::U32 => panic!("u32 tensors hold indices, not random weights"),
    }
}

/// Row counts of the parts a converter makes for a `rows x cols` tensor: as many rows
/// per part as fit one storage binding (the rule of convert/writer.rs).
pub fn binding_parts(dtype: DType, rows: usize, cols: usize, group: usize) -> Vec<usize> {
    let row_bytes = dtype.part_bytes(1, cols as u64, group.max(1) as u64);
    let per_part = ((MAX_BINDING_BYTES - 4) / row_bytes) as usize;
    let mut parts = vec![per_part; rows / per_part];
    if !rows.is_multiple_of(per_part) {
        parts.push(rows % per_part);
    }
    for &r in &parts {
        assert!(dtype.part_bytes(r as u64, cols as u64, group.max(1) as u64) <= MAX_BINDING_BYTES);
    }
    parts
}

/// A step of `n_tokens` consecutive tokens of sequence slot 0, the first at `position`.
pub fn step(n_tokens: usize, position: usize) -> (Step, Vec<TokenPlace>) {
    (
        Step { n_tokens: n_tokens as u32, choosing: n_tokens as u32, ..Default::default() },
        TokenPlace::run(0, position, n_tokens),
    )
}

/// The most tokens a test step has.
const MAX_STEP_TOKENS: usize = 1024;

/// Runs dispatches on one GPU with one set of step buffers, as the forward pass does.
pub struct Runner {
    pub gpu: &'static Gpu,
    pub step: StepBuffers,
}

impl Runner {
    pub fn new(gpu: &'static Gpu) -> Self {
        Self { gpu, step: StepBuffers::new(gpu, MAX_STEP_TOKENS) }
    }

    pub fn storage_f32(&self, values: &[f32]) -> wgpu::Buffer {
        self.gpu.storage_with("test input", bytes_of_f32(values))
    }

    pub fn zeros(&self, n: usize) -> wgpu::Buffer {
        self.gpu.storage("test output", n as u64 * 4)
    }

    /// Sets the step uniform and submits `dispatches` in one compute pass.
    pub fn run<'a>(&self, (step, places): (Step, Vec<TokenPlace>), dispatches: impl IntoIterator<Item = &'a Dispatch>) {
        self.step.write(self.gpu, &step, &places);
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        record_all(&mut encoder, dispatches, step.n_tokens);
        self.gpu.queue.submit([encoder.finish()]);
    }

    pub fn read_u32(&self, buffer: &wgpu::Buffer, n: usize) -> Vec<u32> {
        let bytes = pollster::block_on(self.gpu.read(buffer, n as u64 * 4)).expect("GPU readback");
        bytemuck::cast_slice(&bytes[..n * 4]).to_vec()
    }

    pub fn read_f32(&self, buffer: &wgpu::Buffer, n: usize) -> Vec<f32> {
        self.read_u32(buffer, n).into_iter().map(f32::from_bits).collect()
    }
}

/// Rounding noise of a length-`n` f32 dot product summed in some order. Each partial
/// sum `S_k` is rounded with relative error up to `EPS / 2`, independently enough to add
/// up like a random walk: about `EPS * sqrt(sum_k S_k^2)`. For zero-mean random inputs
/// the partial sums stay within `sqrt(k) * rms + k * |mean|` of the terms `w x`, giving
/// `~EPS * sqrt(n) * (||w x||_2 + |sum w x|)`. The GPU and the reference each carry such
/// an error; factor 4 covers both with margin. (A single wrongly decoded weight of a
/// 13824-wide row still misses this by a factor of ~30.)
pub fn dot_tolerance(w: &[f32], x: &[f32]) -> f32 {
    let (mut squares, mut sum) = (0.0f64, 0.0f64);
    for (a, b) in w.iter().zip(x) {
        let term = f64::from(a * b);
        squares += term * term;
        sum += term;
    }
    4.0 * EPS * (w.len() as f32).sqrt() * (squares.sqrt() + sum.abs()) as f32 + f32::MIN_POSITIVE
}

/// Asserts `|got[i] - want[i]| <= tolerance(i)` everywhere (and no NaN), naming the worst
/// offenders on failure.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tolerance: impl Fn(usize) -> f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    if std::env::var_os("KERNELS_REPORT").is_some() {
        eprintln!("{what}: worst error / tolerance {:.3}", worst_ratio(got, want, &tolerance));
    }
    let mut failures = Vec::new();
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (error, tol) = ((g - w).abs(), tolerance(i));
        if error.is_nan() || error > tol {
            failures.push((error / tol, i, g, w, tol));
        }
    }
    if !failures.is_empty() {
        let count = failures.len();
        failures.sort_by(|a, b| b.0.total_cmp(&a.0));
        let worst: Vec<String> = failures
            .iter()
            .take(6)
            .map(|(_, i, g, w, tol)| format!("[{i}] got {g} want {w} (tolerance {tol:.3e})"))
            .collect();
        panic!("{what}: {count} of {} values out of tolerance; worst: {}", got.len(), worst.join("; "));
    }
}

/// The largest `|got - want| / tolerance` (set KERNELS_REPORT to print it for every
/// comparison: how close the tests run to their limits).
pub fn worst_ratio(got: &[f32], want: &[f32], tolerance: impl Fn(usize) -> f32) -> f32 {
    let ratio = |(i, (g, w)): (usize, (&f32, &f32))| if g == w { 0.0 } else { (g - w).abs() / tolerance(i) };
    got.iter().zip(want).enumerate().map(ratio).fold(0.0, f32::max)
}

/// Reads a tensor of a model directory back from its shards and decodes it.
pub fn read_tensor(dir: &Path, manifest: &Manifest, name: &str) -> Vec<f32> {
    let tensor = manifest.tensor(name).unwrap();
    let mut values = Vec::new();
    for part in &tensor.parts {
        let shard = std::fs::read(dir.join(&manifest.shards[part.shard].file)).unwrap();
        let bytes = &shard[part.offset as usize..(part.offset + part.length) as usize];
        let words: Vec<u32> = bytes.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
        values.extend(dequantize(tensor.dtype, &words, part.rows, tensor.cols(), tensor.group_size.max(1)));
    }
    values
}
