//! Where a model directory's tensor parts lie, decided from the tensors' dtypes and shapes
//! alone: each tensor split by rows into parts of at most one binding, the parts packed in
//! order into shards of bounded size, and each shard's sha256 as its bytes go by. The
//! converter's writer follows it to write files; loading a GGUF directly follows it to put
//! the same parts on the GPU (and, in the browser, into its cache) with the manifest the
//! converter would write, without writing a file.

use sha2::{Digest, Sha256};

use super::manifest::{
    Manifest, ManifestError, ShardEntry, TensorEntry, TensorPart, FORMAT_VERSION, INPUT_ORDER_FORMAT_VERSION,
    MAX_BINDING_BYTES,
};
use super::{hex, Architecture, ChatTemplate, DType, JudgeFamily};

/// Places tensors' parts into shards of at most `max_shard_bytes` (a part larger than that
/// still gets a shard of its own), in the order the tensors are placed.
pub struct ShardLayout {
    max_shard_bytes: u64,
    shard_sizes: Vec<u64>,
}

impl ShardLayout {
    pub fn new(max_shard_bytes: u64) -> Self {
        Self { max_shard_bytes, shard_sizes: Vec::new() }
    }

    /// The entry of a tensor placed after those placed before: its parts' rows, shards and
    /// offsets.
    pub fn place(&mut self, name: &str, dtype: DType, shape: &[usize], group_size: usize) -> TensorEntry {
        let (rows, cols) = match shape {
            [n] => (1, *n),
            [r, c] => (*r, *c),
            _ => panic!("tensor {name}: shape {shape:?} is neither a vector nor a matrix"),
        };
        let limit = self.max_shard_bytes.min(MAX_BINDING_BYTES);
        let group = (group_size as u64).max(1);
        let row_bytes = dtype.part_bytes(1, cols as u64, group).max(1);
        // q8 scales pad to whole words per part; leave room for that.
        let rows_per_part = (((limit - 4) / row_bytes) as usize).clamp(1, rows);
        let mut parts = Vec::new();
        let mut row_start = 0;
        while row_start < rows {
            let part_rows = rows_per_part.min(rows - row_start);
            let length = dtype.part_bytes(part_rows as u64, cols as u64, group);
            let (shard, offset) = self.append(length);
            parts.push(TensorPart { row_start, rows: part_rows, shard, offset, length });
            row_start += part_rows;
        }
        TensorEntry { name: name.into(), dtype, shape: shape.to_vec(), group_size, parts, input_order: None }
    }

    /// The shard and offset of `length` more bytes: after the last shard's, or a new shard.
    fn append(&mut self, length: u64) -> (usize, u64) {
        match self.shard_sizes.last_mut() {
            Some(size) if *size + length <= self.max_shard_bytes => {
                let offset = *size;
                *size += length;
                (self.shard_sizes.len() - 1, offset)
            }
            _ => {
                self.shard_sizes.push(length);
                (self.shard_sizes.len() - 1, 0)
            }
        }
    }
}

/// Each shard's size and sha256 from its parts' bytes, given in layout order.
#[derive(Default)]
pub struct ShardHashes {
    open: Option<(Sha256, u64)>,
    done: Vec<ShardEntry>,
}

impl ShardHashes {
    /// Adds the bytes of a part of `shard`; when they start a new shard, the entry of the
    /// one they close, which is complete.
    pub fn append(&mut self, shard: usize, bytes: &[u8]) -> Option<ShardEntry> {
        let closed = match self.open {
            Some(_) if shard == self.done.len() => None,
            _ => self.close(),
        };
        assert_eq!(shard, self.done.len(), "parts arrive in layout order");
        let (hasher, size) = self.open.get_or_insert_with(|| (Sha256::new(), 0));
        hasher.update(bytes);
        *size += bytes.len() as u64;
        closed
    }

    /// Closes the open shard, returning its entry.
    pub fn close(&mut self) -> Option<ShardEntry> {
        let (hasher, size) = self.open.take()?;
        let sha256 = hex(&hasher.finalize());
        let entry = ShardEntry { file: shard_file_name(self.done.len(), &sha256), size, sha256 };
        self.done.push(entry.clone());
        Some(entry)
    }

    /// Every shard's entry, the open one closed.
    pub fn finish(mut self) -> Vec<ShardEntry> {
        self.close();
        self.done
    }
}

/// Shard names carry their content hash, so a server may mark them immutable: a
/// re-converted model gets new names instead of stale cached bytes.
pub fn shard_file_name(index: usize, sha256: &str) -> String {
    format!("weights-{:05}-{}.bin", index + 1, &sha256[..16])
}

impl Manifest {
    /// The manifest of tensors laid out and shards hashed, at the oldest format version that
    /// holds what it records, checked as a reader would check it.
    pub fn assemble(
        architecture: Architecture,
        chat_template: Option<ChatTemplate>,
        judge: Option<JudgeFamily>,
        tensors: Vec<TensorEntry>,
        shards: Vec<ShardEntry>,
    ) -> Result<Manifest, ManifestError> {
        let has_orders = tensors.iter().any(|t| t.input_order.is_some());
        let dtypes_need = tensors.iter().map(|t| t.dtype.format_version()).max().unwrap_or(FORMAT_VERSION);
        let orders_need = if has_orders { INPUT_ORDER_FORMAT_VERSION } else { FORMAT_VERSION };
        let template_needs = Manifest::chat_template_format_version(chat_template.as_ref());
        let architecture_needs = Manifest::architecture_format_version(&architecture);
        let manifest = Manifest {
            format_version: dtypes_need.max(orders_need).max(template_needs).max(architecture_needs),
            architecture,
            chat_template,
            judge,
            tensors,
            shards,
        };
        manifest.validate()?;
        Ok(manifest)
    }
}
