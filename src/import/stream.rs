//! A GGUF file repacked as its bytes arrive in file order, as a download delivers them (the
//! browser's range requests), with the file's sha256 computed on the way. llama.cpp's split
//! files stream as one file, their parts laid end to end, each part's sha256 computed and
//! checked as its last byte arrives.
//!
//! The tensors are laid out in the order of their bytes in the file, so each part is
//! complete, repacked and handed on as soon as its last byte arrives, and the shards' hashes
//! follow in order. Only the bytes of the part being received are kept (one part, at most a
//! binding), never the file. Each file's hash is checked against the one its host publishes,
//! if any, once the file has arrived: a caller keeps nothing it was given before
//! [`GgufStream::finish`] succeeds.

use std::ops::Range;

use sha2::{Digest, Sha256};

use super::gguf::GgufPlan;
use super::policy::ConvertError;
use crate::format::hex;
use crate::format::layout::{ShardHashes, ShardLayout};
use crate::format::manifest::TensorEntry;
use crate::format::Manifest;

/// One part to repack: its tensor (in [`GgufStream::entries`] and the plan), its index there
/// and the file's bytes it needs.
struct PendingPart {
    entry: usize,
    tensor: usize,
    part: usize,
    source: Range<u64>,
}

/// The repacking of one GGUF file whose bytes arrive in order ([`GgufStream::push`]).
pub struct GgufStream {
    plan: GgufPlan,
    entries: Vec<TensorEntry>,
    /// Every part, in the order their bytes end in the file.
    parts: Vec<PendingPart>,
    next: usize,
    /// The file's bytes from `buffer_start` on that a pending part still needs.
    buffer: Vec<u8>,
    buffer_start: u64,
    received: u64,
    /// The files the stream is made of (a split model's parts, in order), each with where it
    /// ends in the stream.
    files: Vec<(StreamedFile, u64)>,
    /// The file being received, and its hash so far; the hashes of those before.
    file: usize,
    file_hash: Sha256,
    file_hashes: Vec<String>,
    shard_hashes: ShardHashes,
}

/// One file of a stream: a whole GGUF, or one part of a split model.
pub struct StreamedFile {
    pub size: u64,
    /// The sha256 its host (or the page) publishes, checked once the file has arrived.
    pub expected_sha256: Option<String>,
}

/// What a complete, verified stream made.
pub struct StreamedModel {
    /// The manifest of the parts handed on (its shards' hashes over their bytes).
    pub manifest: Manifest,
    /// The sha256 of each file (one, or a split model's parts in order), lowercase hex.
    pub sha256: Vec<String>,
    pub plan: GgufPlan,
}

impl GgufStream {
    /// A stream of the `files` `plan` was made from (one, or a split model's parts in order,
    /// as [`crate::format::gguf::GgufFile::join_splits`] joined them), its tensors laid out in
    /// file order in shards of at most `max_shard_bytes`.
    pub fn new(plan: GgufPlan, files: Vec<StreamedFile>, max_shard_bytes: u64) -> Self {
        let mut order: Vec<usize> = (0..plan.tensors.len()).collect();
        order.sort_by_key(|&t| plan.tensors[t].range.start);
        let mut layout = ShardLayout::new(max_shard_bytes);
        let mut entries = Vec::with_capacity(order.len());
        let mut parts = Vec::new();
        for (entry, &tensor) in order.iter().enumerate() {
            let planned = &plan.tensors[tensor];
            let placed = layout.place(&planned.name, planned.dtype, &planned.shape, planned.group_size());
            for (part, p) in placed.parts.iter().enumerate() {
                let source = planned.source_range(p.row_start..p.row_start + p.rows);
                parts.push(PendingPart { entry, tensor, part, source });
            }
            entries.push(placed);
        }
        Self {
            plan,
            entries,
            parts,
            next: 0,
            buffer: Vec::new(),
            buffer_start: 0,
            received: 0,
            files: files
                .into_iter()
                .scan(0, |end, file| {
                    *end += file.size;
                    Some((file, *end))
                })
                .collect(),
            file: 0,
            file_hash: Sha256::new(),
            file_hashes: Vec::new(),
            shard_hashes: ShardHashes::default(),
        }
    }

    /// The tensors' entries as they will be handed on: what to allocate before any weight
    /// arrives.
    pub fn entries(&self) -> &[TensorEntry] {
        &self.entries
    }

    pub fn plan(&self) -> &GgufPlan {
        &self.plan
    }

    /// The size of the files together, as the stream was told.
    pub fn file_size(&self) -> u64 {
        self.files.last().map_or(0, |(_, end)| *end)
    }

    /// The file's bytes received so far: where a resumed download starts.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Takes the file's next bytes; each part they complete is repacked and given to
    /// `on_part(entry, part index, packed bytes)`, in layout order.
    pub fn push(
        &mut self,
        bytes: &[u8],
        on_part: &mut dyn FnMut(&TensorEntry, usize, &[u8]),
    ) -> Result<(), ConvertError> {
        let end = self.received + bytes.len() as u64;
        if end > self.file_size() {
            return Err(ConvertError::FileSize { expected: self.file_size(), received: end });
        }
        self.hash_files(bytes)?;
        // Only bytes from the next pending part's start on are kept.
        let keep_from = self.parts.get(self.next).map_or(end, |p| p.source.start).max(self.received);
        if keep_from < end {
            if self.buffer.is_empty() {
                self.buffer_start = keep_from;
            }
            self.buffer.extend_from_slice(&bytes[(keep_from - self.received) as usize..]);
        }
        self.received = end;
        while let Some(pending) = self.parts.get(self.next).filter(|p| p.source.end <= self.received) {
            let local =
                (pending.source.start - self.buffer_start) as usize..(pending.source.end - self.buffer_start) as usize;
            let entry = &self.entries[pending.entry];
            let part = &entry.parts[pending.part];
            let words = self.plan.tensors[pending.tensor]
                .repack(part.row_start..part.row_start + part.rows, &self.buffer[local])?;
            let packed: &[u8] = bytemuck::cast_slice(&words);
            self.shard_hashes.append(part.shard, packed);
            on_part(entry, pending.part, packed);
            self.next += 1;
            let keep_from = self.parts.get(self.next).map_or(self.received, |p| p.source.start);
            let drop = (keep_from.min(self.received) - self.buffer_start) as usize;
            self.buffer.drain(..drop.min(self.buffer.len()));
            self.buffer_start += drop as u64;
        }
        Ok(())
    }

    /// Hashes `bytes`, the next of the stream (not past its end), into the files they belong
    /// to; a file they complete must have its expected sha256.
    fn hash_files(&mut self, mut bytes: &[u8]) -> Result<(), ConvertError> {
        let mut at = self.received;
        while !bytes.is_empty() {
            let (file, end) = &self.files[self.file];
            let (here, rest) = bytes.split_at((end - at).min(bytes.len() as u64) as usize);
            self.file_hash.update(here);
            at += here.len() as u64;
            bytes = rest;
            if at == *end {
                let sha256 = hex(&std::mem::take(&mut self.file_hash).finalize());
                if let Some(expected) = file.expected_sha256.as_ref().filter(|e| !e.eq_ignore_ascii_case(&sha256)) {
                    return Err(ConvertError::FileHash { expected: expected.clone(), found: sha256 });
                }
                self.file_hashes.push(sha256);
                self.file += 1;
            }
        }
        Ok(())
    }

    /// Ends the stream once every file has arrived (each checked against its expected sha256
    /// as it did: the Hub's LFS hash, a page's `sha256=`).
    pub fn finish(self) -> Result<StreamedModel, ConvertError> {
        if self.received != self.file_size() {
            return Err(ConvertError::FileSize { expected: self.file_size(), received: self.received });
        }
        let plan = self.plan;
        let manifest = Manifest::assemble(
            plan.architecture.clone(),
            plan.chat_template.clone(),
            plan.judge.family,
            self.entries,
            self.shard_hashes.finish(),
        )?;
        Ok(StreamedModel { manifest, sha256: self.file_hashes, plan })
    }
}
