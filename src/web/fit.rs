//! Will the model fit this adapter? Checked from the manifest alone, before a byte of
//! weights is downloaded: per-buffer limits exactly, total GPU memory as an estimate
//! (WebGPU does not say how much memory an adapter has; the allocation itself, made up
//! front by the loader, is the real test and this estimate explains its failure).

use crate::format::{Architecture, Manifest};
use crate::kernels::storage_size;
use crate::model::{BufferPlan, LoadOptions, MAX_SEQUENCES};

use super::WebError;

/// What the loaded model will allocate on the GPU, in bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// What the estimate is for: KV cache positions per sequence, the prefill chunk, and the
    /// sequences decoded together (the KV cache has a slot of `context` positions for each).
    pub options: LoadOptions,
    /// Every tensor part's buffer.
    pub weights: u64,
    /// Keys and values of every layer and sequence slot, f16.
    pub kv_cache: u64,
    /// One layer's key (or value) buffer, all slots: the largest buffer the cache binds.
    pub kv_layer_buffer: u64,
    /// Per-chunk activations, logits, the RoPE table and attention's scratch.
    pub activations: u64,
    /// The largest tensor part and its tensor's name.
    pub largest_part: (String, u64),
}

impl Estimate {
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.activations
    }

    /// "model needs 11.0 GiB (weights 7.6 GiB + KV cache 3.1 GiB at context 4096 +
    /// activations 12.5 MiB)", the KV cache "for 2 sequences" when batched.
    pub fn describe(&self) -> String {
        let batch = match self.options.sequences {
            1 => String::new(),
            n => format!(" for {n} sequences"),
        };
        format!(
            "model needs {} (weights {} + KV cache {} at context {}{batch} + activations {})",
            bytes(self.total()),
            bytes(self.weights),
            bytes(self.kv_cache),
            self.options.context,
            bytes(self.activations)
        )
    }
}

/// The sequences to decode together (KV cache slots of `options.context` positions, its
/// `sequences` aside): `requested`
/// (1 to [`MAX_SEQUENCES`]) or by default as many as keep the whole KV cache within the
/// larger of one slot's cache and the weights (so batching at most doubles what a model
/// beyond its one-sequence cache needs: WebGPU does not say how much memory there is), and
/// never more than one layer's cache binding holds (`max_binding`; at least one slot, which
/// [`check_limits`] refuses with a context to try when even that does not fit).
pub fn batch_size(manifest: &Manifest, options: &LoadOptions, requested: Option<usize>, max_binding: u64) -> usize {
    let one = estimate(manifest, LoadOptions { sequences: 1, ..options.clone() });
    let binding_holds = (max_binding / one.kv_layer_buffer.max(1)) as usize;
    let wanted = requested.unwrap_or_else(|| (one.weights.max(one.kv_cache) / one.kv_cache.max(1)) as usize);
    wanted.min(binding_holds).clamp(1, MAX_SEQUENCES)
}

pub fn estimate(manifest: &Manifest, options: LoadOptions) -> Estimate {
    let a = &manifest.architecture;
    let mut weights = 0;
    let mut largest_part = (String::new(), 0);
    for tensor in &manifest.tensors {
        for part in &tensor.parts {
            weights += storage_size(part.length);
            if part.length > largest_part.1 {
                largest_part = (tensor.name.clone(), part.length);
            }
        }
    }
    let plan = BufferPlan::new(a, &options, manifest.widest_ordered_input());
    Estimate {
        options,
        weights,
        kv_cache: plan.kv_cache_bytes(),
        kv_layer_buffer: storage_size(plan.kv_layer),
        activations: plan.activation_bytes(),
        largest_part,
    }
}

/// `batchSize` as a load asks for it: 1 to [`MAX_SEQUENCES`].
pub fn requested_batch_size(requested: Option<usize>) -> Result<Option<usize>, WebError> {
    match requested {
        Some(n) if n > MAX_SEQUENCES => Err(WebError::InvalidInput(format!(
            "batchSize {n} exceeds the {MAX_SEQUENCES} sequences the engine decodes together"
        ))),
        other => Ok(other),
    }
}

/// The context a load may ask for: `requested` (default: the model's), at most the
/// model's own.
pub fn context_length(architecture: &Architecture, requested: Option<usize>) -> Result<usize, WebError> {
    match requested {
        None => Ok(architecture.context_length),
        Some(0) => Err(WebError::InvalidInput("contextLength must be at least 1".into())),
        Some(n) if n > architecture.context_length => Err(WebError::InvalidInput(format!(
            "contextLength {n} exceeds the model's context of {} tokens",
            architecture.context_length
        ))),
        Some(n) => Ok(n),
    }
}

/// Checks the adapter's per-buffer limits: every tensor part must fit one binding and
/// one buffer, and so must a layer's KV cache ([`batch_size`] already chose only as many
/// slots as one binding holds, so this refuses a context too long for even one).
pub fn check_limits(
    estimate: &Estimate,
    architecture: &Architecture,
    max_binding: u64,
    max_buffer: u64,
) -> Result<(), WebError> {
    let limit = max_binding.min(max_buffer);
    let (tensor, part) = &estimate.largest_part;
    if *part > limit {
        return Err(WebError::DoesNotFit(format!(
            "tensor {tensor} has a {} part, but this adapter binds at most {} per buffer \
             (maxStorageBufferBindingSize {max_binding}, maxBufferSize {max_buffer}); convert the model with \
             smaller shards (webjudge convert --shard-mb) or use another GPU",
            bytes(*part),
            bytes(limit)
        )));
    }
    if estimate.kv_layer_buffer > limit {
        let fits = limit / (architecture.kv_dim() as u64 * 2);
        return Err(WebError::DoesNotFit(format!(
            "the KV cache at context {} needs {} per layer buffer, but this adapter binds at most {}; \
             try contextLength: {}",
            estimate.options.context,
            bytes(estimate.kv_layer_buffer),
            bytes(limit),
            round_context(fits as usize)
        )));
    }
    Ok(())
}

/// The refusal when the adapter could not allocate the model's buffers: which part
/// failed, and the context to try next (half, while the KV cache is what failed; the
/// loader has already come down to one sequence before refusing).
pub fn out_of_memory(estimate: &Estimate, weights_failed: bool, adapter_error: &str) -> WebError {
    let advice = if weights_failed || estimate.options.context <= SUGGESTED_CONTEXT_STEP {
        "the weights alone do not fit: no context length helps; use a GPU with more memory or a smaller model"
            .to_string()
    } else {
        format!("try contextLength: {}", round_context(estimate.options.context / 2))
    };
    WebError::DoesNotFit(format!(
        "{}; the adapter could not allocate it ({adapter_error}); {advice}",
        estimate.describe()
    ))
}

/// Contexts suggested to users are multiples of this when they can be.
const SUGGESTED_CONTEXT_STEP: usize = 128;

fn round_context(context: usize) -> usize {
    match context < SUGGESTED_CONTEXT_STEP {
        true => context.max(1),
        false => context / SUGGESTED_CONTEXT_STEP * SUGGESTED_CONTEXT_STEP,
    }
}

/// `1.5 GiB` or `12.3 MiB`.
pub fn bytes(n: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    const GIB: f64 = (1u64 << 30) as f64;
    if n as f64 >= GIB {
        format!("{:.1} GiB", n as f64 / GIB)
    } else {
        format!("{:.1} MiB", n as f64 / MIB)
    }
}
