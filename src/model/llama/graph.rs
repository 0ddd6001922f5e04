//! Building the forward pass once, at load, as dispatch lists.

use std::collections::{HashMap, VecDeque};

use super::{Head, LlamaModel};
use crate::format::schema::{GlobalWeight, LayerBias, LayerWeights};
use crate::format::Architecture;
use crate::kernels::{
    attention, choose_token, embedding, gather, linear, normed_linear, rmsnorm, rope_and_store, rope_table,
    AttentionMode, Dispatch, Epilogue, Gpu, GpuTensor, Heads, InputNorm, KvCache, LinearKernel, LinearTokens,
    MatmulTile, SplitScratch, StepBuffers,
};
use crate::model::plan::BufferPlan;
use crate::model::stack::{stack_projections, Projections};
use crate::model::{LoadError, LoadOptions, MAX_SEQUENCES};

/// Activations for up to `chunk` tokens, reused by every layer.
struct Activations {
    x: wgpu::Buffer,
    normed: wgpu::Buffer,
    /// Per token: the q/k/v projection's queries, keys and values.
    qkv: wgpu::Buffer,
    /// The rotated queries.
    q: wgpu::Buffer,
    attended: wgpu::Buffer,
    /// The gate projection, then SwiGLU's output (the up projection's epilogue).
    gate: wgpu::Buffer,
    /// A layer input gathered into an act-order weight's column order.
    gathered: wgpu::Buffer,
}

impl LlamaModel {
    /// Builds the forward pass over uploaded weights (see [`crate::model::ShardUploader`]).
    pub fn new(
        gpu: Gpu,
        architecture: Architecture,
        mut weights: HashMap<String, GpuTensor>,
        options: LoadOptions,
    ) -> Result<Self, LoadError> {
        let a = &architecture;
        let widest_ordered_input =
            weights.values().filter(|t| t.input_order.is_some()).map(|t| t.cols).max().unwrap_or(0);
        options.check(a, widest_ordered_input, &gpu)?;
        let mut options = options;
        options.sequences = options.sequences.clamp(1, MAX_SEQUENCES);
        // What remains in `weights` are the tensors outside the layers and the input orders.
        let layers: Vec<_> = (0..a.n_layers)
            .map(|layer| {
                let mut take =
                    |name: String| weights.remove(&name).expect("every layer tensor is present (checked at load)");
                let layer_weights = LayerWeights::from_fn(|weight| take(weight.name(layer)));
                let biases = a.qkv_bias.then(|| LayerBias::ALL.map(|bias| take(bias.name(layer))));
                stack_projections(&gpu, layer, layer_weights, biases)
            })
            .collect();
        let heads = Heads { n_heads: a.n_heads, n_kv_heads: a.n_kv_heads, head_dim: a.head_dim };
        // A layer's cache is one binding: as many sequence slots as it can hold, at least one.
        let limit = gpu.max_binding();
        let slot_bytes = KvCache::layer_bytes(heads, options.context, 1);
        if slot_bytes > limit {
            return Err(LoadError::ContextTooLong {
                context: options.context,
                sequences: 1,
                needed: slot_bytes,
                limit,
            });
        }
        options.sequences = options.sequences.min((limit / slot_bytes) as usize);
        let plan = BufferPlan::new(a, &options, widest_ordered_input);

        let act = Activations {
            x: gpu.storage("residual", plan.residual),
            normed: gpu.storage("normed", plan.normed),
            qkv: gpu.storage("qkv", plan.qkv),
            q: gpu.storage("q", plan.q),
            attended: gpu.storage("attended", plan.attended),
            gate: gpu.storage("gate", plan.gate),
            gathered: gpu.storage("gathered input", plan.gathered),
        };
        let step = StepBuffers::new(&gpu, plan.step_tokens);
        let tokens = gpu.storage("tokens", plan.tokens);
        let logits = gpu.storage("logits", plan.logits);
        let token_staging = std::array::from_fn(|_| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("token readback"),
                size: plan.tokens,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        let rope_buffer = gpu.storage_with(
            "rope table",
            bytemuck::cast_slice(&rope_table(options.context, &a.rope_inverse_frequencies(), a.rope_attention_factor)),
        );
        let caches: Vec<_> =
            (0..a.n_layers).map(|_| KvCache::new(&gpu, heads, options.context, options.sequences)).collect();
        let prefix_scratch = gpu.storage("shared prefix", plan.prefix_scratch);
        let split_scratch = SplitScratch::new(&gpu, heads, options.sequences);

        let w = |name: &str| &weights[name];
        let norm = |name: &str| &weights[name].parts[0].buffer;
        // `outputs` (each `(weight, y, epilogue)`) of rmsnorm(x) with norm weight `norm`.
        // On GPUs matrix-vector kernels apply the norm as they read x (`normed_linear`), so a
        // decode layer has no norm dispatch; the matmul, and an act-order weight (whose gather
        // reads the normed input), take it from a norm dispatch. So does every layer on a CPU
        // adapter, where each matvec workgroup's own pass over x costs more than a dispatch:
        // on lavapipe 128 greedy tokens of the test model took 30% longer folded (2026-12-07,
        // alternating, quiet 2-core machine).
        let normed_linears = |list: &mut Vec<Dispatch>,
                              norm: &wgpu::Buffer,
                              outputs: &[(&GpuTensor, &wgpu::Buffer, Epilogue)],
                              kernel: LinearKernel,
                              tokens: LinearTokens,
                              linears: &dyn Fn(&mut Vec<Dispatch>, &wgpu::Buffer)| {
            if gpu.cpu_adapter
                || matches!(kernel, LinearKernel::Matmul(_))
                || outputs.iter().any(|(weight, ..)| weight.input_order.is_some())
            {
                list.push(rmsnorm(&gpu, &step, &act.x, norm, &act.normed, a.hidden, a.norm_eps));
                linears(list, &act.normed);
            } else {
                let input_norm = InputNorm { weight: norm, eps: a.norm_eps };
                for &(weight, y, epilogue) in outputs {
                    list.extend(normed_linear(&gpu, &step, weight, &act.x, input_norm, y, kernel, tokens, epilogue));
                }
            }
        };
        // Dispatches of each layer of the last list `body` built.
        let layer_dispatches = std::cell::RefCell::new(Vec::new());
        let body = |kernel: LinearKernel| {
            let mut list = embedding(&gpu, &step, w(GlobalWeight::TokenEmbedding.name()), &tokens, &act.x);
            layer_dispatches.borrow_mut().clear();
            for (layer, cache) in layers.iter().zip(&caches) {
                let layer_start = list.len();
                // The weights reading one input, each `(weight, y, epilogue)`. An
                // act-order weight reads the input gathered into its column order, once
                // per distinct order (q/k/v, like gate/up, normally share one).
                let linears =
                    |list: &mut Vec<Dispatch>, x: &wgpu::Buffer, outputs: &[(&GpuTensor, &wgpu::Buffer, Epilogue)]| {
                        let mut gathered_order = None;
                        for &(weight, y, epilogue) in outputs {
                            let input = match weight.input_order.as_deref() {
                                None => x,
                                Some(order) => {
                                    if gathered_order != Some(order) {
                                        list.push(gather(&gpu, &step, w(order), x, &act.gathered));
                                        gathered_order = Some(order);
                                    }
                                    &act.gathered
                                }
                            };
                            list.extend(linear(&gpu, &step, weight, input, y, kernel, LinearTokens::Each, epilogue));
                        }
                    };
                let attention_norm = &layer.attention_norm.parts[0].buffer;
                // Stacked or apart, the projections write each token's queries, keys and
                // values side by side (see `stack_projections`).
                let qkv: Vec<_> = match &layer.qkv {
                    Projections::Stacked(qkv) => vec![(qkv, &act.qkv, Epilogue::Store)],
                    Projections::Apart(parts) => parts.iter().map(|part| (part, &act.qkv, Epilogue::Store)).collect(),
                };
                normed_linears(&mut list, attention_norm, &qkv, kernel, LinearTokens::Each, &|list, normed| {
                    linears(list, normed, &qkv)
                });
                list.push(rope_and_store(
                    &gpu,
                    &step,
                    &rope_buffer,
                    heads,
                    &act.qkv,
                    layer.qkv_bias.as_ref(),
                    &act.q,
                    cache,
                ));
                let attention_mode = match kernel {
                    LinearKernel::Matvec | LinearKernel::MatvecOneToken => AttentionMode::Decode(&split_scratch),
                    LinearKernel::Matmul(_) => AttentionMode::Prefill,
                };
                list.extend(attention(&gpu, &step, heads, attention_mode, &act.q, cache, &act.attended));
                linears(&mut list, &act.attended, &[(&layer.wo, &act.x, Epilogue::Accumulate)]);
                let feed_forward_norm = &layer.feed_forward_norm.parts[0].buffer;
                let gate_up: Vec<_> = match &layer.gate_up {
                    Projections::Stacked(gate_up) => vec![(gate_up, &act.gate, Epilogue::GateUp)],
                    // The up projection's epilogue applies SwiGLU to the gate projection in place.
                    Projections::Apart([gate, up]) => {
                        vec![(gate, &act.gate, Epilogue::Store), (up, &act.gate, Epilogue::SwiGlu)]
                    }
                };
                normed_linears(&mut list, feed_forward_norm, &gate_up, kernel, LinearTokens::Each, &|list, normed| {
                    linears(list, normed, &gate_up)
                });
                linears(&mut list, &act.gate, &[(&layer.down, &act.x, Epilogue::Accumulate)]);
                layer_dispatches.borrow_mut().push(list.len() - layer_start);
            }
            list
        };
        let decode = body(LinearKernel::Matvec);
        let prefill = body(LinearKernel::Matmul(MatmulTile::for_adapter(&gpu)));
        let decode_one = body(LinearKernel::MatvecOneToken);
        let decode_layer_dispatches = layer_dispatches.take();
        let lm_head = GlobalWeight::lm_head(a).name();
        let head = |last_token_only: bool, greedy: bool| {
            let (kernel, which_tokens) = match last_token_only {
                true => (LinearKernel::MatvecOneToken, LinearTokens::Last),
                false => (LinearKernel::Matvec, LinearTokens::Choosing),
            };
            let mut list = Vec::new();
            let output_norm = norm(GlobalWeight::OutputNorm.name());
            let weight = w(lm_head);
            normed_linears(
                &mut list,
                output_norm,
                &[(weight, &logits, Epilogue::Store)],
                kernel,
                which_tokens,
                &|list, normed| {
                    list.extend(linear(&gpu, &step, weight, normed, &logits, kernel, which_tokens, Epilogue::Store))
                },
            );
            list.push(choose_token(&gpu, &step, &logits, &tokens, a.vocab, greedy, last_token_only));
            list
        };
        let head_last = Head { greedy: head(true, true), sampled: head(true, false) };
        let head_each = Head { greedy: head(false, true), sampled: head(false, false) };
        gpu.check()?;
        Ok(Self {
            gpu,
            architecture,
            step,
            tokens,
            logits,
            token_staging,
            pending: VecDeque::new(),
            next_staging: 0,
            decode,
            decode_one,
            decode_layer_dispatches,
            prefill,
            head_last,
            head_each,
            layers,
            _weights: weights,
            caches,
            prefix_scratch,
            _rope: rope_buffer,
            positions: vec![0; options.sequences],
            options,
        })
    }
}
