//! What `convert --quant` makes of a Hugging Face checkpoint's 2-D weights: one encoding for
//! every weight, or one of llama.cpp's mixes (`Q4_K_M`, `Q5_K_M`), each weight's type chosen
//! by llama.cpp's rule (`llama_tensor_get_type` in `llama-quant.cpp`) with its fallbacks for
//! rows that are not whole 256-value super-blocks.

use crate::format::schema::{GlobalWeight, LayerWeight};
use crate::format::{encode_weighted, quantize_q4, quantize_q4_sym, AffineRule, DType, SUPER_BLOCK_VALUES};

/// The user's choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Quant {
    F32,
    F16,
    /// 8-bit, per group an f16 scale.
    Q8,
    /// 4-bit, per group an f16 scale and offset fitted by the weighted search.
    Q4,
    /// q4 with each group's own minimum and maximum (GGUF Q4_1's rule; the default before
    /// the search, kept to measure against).
    Q4MinMax,
    /// q4 symmetric around zero like GGUF Q4_0.
    Q4Sym,
    /// Every weight Q4_K (llama.cpp's `--pure`), Q5_0's size where rows are not super-blocks.
    Q4K,
    /// Every weight Q5_K, Q5_1's size where rows are not super-blocks.
    Q5K,
    /// Every weight Q6_K, Q8_0 where rows are not super-blocks.
    Q6K,
    /// llama.cpp's Q4_K_M: Q4_K, with Q6_K for the lm_head and for the value and down
    /// projections of the layers `use_more_bits` picks.
    Q4KM,
    /// llama.cpp's Q5_K_M: as Q4_K_M around Q5_K.
    Q5KM,
}

/// How one weight is stored: a dtype, its group and, for q4, the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Encoding {
    pub dtype: DType,
    /// Values per group (0 for f16 and f32).
    pub group: usize,
    q4_rule: Q4Rule,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Q4Rule {
    Affine(AffineRule),
    Symmetric,
}

impl Encoding {
    /// `dtype` with `group` values per group, q4 by the search.
    pub(crate) fn new(dtype: DType, group: usize) -> Self {
        Self { dtype, group, q4_rule: Q4Rule::Affine(AffineRule::Search) }
    }

    /// Encodes rows of f32 values, spread over the machine's cores (the searches cost about
    /// ten times min/max: one thread would take most of an hour over a 13B model), under an
    /// importance matrix's entry for the weight where given (one value per column).
    pub fn encode(&self, values: &[f32], importance: Option<&[f32]>) -> Vec<u32> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Whole super-blocks and an even count of groups of up to 128 values, so each piece's
        // planes (and q8's scales, two to a word) join end to end; whole rows under an
        // importance matrix, whose values go by column.
        let unit = importance.map_or(1 << 16, |columns| lcm(1 << 16, columns.len()));
        let piece = values.len().div_ceil(threads).next_multiple_of(unit);
        if piece >= values.len() {
            return self.encode_serially(values, importance);
        }
        let encoded: Vec<(usize, Vec<u32>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = values
                .chunks(piece)
                .map(|chunk| scope.spawn(move || (chunk.len(), self.encode_serially(chunk, importance))))
                .collect();
            workers.into_iter().map(|worker| worker.join().expect("an encoding thread panicked")).collect()
        });
        // Each piece is a plane of codes, then one of parameters: join them plane by plane.
        let planes: Vec<(&[u32], &[u32])> = encoded
            .iter()
            .map(|(len, words)| words.split_at(self.dtype.params_word_offset(1, *len as u64) as usize))
            .collect();
        let codes = planes.iter().flat_map(|(codes, _)| codes.iter().copied());
        codes.chain(planes.iter().flat_map(|(_, params)| params.iter().copied())).collect()
    }

    fn encode_serially(&self, values: &[f32], importance: Option<&[f32]>) -> Vec<u32> {
        match (self.dtype, self.q4_rule) {
            (DType::Q4, Q4Rule::Affine(rule)) => quantize_q4(values, self.group, rule, importance),
            (DType::Q4, Q4Rule::Symmetric) => quantize_q4_sym(values, self.group),
            (dtype, _) => encode_weighted(dtype, values, self.group.max(1), importance),
        }
    }
}

fn lcm(a: usize, b: usize) -> usize {
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    a / gcd(a, b) * b
}

/// Which weight of the model, as llama.cpp's rule tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightRole {
    Global(GlobalWeight),
    Layer { layer: usize, weight: LayerWeight },
}

impl WeightRole {
    /// The role of a weight named as the model directory names it.
    pub fn of(name: &str) -> Option<Self> {
        if let Some((layer, weight)) = LayerWeight::parse(name) {
            return Some(WeightRole::Layer { layer, weight });
        }
        [GlobalWeight::TokenEmbedding, GlobalWeight::OutputNorm, GlobalWeight::Output]
            .into_iter()
            .find(|weight| weight.name() == name)
            .map(WeightRole::Global)
    }
}

/// The model-wide facts the mixes read.
#[derive(Clone, Copy, Debug)]
pub struct MixContext {
    pub n_layers: usize,
    pub tied_embeddings: bool,
}

/// llama.cpp's pick of the layers whose value and down projections get more bits: the
/// first and last eighth, and every third layer between.
fn use_more_bits(layer: usize, n_layers: usize) -> bool {
    let (layer, n_layers) = (layer as i64, n_layers as i64);
    layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2
}

impl Quant {
    /// Every choice with its `--quant` name.
    pub const ALL: [(Quant, &'static str); 11] = [
        (Quant::F32, "f32"),
        (Quant::F16, "f16"),
        (Quant::Q8, "q8"),
        (Quant::Q4, "q4"),
        (Quant::Q4MinMax, "q4minmax"),
        (Quant::Q4Sym, "q4sym"),
        (Quant::Q4K, "q4_k"),
        (Quant::Q5K, "q5_k"),
        (Quant::Q6K, "q6_k"),
        (Quant::Q4KM, "q4_k_m"),
        (Quant::Q5KM, "q5_k_m"),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(quant, _)| *quant == self).expect("every choice is listed").1
    }

    /// Whether `--group` applies (the K-quant choices have their own block sizes).
    pub fn takes_group(self) -> bool {
        matches!(self, Quant::Q8 | Quant::Q4 | Quant::Q4MinMax | Quant::Q4Sym)
    }

    /// Whether an importance matrix weighs this choice's quantizers (q4's search and the
    /// K-quants with their fallbacks; min/max, q4sym and q8 have nothing to weigh, as
    /// llama.cpp's Q8_0 does not).
    pub fn weighs_importance(self) -> bool {
        matches!(self, Quant::Q4 | Quant::Q4K | Quant::Q5K | Quant::Q6K | Quant::Q4KM | Quant::Q5KM)
    }

    /// Whether a GPTQ layer whose group suits the engine keeps its codes as q4.
    pub fn keeps_gptq_codes(self) -> bool {
        matches!(self, Quant::Q4 | Quant::Q4MinMax | Quant::Q4Sym)
    }

    /// The encoding of a 2-D weight of `cols` columns; `group` is `--group` (for q4 and q8).
    pub fn encoding(self, role: WeightRole, cols: usize, group: usize, mix: MixContext) -> Result<Encoding, String> {
        let fixed = |dtype: DType| Encoding::new(dtype, 0);
        let grouped = |dtype: DType, q4_rule| -> Result<Encoding, String> {
            dtype.check_shape(cols as u64, group as u64)?;
            Ok(Encoding { dtype, group, q4_rule })
        };
        match self {
            Quant::F32 => Ok(fixed(DType::F32)),
            Quant::F16 => Ok(fixed(DType::F16)),
            Quant::Q8 => grouped(DType::Q8, Q4Rule::Affine(AffineRule::Search)),
            Quant::Q4 => grouped(DType::Q4, Q4Rule::Affine(AffineRule::Search)),
            Quant::Q4MinMax => grouped(DType::Q4, Q4Rule::Affine(AffineRule::MinMax)),
            Quant::Q4Sym => grouped(DType::Q4, Q4Rule::Symmetric),
            Quant::Q4K => Ok(k_quant_fallback(DType::Q4K, cols)),
            Quant::Q5K => Ok(k_quant_fallback(DType::Q5K, cols)),
            Quant::Q6K => Ok(k_quant_fallback(DType::Q6K, cols)),
            Quant::Q4KM | Quant::Q5KM => {
                let base = if self == Quant::Q4KM { DType::Q4K } else { DType::Q5K };
                let output = match role {
                    WeightRole::Global(GlobalWeight::Output) => true,
                    WeightRole::Global(GlobalWeight::TokenEmbedding) => mix.tied_embeddings,
                    _ => false,
                };
                let dtype = match role {
                    // The lm_head: Q6_K (Q8_0 by the fallback when its rows are not super-blocks).
                    _ if output => DType::Q6K,
                    WeightRole::Layer { layer, weight: LayerWeight::AttnV | LayerWeight::FfnDown }
                        if use_more_bits(layer, mix.n_layers) =>
                    {
                        DType::Q6K
                    }
                    _ => base,
                };
                Ok(k_quant_fallback(dtype, cols))
            }
        }
    }
}

/// llama.cpp's fallback for rows that are not whole super-blocks: Q4_K → Q5_0, Q5_K → Q5_1
/// (both our q5, whose groups of 32 hold either), Q6_K → Q8_0; f16 where even 32 does not divide.
fn k_quant_fallback(dtype: DType, cols: usize) -> Encoding {
    if cols.is_multiple_of(SUPER_BLOCK_VALUES as usize) {
        return Encoding::new(dtype, SUPER_BLOCK_VALUES as usize);
    }
    if !cols.is_multiple_of(32) {
        return Encoding::new(DType::F16, 0);
    }
    match dtype {
        DType::Q6K => Encoding::new(DType::Q8, 32),
        _ => Encoding::new(DType::Q5, 32),
    }
}

impl std::str::FromStr for Quant {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Quant::ALL.iter().find(|(_, name)| *name == text).map(|(quant, _)| *quant).ok_or_else(|| {
            let names: Vec<&str> = Quant::ALL.iter().map(|(_, name)| *name).collect();
            format!("{text:?} is not one of {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_more_bits_is_llama_cpps() {
        // 30 layers (SmolLM2): the first and last three and every third from layer 5.
        let picked: Vec<usize> = (0..30).filter(|&i| use_more_bits(i, 30)).collect();
        assert_eq!(picked, [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]);
        // 40 layers (Auto-J-13B).
        assert_eq!((0..40).filter(|&i| use_more_bits(i, 40)).count(), 20);
    }

    /// Each tensor's type as llama.cpp's quantizer chose it for each K-quant choice
    /// (tools/reference/kquant_mix_fixture.py).
    const MIX_FIXTURE: &str = include_str!("../../tests/fixtures/kquant_mix_types.json");

    #[test]
    fn k_quant_choices_type_each_tensor_as_llama_cpp_does() {
        let fixture: serde_json::Value = serde_json::from_str(MIX_FIXTURE).unwrap();
        let mut checked = 0;
        for (shape_name, shape) in fixture["shapes"].as_object().unwrap() {
            let number = |key: &str| shape[key].as_u64().unwrap() as usize;
            let (hidden, heads, ffn) = (number("hidden"), number("heads"), number("ffn"));
            let mix = MixContext { n_layers: number("layers"), tied_embeddings: shape["tied"].as_bool().unwrap() };
            for (choice, types) in shape["types"].as_object().unwrap() {
                let quant: Quant = choice.parse().unwrap();
                for (name, id) in types.as_object().unwrap() {
                    let ggml = crate::format::ggml_blocks::GgmlType::from_id(id.as_u64().unwrap() as u32).unwrap();
                    let role = WeightRole::of(name).unwrap();
                    let cols = match role {
                        WeightRole::Layer { weight: LayerWeight::FfnDown, .. } => ffn,
                        WeightRole::Layer { weight: LayerWeight::AttnOutput, .. } => hidden / heads * heads,
                        _ => hidden,
                    };
                    if ggml.dtype() == DType::F32 {
                        continue; // norms: 1-D, never quantized
                    }
                    let ours = quant.encoding(role, cols, 32, mix).unwrap();
                    assert_eq!((ours.dtype, ours.group), (ggml.dtype(), ggml.group()), "{shape_name} {choice} {name}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 5 * 282 + 2 * 114 + 2 * 64);
    }

    #[test]
    fn encoding_in_pieces_equals_encoding_at_once() {
        let values: Vec<f32> = (0..(3 << 16) + 4096).map(|i| ((i * 7919 % 2003) as f32 - 1001.0) * 1e-4).collect();
        for dtype in [DType::Q4, DType::Q8, DType::Q5, DType::Q4K, DType::Q6K, DType::F16] {
            let group = dtype.fixed_group().unwrap_or(if dtype.is_quantized() { 32 } else { 0 }) as usize;
            let encoding = Encoding::new(dtype, group);
            assert_eq!(encoding.encode(&values, None), encoding.encode_serially(&values, None), "{dtype:?}");
            // Under an importance matrix the pieces are whole rows (here of 768 values).
            let importance: Vec<f32> = (0..768).map(|i| 0.01 + (i % 13) as f32).collect();
            let values = &values[..values.len() / 768 * 768];
            let weighted = encoding.encode(values, Some(&importance));
            assert_eq!(weighted, encoding.encode_serially(values, Some(&importance)), "{dtype:?} weighted");
        }
    }

    #[test]
    fn names_round_trip() {
        for (quant, name) in Quant::ALL {
            assert_eq!(name.parse::<Quant>(), Ok(quant));
            assert_eq!(quant.name(), name);
        }
        assert!("q3_k".parse::<Quant>().unwrap_err().contains("q4_k_m"));
    }
}
