//! Causal grouped-query attention over an f16 KV cache (shaders/attention.wgsl).
//!
//! A workgroup attends a tile of query rows that share one KV head, so each key and value
//! read serves every query head of a GQA group and, in prefill, several tokens. A decode
//! step has only `n_heads` rows: its kernel is specialized per model (rows and head size as
//! pipeline constants) and splits the keys among workgroups as well (flash-decoding) so that
//! a GPU is filled, and a second pass merges the splits.

use super::uniform::uniform_struct;
use super::variants::{
    ATTENTION_DECODE_ROWS, ATTENTION_KEYS, ATTENTION_MAX_ACC, ATTENTION_MAX_ROWS, ATTENTION_Q_PAIRS,
};
use super::{Dispatch, Gpu, PipelineKey, Shader, StepBuffers, Workgroups};

/// Invocations per attention workgroup (`WG` in shaders/attention.wgsl): one key each.
const WORKGROUP: usize = ATTENTION_KEYS as usize;

/// Workgroups a decode step aims for on a discrete GPU (several per compute unit of a large
/// one) and on an integrated one. WebGPU reports no compute-unit count, so the adapter's type
/// stands in for it; the context then decides how many of a row's key ranges get keys
/// (`splits_in_use` in shaders/attention.wgsl: ATTENTION_SPLIT_KEYS keys or more each), and
/// the others exit at once.
const DECODE_WORKGROUPS_DISCRETE: usize = 128;
const DECODE_WORKGROUPS_INTEGRATED: usize = 32;
/// At most this many key ranges per row (each costs a partial row in the merge).
const MAX_SPLITS: usize = 32;

uniform_struct! {
    pub(super) struct Params {
        n_heads: u32,
        n_kv_heads: u32,
        head_dim: u32,
        scale: f32,
        heads_per_block: u32,
        tokens_per_tile: u32,
        splits: u32,
        slot_positions: u32,
    }
}

/// Attention shapes.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl Heads {
    /// Query rows one workgroup holds: bounded by the staged queries and by the value
    /// accumulators each invocation keeps (its rows times its pair chunks).
    fn max_rows(self) -> usize {
        let pairs = self.head_dim / 2;
        let row_step = (WORKGROUP / pairs).max(1);
        let pair_chunks = pairs.div_ceil(WORKGROUP);
        let by_accumulators = ATTENTION_MAX_ACC as usize / pair_chunks * row_step;
        (ATTENTION_MAX_ROWS as usize).min(ATTENTION_Q_PAIRS as usize / pairs).min(by_accumulators)
    }

    /// The query heads of one KV group that share a prefill workgroup.
    fn heads_per_block(self) -> usize {
        self.group_divisor_within(self.max_rows())
    }

    /// The largest divisor of the KV group (query heads per KV head) within `rows`.
    fn group_divisor_within(self, rows: usize) -> usize {
        let group = self.n_heads / self.n_kv_heads;
        (1..=group.min(rows)).rev().find(|d| group.is_multiple_of(*d)).unwrap_or(1)
    }

    /// The query heads of one KV group that share a decode workgroup.
    fn decode_heads_per_block(self) -> usize {
        self.group_divisor_within(ATTENTION_DECODE_ROWS as usize)
    }

    /// Key ranges a decode row may be split into on `gpu` (a long enough context uses them
    /// all). A CPU adapter (lavapipe) runs a few workgroups at a time, which the head blocks
    /// already fill: there the splits and their merge only cost time (measured under load:
    /// decode attention 27% slower with them).
    fn decode_splits(self, gpu: &Gpu) -> usize {
        if gpu.cpu_adapter {
            return 1;
        }
        let workgroups = match gpu.adapter.device_type {
            wgpu::DeviceType::IntegratedGpu => DECODE_WORKGROUPS_INTEGRATED,
            _ => DECODE_WORKGROUPS_DISCRETE,
        };
        let blocks = self.n_heads / self.decode_heads_per_block();
        workgroups.div_ceil(blocks).clamp(1, MAX_SPLITS)
    }
}

/// One layer's KV cache: `n_kv_heads x head_dim` f16 values per position, a fixed slot of
/// `context` positions (rounded up to whole key tiles) per sequence decoded together. Fixed
/// slots rather than pages of a shared pool: a sequence's keys stay contiguous, so attention
/// walks them without an indirection per key tile, and a judge's sequences (prompt plus
/// critique) have a known bound; a shared prompt prefix is copied between slots in one range
/// copy per buffer. Values are position-major; keys are quad-major (four f16 pairs, 16 bytes)
/// within each tile of [`ATTENTION_KEYS`] positions, so the invocations that read a tile's
/// keys, one key each, load a 16-byte quad each from consecutive quads (`key_quad` in
/// shaders/common.wgsl). A head's pairs are whole quads: head_dim is a multiple of 8.
pub struct KvCache {
    pub k: wgpu::Buffer,
    pub v: wgpu::Buffer,
    /// Positions per slot: whole key tiles.
    pub context: usize,
}

impl KvCache {
    pub fn new(gpu: &Gpu, heads: Heads, context: usize, slots: usize) -> Self {
        let bytes = Self::layer_bytes(heads, context, slots);
        let context = Self::slot_positions(context);
        Self { k: gpu.storage("k cache", bytes), v: gpu.storage("v cache", bytes), context }
    }

    /// Positions a slot for `context` positions holds: whole key tiles.
    pub fn slot_positions(context: usize) -> usize {
        context.next_multiple_of(WORKGROUP)
    }

    /// Bytes of one layer's key (or value) buffer.
    pub fn layer_bytes(heads: Heads, context: usize, slots: usize) -> u64 {
        (slots * Self::slot_positions(context)) as u64 * Self::position_bytes(heads)
    }

    /// Bytes at the start of a slot of the keys and of the values that hold its first
    /// `len` positions: whole key tiles, whole value positions.
    pub fn prefix_bytes(heads: Heads, len: usize) -> [u64; 2] {
        [Self::slot_positions(len), len].map(|positions| positions as u64 * Self::position_bytes(heads))
    }

    /// Bytes one position takes in one layer's key (or value) buffer.
    pub fn position_bytes(heads: Heads) -> u64 {
        heads.n_kv_heads as u64 * heads.head_dim as u64 * 2
    }
}

/// Where a decode step's key ranges leave their partial results before the merge; one per
/// model, reused by every layer (the layers run one after another), with room for a batch
/// of `tokens` sequences.
pub struct SplitScratch {
    splits: usize,
    acc: wgpu::Buffer,
    stats: wgpu::Buffer,
}

impl SplitScratch {
    /// As many key ranges as suit the adapter.
    pub fn new(gpu: &Gpu, heads: Heads, tokens: usize) -> Self {
        Self::with_splits(gpu, heads, heads.decode_splits(gpu), tokens)
    }

    /// A chosen number of key ranges (tests take the merge path on any adapter).
    pub fn with_splits(gpu: &Gpu, heads: Heads, splits: usize, tokens: usize) -> Self {
        let splits = splits.clamp(1, MAX_SPLITS);
        let [acc, stats] = Self::buffer_bytes(heads, splits, tokens);
        Self {
            splits,
            acc: gpu.storage("attention split sums", acc),
            stats: gpu.storage("attention split max and sum", stats),
        }
    }

    /// What the scratch takes on any adapter, at most.
    pub fn max_bytes(heads: Heads, tokens: usize) -> u64 {
        Self::buffer_bytes(heads, MAX_SPLITS, tokens).into_iter().map(super::storage_size).sum()
    }

    fn buffer_bytes(heads: Heads, splits: usize, tokens: usize) -> [u64; 2] {
        let rows = (splits * tokens * heads.n_heads) as u64;
        [rows * heads.head_dim as u64 * 4, rows * 8]
    }
}

/// How a step's queries are spread over workgroups.
#[derive(Clone, Copy)]
pub enum AttentionMode<'a> {
    /// Tiles of tokens; each workgroup walks all of its rows' keys.
    Prefill,
    /// One token per sequence: a kernel specialized to the model's heads; the keys are
    /// split among workgroups, then merged (where the adapter gains from it).
    Decode(&'a SplitScratch),
}

/// Attends the step's queries `q` over the cache, which holds the step's own keys and
/// values already ([`super::rope_and_store`]): `out` gets one `n_heads x head_dim` row per
/// token.
pub fn attention(
    gpu: &Gpu,
    step: &StepBuffers,
    heads: Heads,
    mode: AttentionMode,
    q: &wgpu::Buffer,
    cache: &KvCache,
    out: &wgpu::Buffer,
) -> Vec<Dispatch> {
    let (heads_per_block, tokens_per_tile, splits) = match mode {
        AttentionMode::Prefill => (heads.heads_per_block(), heads.max_rows() / heads.heads_per_block(), 1),
        AttentionMode::Decode(scratch) => (heads.decode_heads_per_block(), 1, scratch.splits),
    };
    let params = gpu.uniform(
        "attention params",
        &Params {
            n_heads: heads.n_heads as u32,
            n_kv_heads: heads.n_kv_heads as u32,
            head_dim: heads.head_dim as u32,
            scale: 1.0 / (heads.head_dim as f32).sqrt(),
            heads_per_block: heads_per_block as u32,
            tokens_per_tile: tokens_per_tile as u32,
            splits: splits as u32,
            slot_positions: cache.context as u32,
        },
    );
    let blocks = (heads.n_heads / heads_per_block) as u32;
    let cached = [(0, &step.uniform), (1, &params), (2, q), (5, &cache.k), (6, &cache.v), (10, &step.places)];
    let scratch = match mode {
        AttentionMode::Prefill => {
            let attend = gpu.pipeline(PipelineKey::new(Shader::Attention, "attend"));
            return vec![Dispatch {
                label: "attention".into(),
                weight_bytes: 0,
                bind_group: gpu.bind(&attend, &[&cached[..], &[(7, out)]].concat()),
                pipeline: attend,
                workgroups: Workgroups::PerTokenTile { x: blocks, tile: tokens_per_tile as u32 },
            }];
        }
        AttentionMode::Decode(scratch) => scratch,
    };
    let attend = gpu.pipeline(
        PipelineKey::new(Shader::Attention, "attend_decode")
            .override_constant("DECODE_ROWS", heads_per_block as u32)
            .override_constant("HEAD_QUADS", (heads.head_dim / 8) as u32),
    );
    let bindings = [&cached[..], &[(7, out), (8, &scratch.acc), (9, &scratch.stats)]].concat();
    let mut dispatches = vec![Dispatch {
        label: "attention".into(),
        weight_bytes: 0,
        bind_group: gpu.bind(&attend, &bindings),
        pipeline: attend,
        workgroups: Workgroups::PerTokenTile { x: blocks * splits as u32, tile: 1 },
    }];
    if splits > 1 {
        let combine = gpu.pipeline(PipelineKey::new(Shader::Attention, "combine_splits"));
        dispatches.push(Dispatch {
            label: "attention merge".into(),
            weight_bytes: 0,
            bind_group: gpu.bind(
                &combine,
                &[
                    (0, &step.uniform),
                    (1, &params),
                    (7, out),
                    (8, &scratch.acc),
                    (9, &scratch.stats),
                    (10, &step.places),
                ],
            ),
            pipeline: combine,
            workgroups: Workgroups::PerToken(heads.n_heads as u32),
        });
    }
    dispatches
}
