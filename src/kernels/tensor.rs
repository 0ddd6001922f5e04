//! A weight tensor resident on the GPU: one storage buffer per row part.

use crate::weights::{DType, TensorEntry};

use super::Gpu;

pub struct GpuPart {
    pub buffer: wgpu::Buffer,
    pub row_start: usize,
    pub rows: usize,
}

pub struct GpuTensor {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub group: usize,
    pub parts: Vec<GpuPart>,
}

impl GpuTensor {
    /// Uploads a tensor whose parts' bytes `part_bytes` returns in order.
    pub fn upload<'a>(gpu: &Gpu, entry: &TensorEntry, part_bytes: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let parts = entry
            .parts
            .iter()
            .zip(part_bytes)
            .map(|(part, bytes)| GpuPart {
                buffer: gpu.storage_with(&entry.name, bytes),
                row_start: part.row_start,
                rows: part.rows,
            })
            .collect();
        Self { dtype: entry.dtype, rows: entry.rows(), cols: entry.cols(), group: entry.group_size.max(32), parts }
    }

    /// Word where a part's quantization parameters start (see src/weights/dtype.rs).
    pub fn params_offset(&self, part: &GpuPart) -> u32 {
        self.dtype.params_word_offset(part.rows as u64, self.cols as u64) as u32
    }
}
