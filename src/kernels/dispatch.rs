//! Recorded kernel launches. A forward pass is a list of [`Dispatch`]es built once at
//! load time (pipelines and bind groups included) and replayed into one compute pass
//! per step; only the [`StepBuffers`] change between submissions.

use super::uniform::uniform_struct;
use super::Gpu;

uniform_struct! {
    /// Per-submission values every kernel can read (`Step` in shaders/common.wgsl).
    #[derive(Debug, Default)]
    pub struct Step {
        pub n_tokens: u32,
        pub seed: u32,
        pub temperature: f32,
        pub top_p: f32,
        /// The leading tokens that choose a next token ([`LinearTokens::Choosing`](super::LinearTokens));
        /// the others only extend their sequence's context.
        pub choosing: u32,
    }
}

/// Where one token of a step belongs (`TokenPlace` in shaders/common.wgsl): the sequence
/// (its KV cache slot) and its position in that sequence. A prefill chunk's tokens share a
/// slot at consecutive positions; a batched decode step has one token per decoding sequence
/// and may add the last tokens of prompts, several of one slot at consecutive positions.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TokenPlace {
    pub slot: u32,
    pub position: u32,
}

impl TokenPlace {
    /// `n_tokens` consecutive tokens of one sequence, the first at `position`.
    pub fn run(slot: usize, position: usize, n_tokens: usize) -> Vec<TokenPlace> {
        (position..position + n_tokens).map(|p| TokenPlace { slot: slot as u32, position: p as u32 }).collect()
    }
}

/// The buffers a step writes before it is submitted: the [`Step`] uniform and the places
/// of its tokens.
pub struct StepBuffers {
    pub uniform: wgpu::Buffer,
    pub places: wgpu::Buffer,
}

impl StepBuffers {
    /// Room for steps of up to `max_tokens` tokens.
    pub fn new(gpu: &Gpu, max_tokens: usize) -> Self {
        Self {
            uniform: gpu.uniform("step", &Step::default()),
            places: gpu.storage("token places", (max_tokens * std::mem::size_of::<TokenPlace>()) as u64),
        }
    }

    /// Queues the next step's values; `places` has one entry per token.
    pub fn write(&self, gpu: &Gpu, step: &Step, places: &[TokenPlace]) {
        debug_assert_eq!(places.len(), step.n_tokens as usize);
        gpu.queue.write_buffer(&self.uniform, 0, bytemuck::bytes_of(step));
        gpu.queue.write_buffer(&self.places, 0, bytemuck::cast_slice(places));
    }
}

/// Most workgroups one dispatch dimension may have (WebGPU's guaranteed limit).
pub const MAX_WORKGROUPS_PER_DIM: u32 = 65535;

/// How many workgroups a dispatch needs, given the step's token count.
#[derive(Clone, Copy, Debug)]
pub enum Workgroups {
    /// A fixed grid.
    Fixed(u32, u32),
    /// `x` workgroups for each token (y = token).
    PerToken(u32),
    /// `x` workgroups for each tile of `tile` tokens.
    PerTokenTile { x: u32, tile: u32 },
    /// One invocation per item, `items_per_token` items per token, in workgroups of
    /// `workgroup` invocations, folded into two dimensions when wide.
    Flat { items_per_token: u32, workgroup: u32 },
    /// A number of workgroups, folded into two dimensions when wide.
    Groups(u32),
}

impl Workgroups {
    pub fn grid(self, n_tokens: u32) -> (u32, u32) {
        match self {
            Workgroups::Fixed(x, y) => (x, y),
            Workgroups::PerToken(x) => (x, n_tokens),
            Workgroups::PerTokenTile { x, tile } => (x, n_tokens.div_ceil(tile)),
            Workgroups::Flat { items_per_token, workgroup } => fold((n_tokens * items_per_token).div_ceil(workgroup)),
            Workgroups::Groups(count) => fold(count),
        }
    }
}

fn fold(count: u32) -> (u32, u32) {
    if count <= MAX_WORKGROUPS_PER_DIM {
        (count, 1)
    } else {
        let y = count.div_ceil(MAX_WORKGROUPS_PER_DIM);
        (count.div_ceil(y), y)
    }
}

pub struct Dispatch {
    /// What the launch computes, for profiles: the kernel, and for weight kernels the
    /// weight dtype and role (`matvec q4 ffn_down`).
    pub label: String,
    /// Weight bytes the launch reads (0 for kernels without weights): bandwidth in profiles.
    pub weight_bytes: u64,
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub workgroups: Workgroups,
}

impl Dispatch {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, n_tokens: u32) {
        let (x, y) = self.workgroups.grid(n_tokens);
        if x == 0 || y == 0 {
            return;
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(x, y, 1);
    }
}

/// Records `dispatches` in order into one compute pass of `encoder`.
pub fn record_all<'a>(
    encoder: &mut wgpu::CommandEncoder,
    dispatches: impl IntoIterator<Item = &'a Dispatch>,
    n_tokens: u32,
) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
    for dispatch in dispatches {
        dispatch.record(&mut pass, n_tokens);
    }
}
