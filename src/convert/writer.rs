//! Writes a model directory: tensors split into binding-sized parts, packed into
//! shards of bounded size, each hashed as it is written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::io_error_at;
use crate::format::layout::{ShardHashes, ShardLayout};
use crate::format::manifest::{Manifest, TensorEntry, MANIFEST_FILE, MAX_MANIFEST_BYTES};
use crate::format::{Architecture, ChatTemplate, DType, JudgeFamily};

pub struct ModelWriter {
    dir: PathBuf,
    layout: ShardLayout,
    tensors: Vec<TensorEntry>,
    hashes: ShardHashes,
    open: Option<OpenShard>,
}

struct OpenShard {
    file: BufWriter<File>,
    /// Where the shard is written until its hash (part of its final name) is known.
    path: PathBuf,
}

impl ModelWriter {
    pub fn create(dir: &Path, max_shard_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io_error_at(dir, e))?;
        Ok(Self {
            dir: dir.to_owned(),
            layout: ShardLayout::new(max_shard_bytes),
            tensors: Vec::new(),
            hashes: ShardHashes::default(),
            open: None,
        })
    }

    /// Writes one tensor, its parts where [`ShardLayout::place`] puts them. `encode` returns
    /// the packed words of a row range (see [`DType`]); it is called once per part so a
    /// large tensor never needs to exist packed in memory all at once.
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
        let entry = self.layout.place(name, dtype, shape, group_size);
        for part in &entry.parts {
            let words = encode(part.row_start..part.row_start + part.rows)?;
            assert_eq!(words.len() as u64 * 4, part.length, "tensor {name}: encoder returned a part of the wrong size");
            self.append(part.shard, bytemuck::cast_slice(&words))?;
        }
        self.tensors.push(entry);
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

    fn append(&mut self, shard: usize, bytes: &[u8]) -> std::io::Result<()> {
        if let Some(closed) = self.hashes.append(shard, bytes) {
            self.close_shard(&closed.file)?;
        }
        if self.open.is_none() {
            let path = self.dir.join(partial_shard_file_name(shard));
            let file = BufWriter::new(File::create(&path).map_err(|e| io_error_at(&path, e))?);
            self.open = Some(OpenShard { file, path });
        }
        let open = self.open.as_mut().expect("a shard is open");
        open.file.write_all(bytes).map_err(|e| io_error_at(&open.path, e))
    }

    /// Flushes the open shard and gives it its final name.
    fn close_shard(&mut self, file: &str) -> std::io::Result<()> {
        if let Some(mut shard) = self.open.take() {
            shard.file.flush().map_err(|e| io_error_at(&shard.path, e))?;
            std::fs::rename(&shard.path, self.dir.join(file)).map_err(|e| io_error_at(&shard.path, e))?;
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
        let shards = std::mem::take(&mut self.hashes).finish();
        if let Some(last) = shards.last() {
            self.close_shard(&last.file)?;
        }
        let manifest = Manifest::assemble(architecture, chat_template, judge, self.tensors, shards)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
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

/// Where shard `index` is written until its hash is known.
fn partial_shard_file_name(index: usize) -> String {
    format!("weights-{:05}.partial", index + 1)
}

/// Whether `name` is one the writer gives a shard, written ([`crate::format::layout::shard_file_name`]) or being
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
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::format::hex;
    use crate::format::layout::shard_file_name;

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
