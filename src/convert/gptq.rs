//! AutoGPTQ checkpoints: 4-bit linear layers as `qweight`/`qzeros`/`scales`/`g_idx`
//! tensors (the format of Auto-J-13B's GPTQ build), decoded here for the Hugging Face
//! importer ([`super::hf_import`], which stays the one driver).
//!
//! Format (a linear layer `y = W x` with `out` outputs and `inputs` inputs, in groups of
//! `group_size` inputs, `groups = ceil(inputs / group_size)`, one group when the size is -1):
//!
//! - `qweight`: I32 `[inputs/8, out]`; the 4-bit code of `W[n][k]` sits at bits
//!   `4*(k%8)..` of `qweight[k/8][n]` (packed along the input dimension);
//! - `qzeros`: I32 `[groups, out/8]`; the zero point of output `n` in group `g` sits at
//!   bits `4*(n%8)..` of `qzeros[g][n/8]` (packed along the output dimension), stored one
//!   less than the zero point used;
//! - `scales`: F16 `[groups, out]`;
//! - `g_idx`: I32 `[inputs]`, the group of each input column (act-order, `desc_act`,
//!   permutes it; without it column `k` is in group `k / group_size`);
//! - an optional `bias` `[out]`, which LLaMA layers do not have (all zeros is accepted).
//!
//! `W[n][k] = scales[g][n] * (q[k][n] - (qzeros[g][n] + 1))` with `g = g_idx[k]`.
//!
//! When the group size suits the engine (a multiple of 32 dividing `inputs`), a layer maps
//! onto the engine's q4 layout without requantizing: the scale is kept and the offset is
//! `-scale * (zero + 1)`, exact in f16 when `zero + 1` is 8 (symmetric GPTQ: a
//! power-of-two multiple) and otherwise within f16's rounding of the offset (half a unit
//! in its last place, at most 2^-11 of its magnitude). With `g_idx` in the plain order the
//! nibble order of a `qweight` word is the q4 layout's, so rows are transposed words.
//! Under act-order (`g_idx` permuted) the columns are written sorted by group (stably,
//! [`GptqPlan::column_order`]), so each group becomes a contiguous run of q4 blocks, and
//! the importer records that order for the engine to gather the input by (see
//! `src/kernels/gather.rs`); this needs every group to hold `group_size` columns, as
//! AutoGPTQ's act-order makes them. Other layers are dequantized to f32
//! ([`GptqWeights::rows_f32`], exact: an f16 scale times a small integer) for the importer
//! to requantize, as is any layer when the user asks for another quantization.

use std::collections::BTreeMap;
use std::path::Path;

use half::f16;
use serde_json::Value;

use super::checkpoint::{Checkpoint, CheckpointDType, CheckpointError, CheckpointTensor};
use crate::format::checked_file::{self, ReadError};
use crate::format::{pack_q4_words, BLOCK_VALUES};

/// AutoGPTQ's quantization settings file.
pub const CONFIG_FILE: &str = "quantize_config.json";

/// The settings of a GPTQ checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GptqConfig {
    /// Input columns per group; `None` for one group per row (`group_size: -1`).
    pub group_size: Option<usize>,
    /// Act-order: `g_idx` may permute the groups.
    pub desc_act: bool,
    /// The weights file's stem (`model_file_base_name`), when the config names one.
    pub file_stem: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum GptqError {
    #[error("{source_name}: {problem}")]
    Config { source_name: String, problem: String },
    #[error("{source_name}: {bits}-bit GPTQ is not supported; webjudge reads 4-bit checkpoints")]
    Bits { source_name: String, bits: u64 },
    #[error("GPTQ layer {layer}: tensor {layer}.{part} is missing")]
    Missing { layer: String, part: &'static str },
    #[error(
        "tensor {tensor}: shape {found:?}, expected {expected:?} for {out} outputs x {inputs} inputs in {groups} groups"
    )]
    Shape { tensor: String, found: Vec<usize>, expected: Vec<usize>, out: usize, inputs: usize, groups: usize },
    #[error("tensor {tensor}: dtype {found:?}, GPTQ stores it as {expected}")]
    DType { tensor: String, found: CheckpointDType, expected: &'static str },
    #[error("tensor {tensor}: input column {column} is in group {group}, outside the {groups} groups")]
    GroupIndex { tensor: String, column: usize, group: i64, groups: usize },
    #[error("tensor {tensor}: output {row} has bias {value}; LLaMA linear layers have none")]
    Bias { tensor: String, row: usize, value: f32 },
    #[error("tensor {tensor}: output {row}, group {group}: scale {scale} times zero point {zero} overflows f16")]
    Offset { tensor: String, row: usize, group: usize, scale: f32, zero: u32 },
    #[error(transparent)]
    Read(#[from] CheckpointError),
    #[error(transparent)]
    ConfigFile(#[from] ReadError),
}

fn config_problem(source_name: &str, problem: impl Into<String>) -> GptqError {
    GptqError::Config { source_name: source_name.into(), problem: problem.into() }
}

/// The GPTQ settings of a model directory: `quantize_config.json`, or else `config.json`'s
/// `quantization_config` when its `quant_method` is `gptq`. `Ok(None)` for an ordinary
/// checkpoint; another quantization method is an error naming it.
pub fn read_config(dir: &Path, config_json: &Value) -> Result<Option<GptqConfig>, GptqError> {
    let path = dir.join(CONFIG_FILE);
    let (source_name, settings) = match checked_file::read_to_string_if_present(&path, checked_file::JSON_METADATA)? {
        Some(text) => {
            let value =
                serde_json::from_str(&text).map_err(|e| config_problem(CONFIG_FILE, format!("invalid JSON: {e}")))?;
            (CONFIG_FILE, value)
        }
        None => match config_json.get("quantization_config").filter(|q| !q.is_null()) {
            None => return Ok(None),
            Some(q) => ("config.json quantization_config", q.clone()),
        },
    };
    parse_config(source_name, &settings).map(Some)
}

fn parse_config(source_name: &str, settings: &Value) -> Result<GptqConfig, GptqError> {
    let problem = |p: String| config_problem(source_name, p);
    if let Some(method) = settings.get("quant_method").filter(|m| !m.is_null()) {
        if method.as_str() != Some("gptq") {
            return Err(problem(format!("quant_method {method} is not supported; webjudge reads GPTQ")));
        }
    }
    if let Some(format) = settings.get("checkpoint_format").filter(|f| !f.is_null()) {
        if format.as_str() != Some("gptq") {
            return Err(problem(format!(
                "checkpoint_format {format} is not supported; webjudge reads AutoGPTQ's \"gptq\" format"
            )));
        }
    }
    let bits = settings
        .get("bits")
        .and_then(Value::as_u64)
        .ok_or_else(|| problem("bits is missing or not a positive integer".into()))?;
    if bits != 4 {
        return Err(GptqError::Bits { source_name: source_name.into(), bits });
    }
    let group_size = match settings.get("group_size").and_then(Value::as_i64) {
        Some(-1) => None,
        Some(g) if g > 0 => Some(g as usize),
        _ => {
            return Err(problem(format!(
                "group_size {:?} is neither -1 nor a positive integer",
                settings.get("group_size")
            )))
        }
    };
    let flag = |key: &str, default: bool| match settings.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_bool().ok_or_else(|| problem(format!("{key} is not a boolean"))),
    };
    Ok(GptqConfig {
        group_size,
        desc_act: flag("desc_act", false)?,
        file_stem: settings.get("model_file_base_name").and_then(Value::as_str).map(str::to_owned),
    })
}

/// The tensor-name suffixes of a GPTQ linear layer.
const PARTS: [&str; 5] = ["qweight", "qzeros", "scales", "g_idx", "bias"];

/// Whether a tensor name is one only GPTQ layers have (`bias` is not).
pub fn is_gptq_tensor(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(_, part)| part != "bias" && PARTS.contains(&part))
}

/// The tensors of one GPTQ linear layer, located but not yet read.
#[derive(Clone, Debug)]
pub struct GptqLinear {
    /// The layer's name, as `model.layers.0.self_attn.q_proj`.
    pub prefix: String,
    qweight: CheckpointTensor,
    qzeros: CheckpointTensor,
    scales: CheckpointTensor,
    g_idx: Option<CheckpointTensor>,
    bias: Option<CheckpointTensor>,
}

/// Splits a checkpoint's tensors into GPTQ linear layers and the other tensors. A layer
/// is any name stem with a `qweight`, `qzeros`, `scales` or `g_idx` tensor (and then its
/// `bias` belongs to it); each needs the first three.
pub fn split_layers<'a>(
    tensors: impl Iterator<Item = &'a CheckpointTensor>,
) -> Result<(Vec<GptqLinear>, Vec<&'a CheckpointTensor>), GptqError> {
    let tensors: Vec<&CheckpointTensor> = tensors.collect();
    let split = |name: &'a str| name.rsplit_once('.').filter(|(_, part)| PARTS.contains(part));
    let mut layers: BTreeMap<&str, BTreeMap<&str, &CheckpointTensor>> = BTreeMap::new();
    for tensor in &tensors {
        if let Some((prefix, part)) = split(&tensor.name).filter(|_| is_gptq_tensor(&tensor.name)) {
            layers.entry(prefix).or_default().insert(part, tensor);
        }
    }
    let mut rest = Vec::new();
    for tensor in &tensors {
        match split(&tensor.name) {
            Some((prefix, "bias")) if layers.contains_key(prefix) => {
                layers.get_mut(prefix).expect("checked").insert("bias", tensor);
            }
            Some((prefix, _)) if layers.contains_key(prefix) => {}
            _ => rest.push(*tensor),
        }
    }
    let linears = layers
        .into_iter()
        .map(|(prefix, mut parts)| {
            let mut take = |part: &'static str| parts.remove(part).cloned();
            let missing = |part| GptqError::Missing { layer: prefix.into(), part };
            Ok(GptqLinear {
                prefix: prefix.into(),
                qweight: take("qweight").ok_or_else(|| missing("qweight"))?,
                qzeros: take("qzeros").ok_or_else(|| missing("qzeros"))?,
                scales: take("scales").ok_or_else(|| missing("scales"))?,
                g_idx: take("g_idx"),
                bias: take("bias"),
            })
        })
        .collect::<Result<_, GptqError>>()?;
    Ok((linears, rest))
}

/// A GPTQ layer's shapes checked against the architecture, with its group of each input
/// column.
#[derive(Clone, Debug)]
pub struct GptqPlan {
    layer: GptqLinear,
    out: usize,
    inputs: usize,
    groups: usize,
    /// Input columns per group.
    size: usize,
    /// `g_idx`, checked to lie within the groups.
    group_of: Vec<u32>,
    /// Under act-order, the input columns sorted by group (stably); `None` when `g_idx`
    /// is the plain order (`k / size`).
    column_order: Option<Vec<u32>>,
}

/// Checks a tensor's dtype (`dtype`, named `dtype_name`) and shape.
fn expect(
    tensor: &CheckpointTensor,
    (dtype, dtype_name): (CheckpointDType, &'static str),
    expected: Vec<usize>,
    (out, inputs, groups): (usize, usize, usize),
) -> Result<(), GptqError> {
    if tensor.dtype != dtype {
        return Err(GptqError::DType { tensor: tensor.name.clone(), found: tensor.dtype, expected: dtype_name });
    }
    if tensor.shape != expected {
        return Err(GptqError::Shape {
            tensor: tensor.name.clone(),
            found: tensor.shape.clone(),
            expected,
            out,
            inputs,
            groups,
        });
    }
    Ok(())
}

const I32: (CheckpointDType, &str) = (CheckpointDType::I32, "I32");

impl GptqLinear {
    /// Checks every tensor's dtype and shape for a `[out, inputs]` weight, reads and
    /// checks `g_idx` and any bias (both small).
    pub fn plan(
        self,
        config: &GptqConfig,
        checkpoint: &mut Checkpoint,
        out: usize,
        inputs: usize,
    ) -> Result<GptqPlan, GptqError> {
        let size = config.group_size.unwrap_or(inputs).max(1);
        let groups = inputs.div_ceil(size);
        let dims = (out, inputs, groups);
        // Packed dimensions must hold whole words.
        let (packed_in, packed_out) = (inputs.div_ceil(8), out.div_ceil(8));
        let shape_error = |tensor: &CheckpointTensor| GptqError::Shape {
            tensor: tensor.name.clone(),
            found: tensor.shape.clone(),
            expected: vec![packed_in, out],
            out,
            inputs,
            groups,
        };
        if !inputs.is_multiple_of(8) {
            return Err(shape_error(&self.qweight));
        }
        expect(&self.qweight, I32, vec![packed_in, out], dims)?;
        if !out.is_multiple_of(8) {
            return Err(shape_error(&self.qzeros));
        }
        expect(&self.qzeros, I32, vec![groups, packed_out], dims)?;
        expect(&self.scales, (CheckpointDType::F16, "F16"), vec![groups, out], dims)?;
        let group_of = match &self.g_idx {
            Some(g_idx) => {
                expect(g_idx, I32, vec![inputs], dims)?;
                let values = checkpoint.read_i32(g_idx)?;
                let mut group_of = Vec::with_capacity(inputs);
                for (column, &group) in values.iter().enumerate() {
                    if group < 0 || group as usize >= groups {
                        return Err(GptqError::GroupIndex {
                            tensor: g_idx.name.clone(),
                            column,
                            group: group.into(),
                            groups,
                        });
                    }
                    group_of.push(group as u32);
                }
                group_of
            }
            None if config.desc_act => return Err(GptqError::Missing { layer: self.prefix.clone(), part: "g_idx" }),
            None => (0..inputs).map(|k| (k / size) as u32).collect(),
        };
        if let Some(bias) = &self.bias {
            if bias.shape != [out] || !bias.dtype.is_float() {
                return Err(GptqError::Shape {
                    tensor: bias.name.clone(),
                    found: bias.shape.clone(),
                    expected: vec![out],
                    out,
                    inputs,
                    groups,
                });
            }
            let values = checkpoint.read_rows(bias, 0..1)?;
            if let Some((row, &value)) = values.iter().enumerate().find(|(_, v)| **v != 0.0) {
                return Err(GptqError::Bias { tensor: bias.name.clone(), row, value });
            }
        }
        let plain = group_of.iter().enumerate().all(|(k, &g)| g as usize == k / size);
        let column_order = (!plain).then(|| {
            let mut order: Vec<u32> = (0..inputs as u32).collect();
            order.sort_by_key(|&k| group_of[k as usize]);
            order
        });
        Ok(GptqPlan { layer: self, out, inputs, groups, size, group_of, column_order })
    }
}

impl GptqPlan {
    /// Bytes of the layer's tensors in the checkpoint.
    pub fn bytes(&self) -> u64 {
        let layer = &self.layer;
        [Some(&layer.qweight), Some(&layer.qzeros), Some(&layer.scales), layer.g_idx.as_ref(), layer.bias.as_ref()]
            .into_iter()
            .flatten()
            .map(|t| t.range.end - t.range.start)
            .sum()
    }

    /// The engine q4 group size this layer maps onto without requantizing, or why it
    /// cannot.
    pub fn q4_group(&self) -> Result<usize, String> {
        let size = self.size;
        if !size.is_multiple_of(BLOCK_VALUES as usize) || !self.inputs.is_multiple_of(size) {
            return Err(format!(
                "group size {size} is not a multiple of {BLOCK_VALUES} dividing its {} input columns",
                self.inputs
            ));
        }
        // Sorted by group, the columns make whole q4 groups only if every group is full.
        let mut columns = vec![0usize; self.groups];
        for &g in &self.group_of {
            columns[g as usize] += 1;
        }
        match columns.iter().enumerate().find(|(_, &n)| n != size) {
            Some((group, n)) => Err(format!("act-order group {group} has {n} input columns, not {size}")),
            None => Ok(size),
        }
    }

    /// Under act-order, the order the columns are written in (kept as q4): column `i` of
    /// the written weight is input column `order[i]`. `None` for the plain order.
    pub fn column_order(&self) -> Option<&[u32]> {
        self.column_order.as_deref()
    }

    /// Reads the layer's codes, zero points and scales.
    pub fn load(&self, checkpoint: &mut Checkpoint) -> Result<GptqWeights<'_>, GptqError> {
        let layer = &self.layer;
        let qweight = checkpoint.read_i32(&layer.qweight)?.into_iter().map(|w| w as u32).collect();
        let packed_zeros = checkpoint.read_i32(&layer.qzeros)?;
        // Zero points as used: the stored nibble plus one.
        let zeros = (0..self.groups * self.out)
            .map(|i| {
                let (g, n) = (i / self.out, i % self.out);
                ((packed_zeros[g * self.out / 8 + n / 8] as u32 >> (4 * (n % 8))) & 15) as u8 + 1
            })
            .collect();
        let scales = checkpoint
            .read_rows(&layer.scales, 0..self.groups)?
            .into_iter()
            .map(f16::from_f32) // exact: the values were f16
            .collect();
        Ok(GptqWeights { plan: self, qweight, zeros, scales })
    }
}

/// A GPTQ layer's data in memory (the largest Auto-J layer's is about 40 MB).
pub struct GptqWeights<'a> {
    plan: &'a GptqPlan,
    /// `[inputs/8, out]` words.
    qweight: Vec<u32>,
    /// `[groups, out]`, offset by one already.
    zeros: Vec<u8>,
    /// `[groups, out]`.
    scales: Vec<f16>,
}

impl GptqWeights<'_> {
    /// The exact f32 values of the given rows (outputs), one after another.
    pub fn rows_f32(&self, rows: &[usize]) -> Vec<f32> {
        let (out, inputs) = (self.plan.out, self.plan.inputs);
        let mut values = Vec::with_capacity(rows.len() * inputs);
        for &n in rows {
            for k8 in 0..inputs / 8 {
                let word = self.qweight[k8 * out + n];
                for (i, &g) in self.plan.group_of[k8 * 8..k8 * 8 + 8].iter().enumerate() {
                    let at = g as usize * out + n;
                    let q = ((word >> (4 * i)) & 15) as i32 - i32::from(self.zeros[at]);
                    values.push(self.scales[at].to_f32() * q as f32);
                }
            }
        }
        values
    }

    /// The given rows (outputs) as one q4 part with groups of `group` inputs, which must
    /// be [`GptqPlan::q4_group`]'s: codes copied (in [`GptqPlan::column_order`] under
    /// act-order, so group `g` is columns `g * group..`), scales kept, offsets
    /// `-scale * zero`.
    pub fn rows_q4(&self, rows: &[usize], group: usize) -> Result<Vec<u32>, GptqError> {
        let (out, inputs) = (self.plan.out, self.plan.inputs);
        let code_words = match self.plan.column_order() {
            None => rows.iter().flat_map(|&n| (0..inputs / 8).map(move |k8| self.qweight[k8 * out + n])).collect(),
            Some(order) => {
                let code = |k: u32, n: usize| (self.qweight[k as usize / 8 * out + n] >> (4 * (k % 8))) & 15;
                rows.iter()
                    .flat_map(|&n| {
                        order.chunks_exact(8).map(move |ks| ks.iter().rev().fold(0, |word, &k| word << 4 | code(k, n)))
                    })
                    .collect()
            }
        };
        let mut params = Vec::with_capacity(rows.len() * inputs / group);
        for &n in rows {
            for g in 0..inputs / group {
                let at = g * out + n;
                let (scale, zero) = (self.scales[at], self.zeros[at]);
                let offset = f16::from_f32(-scale.to_f32() * f32::from(zero));
                if !offset.is_finite() {
                    return Err(GptqError::Offset {
                        tensor: self.plan.layer.scales.name.clone(),
                        row: n,
                        group: g,
                        scale: scale.to_f32(),
                        zero: zero.into(),
                    });
                }
                params.push((scale, offset));
            }
        }
        Ok(pack_q4_words(code_words, &params))
    }
}
