//! A weight tensor resident on the GPU: one storage buffer per row part.

use crate::format::{DType, TensorEntry};

use super::variants::BLOCK_VALUES;
use super::Gpu;

pub struct GpuPart {
    pub buffer: wgpu::Buffer,
    pub row_start: usize,
    pub rows: usize,
}

pub struct GpuTensor {
    /// The manifest name (`blk.0.attn_q.weight`).
    pub name: String,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub group: usize,
    /// The manifest name of the weight's input order, if its columns are permuted.
    pub input_order: Option<String>,
    pub parts: Vec<GpuPart>,
}

impl GpuTensor {
    /// Creates zeroed buffers for every part of `entry`; [`GpuTensor::write_part`] fills them.
    pub fn allocate(gpu: &Gpu, entry: &TensorEntry) -> Self {
        let parts = entry
            .parts
            .iter()
            .map(|part| GpuPart {
                buffer: gpu.storage(&entry.name, part.length),
                row_start: part.row_start,
                rows: part.rows,
            })
            .collect();
        Self {
            name: entry.name.clone(),
            dtype: entry.dtype,
            rows: entry.rows(),
            cols: entry.cols(),
            group: entry.group_size.max(BLOCK_VALUES as usize),
            input_order: entry.input_order.clone(),
            parts,
        }
    }

    /// Uploads a tensor whose parts' bytes `part_bytes` returns in order.
    pub fn upload<'a>(gpu: &Gpu, entry: &TensorEntry, part_bytes: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let tensor = Self::allocate(gpu, entry);
        for (index, bytes) in part_bytes.into_iter().enumerate().take(tensor.parts.len()) {
            tensor.write_part(gpu, index, bytes);
        }
        tensor
    }

    /// Copies the packed bytes of part `index` into its buffer.
    pub fn write_part(&self, gpu: &Gpu, index: usize, bytes: &[u8]) {
        gpu.queue.write_buffer(&self.parts[index].buffer, 0, bytes);
    }

    /// Word where a part's quantization parameters start (see src/format/dtype.rs).
    pub fn params_offset(&self, part: &GpuPart) -> u32 {
        self.dtype.params_word_offset(part.rows as u64, self.cols as u64) as u32
    }

    /// This tensor as rows `first_row..` of a projection of `rows` rows whose outputs it
    /// shares: a linear layer writes its outputs at those rows of each token's `rows`.
    pub fn into_rows_of(mut self, first_row: usize, rows: usize) -> Self {
        for part in &mut self.parts {
            part.row_start += first_row;
        }
        self.rows = rows;
        self
    }

    /// The rows of `tensors`, in order, as one single-part tensor named `name`, copied on
    /// the GPU: one dispatch then reads what several would (q/k/v, gate/up). `None` when
    /// they differ in dtype, columns, group or input order, any has several parts, the
    /// stack would not fit one binding, or their parameter words would not simply follow
    /// each other (a q8 part with an odd number of scales ends inside a word).
    pub fn stack(gpu: &Gpu, name: &str, tensors: &[&GpuTensor]) -> Option<GpuTensor> {
        let first = tensors.first()?;
        let same = |t: &&GpuTensor| {
            (t.dtype, t.cols, t.group, &t.input_order) == (first.dtype, first.cols, first.group, &first.input_order)
                && t.parts.len() == 1
        };
        if !tensors.iter().all(same) {
            return None;
        }
        let (dtype, cols, group) = (first.dtype, first.cols as u64, first.group as u64);
        let rows: Vec<u64> = tensors.iter().map(|t| t.rows as u64).collect();
        let total_rows = rows.iter().sum();
        let bytes = dtype.part_bytes(total_rows, cols, group);
        // Unquantized parts are all values, no parameters.
        let code_bytes = |rows| match dtype.is_quantized() {
            true => 4 * dtype.params_word_offset(rows, cols),
            false => dtype.part_bytes(rows, cols, group),
        };
        let adds_up = bytes == rows.iter().map(|&r| dtype.part_bytes(r, cols, group)).sum::<u64>()
            && code_bytes(total_rows) == rows.iter().map(|&r| code_bytes(r)).sum::<u64>();
        let limit = gpu.max_binding();
        if !adds_up || bytes > limit {
            return None;
        }
        let buffer = gpu.storage(name, bytes);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        // Codes of every tensor, then parameters of every tensor (dtype.rs's part layout).
        let (mut codes_at, mut params_at) = (0, code_bytes(total_rows));
        for (tensor, &rows) in tensors.iter().zip(&rows) {
            let (codes, part) = (code_bytes(rows), dtype.part_bytes(rows, cols, group));
            let source = &tensor.parts[0].buffer;
            encoder.copy_buffer_to_buffer(source, 0, &buffer, codes_at, codes);
            if part > codes {
                encoder.copy_buffer_to_buffer(source, codes, &buffer, params_at, part - codes);
            }
            codes_at += codes;
            params_at += part - codes;
        }
        gpu.queue.submit([encoder.finish()]);
        Some(Self {
            name: name.into(),
            dtype,
            rows: total_rows as usize,
            cols: first.cols,
            group: first.group,
            input_order: first.input_order.clone(),
            parts: vec![GpuPart { buffer, row_start: 0, rows: total_rows as usize }],
        })
    }
}
