//! Writes a model directory: tensors split into binding-sized parts, packed into
//! shards of bounded size, each hashed as it is written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::io_error_at;
use crate::format::manifest::{
    Manifest, ShardEntry, TensorEntry, TensorPart, FORMAT_VERSION, INPUT_ORDER_FORMAT_VERSION, MANIFEST_FILE,
    MAX_BINDING_BYTES, MAX_MANIFEST_BYTES,
};
use crate::format::{hex, Architecture, ChatTemplate, DType, JudgeFamily};

pub struct ModelWriter {
    dir: PathBuf,
    max_shard_bytes: u64,
    tensors: Vec<TensorEntry>,
    shards: Vec<ShardEntry>,
    open: Option<OpenShard>,
}

struct OpenShard {
    file: BufWriter<File>,
    /// Where the shard is written until its hash (part of its final name) is known.
    path: PathBuf,
    hasher: Sha256,
    size: u64,
}

impl ModelWriter {
    pub fn create(dir: &Path, max_shard_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io_error_at(dir, e))?;
        Ok(Self { dir: dir.to_owned(), max_shard_bytes, tensors: Vec::new(), shards: Vec::new(), open: None })
    }

    /// Writes one tensor. `encode` returns the packed words of a row range (see
    /// [`DType`]); it is called once per part so a large tensor never needs to exist
    /// packed in memory all at once.
    pub fn write_tensor<E>(
        &mut self,
        name: &str,
        dtype: DType,
        shape: &[usize],
        group_size: usize,
        mut encode: impl FnMut(Range<usize>) -> Result<Vec<u32>, E>,
    ) -> Result<(), E>
    where
        E: From<std::io::Error>,
    {
        let (rows, cols) = match shape {
            [n] => (1, *n),
            [r, c] => (*r, *c),
            _ => panic!("tensor {name}: shape {shape:?} is neither a vector nor a matrix"),
        };
        let limit = self.max_shard_bytes.min(MAX_BINDING_BYTES);
        let group = group_size as u64;
        let row_bytes = dtype.part_bytes(1, cols as u64, group.max(1)).max(1);
        // q8 scales pad to whole words per part; leave room for that.
        let rows_per_part = (((limit - 4) / row_bytes) as usize).clamp(1, rows);
        let mut parts = Vec::new();
        let mut row_start = 0;
        while row_start < rows {
            let part_rows = rows_per_part.min(rows - row_start);
            let words = encode(row_start..row_start + part_rows)?;
            assert_eq!(
                words.len() as u64 * 4,
                dtype.part_bytes(part_rows as u64, cols as u64, group.max(1)),
                "tensor {name}: encoder returned a part of the wrong size"
            );
            let (shard, offset) = self.append(bytemuck::cast_slice(&words))?;
            parts.push(TensorPart { row_start, rows: part_rows, shard, offset, length: words.len() as u64 * 4 });
            row_start += part_rows;
        }
        self.tensors.push(TensorEntry {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
            group_size,
            parts,
            input_order: None,
        });
        Ok(())
    }

    /// Whether a tensor of this name was written.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.tensors.iter().any(|t| t.name == name)
    }

    /// Records that the written tensor `name` reads its inputs in the order held by the
    /// u32 tensor `order` (see [`TensorEntry::input_order`]).
    pub fn set_input_order(&mut self, name: &str, order: &str) {
        let tensor = self.tensors.iter_mut().find(|t| t.name == name).expect("the tensor was written");
        tensor.input_order = Some(order.into());
    }

    fn append(&mut self, bytes: &[u8]) -> std::io::Result<(usize, u64)> {
        let fits = self.open.as_ref().is_some_and(|s| s.size + bytes.len() as u64 <= self.max_shard_bytes);
        if !fits {
            self.close_shard()?;
            let path = self.dir.join(partial_shard_file_name(self.shards.len()));
            let file = BufWriter::new(File::create(&path).map_err(|e| io_error_at(&path, e))?);
            self.open = Some(OpenShard { file, path, hasher: Sha256::new(), size: 0 });
        }
        let shard = self.open.as_mut().expect("a shard is open");
        shard.file.write_all(bytes).map_err(|e| io_error_at(&shard.path, e))?;
        shard.hasher.update(bytes);
        let offset = shard.size;
        shard.size += bytes.len() as u64;
        Ok((self.shards.len(), offset))
    }

    fn close_shard(&mut self) -> std::io::Result<()> {
        if let Some(mut shard) = self.open.take() {
            shard.file.flush().map_err(|e| io_error_at(&shard.path, e))?;
            let sha256 = hex(&shard.hasher.finalize());
            let file = shard_file_name(self.shards.len(), &sha256);
            std::fs::rename(&shard.path, self.dir.join(&file)).map_err(|e| io_error_at(&shard.path, e))?;
            self.shards.push(ShardEntry { file, size: shard.size, sha256 });
        }
        Ok(())
    }

    /// Closes the last shard and writes `manifest.json`, checked as a reader would; `judge`
    /// is the family whose protocols the model serves, if any.
    pub fn finish(
        mut self,
        architecture: Architecture,
        chat_template: Option<ChatTemplate>,
        judge: Option<JudgeFamily>,
    ) -> std::io::Result<Manifest> {
        self.close_shard()?;
        let has_orders = self.tensors.iter().any(|t| t.input_order.is_some());
        let dtypes_need = self.tensors.iter().map(|t| t.dtype.format_version()).max().unwrap_or(FORMAT_VERSION);
        let orders_need = if has_orders { INPUT_ORDER_FORMAT_VERSION } else { FORMAT_VERSION };
        let template_needs = Manifest::chat_template_format_version(chat_template.as_ref());
        let architecture_needs = Manifest::architecture_format_version(&architecture);
        let manifest = Manifest {
            format_version: dtypes_need.max(orders_need).max(template_needs).max(architecture_needs),
            architecture,
            chat_template,
            judge,
            tensors: self.tensors,
            shards: self.shards,
        };
        manifest.validate().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        let json = manifest.to_json();
        if json.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the manifest of {} tensor parts in {} shards takes {} bytes, more than the {MAX_MANIFEST_BYTES} \
                     a reader accepts: write larger shards",
                    manifest.tensors.iter().map(|t| t.parts.len()).sum::<usize>(),
                    manifest.shards.len(),
                    json.len()
                ),
            ));
        }
        let path = self.dir.join(MANIFEST_FILE);
        std::fs::write(&path, json).map_err(|e| io_error_at(&path, e))?;
        Ok(manifest)
    }
}

/// Shard names carry their content hash, so a server may mark them immutable: a
/// re-converted model gets new names instead of stale cached bytes.
fn shard_file_name(index: usize, sha256: &str) -> String {
    format!("weights-{:05}-{}.bin", index + 1, &sha256[..16])
}

/// Where shard `index` is written until its hash is known.
fn partial_shard_file_name(index: usize) -> String {
    format!("weights-{:05}.partial", index + 1)
}

/// Whether `name` is one the writer gives a shard, written ([`shard_file_name`]) or being
/// written: how a conversion's files are known before it has written its manifest.
pub fn is_shard_file_name(name: &str) -> bool {
    let Some(numbered) = name.strip_prefix("weights-") else { return false };
    let digits = numbered.bytes().take_while(u8::is_ascii_digit).count();
    let is_hash = |hash: &str| hash.len() == 16 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    digits >= 5
        && match &numbered[digits..] {
            ".partial" => true,
            rest => rest.strip_prefix('-').and_then(|rest| rest.strip_suffix(".bin")).is_some_and(is_hash),
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_are_known_written_or_partial() {
        let sha256 = hex(&Sha256::digest(b"shard"));
        for index in [0, 41, 99_999, 123_456] {
            assert!(is_shard_file_name(&shard_file_name(index, &sha256)));
            assert!(is_shard_file_name(&partial_shard_file_name(index)));
        }
        for name in [
            "weights-0001-0123456789abcdef.bin",
            "weights-00001-0123456789ABCDEF.bin",
            "weights-00001-0123456789abcde.bin",
            "weights-00001-0123456789abcdef.bin.txt",
            "weights-00001.bin",
            "weights-00001.partial.old",
            "weights-+0001.partial",
            "results.jsonl",
        ] {
            assert!(!is_shard_file_name(name), "{name}");
        }
    }
}
