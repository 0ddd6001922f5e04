//! A weight tensor resident on the GPU: one storage buffer per row part.

use crate::weights::{DType, TensorEntry};

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
            group: entry.group_size.max(32),
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

    /// Word where a part's quantization parameters start (see src/weights/dtype.rs).
    pub fn params_offset(&self, part: &GpuPart) -> u32 {
        self.dtype.params_word_offset(part.rows as u64, self.cols as u64) as u32
    }
}
