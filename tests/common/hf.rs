//! Hugging Face checkpoints written by the tests, from the formats' specifications:
//! config.json, a WordLevel tokenizer.json, safetensors files and PyTorch `.bin` zip
//! pickles (opcode by opcode, as `torch.save` writes them), all streamed so that
//! checkpoints at Auto-J's real shapes never sit whole in memory; and an independent CPU
//! forward pass over Hugging Face weights with Hugging Face's `rotate_half` RoPE, which
//! checks the importer's Q/K row permutation independently of the engine's own reference.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use half::{bf16, f16};
use serde_json::json;
use webjudge::convert::quant::{Encoding, MixContext, Quant, WeightRole};
use webjudge::engine::native::load_dir;
use webjudge::engine::Engine;
use webjudge::format::schema::GlobalWeight;
use webjudge::format::{dequantize, Architecture, Llama3RopeScaling};
use webjudge::kernels::{GpuOptions, Sampling};
use webjudge::model::reference::{argmax, attend, matvec, rmsnorm, round_f16, swiglu};
use webjudge::model::LoadOptions;

/// Little-endian bytes of values in a safetensors dtype (`F32`, `F16`, `BF16`, `I32`;
/// I32 values must be integers).
pub fn le_bytes(dtype: &str, values: &[f32]) -> Vec<u8> {
    match dtype {
        "F32" => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        "F16" => values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
        "BF16" => values.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
        other => panic!("no test dtype {other}"),
    }
}

fn dtype_size(dtype: &str) -> usize {
    match dtype {
        "F32" | "I32" => 4,
        "F16" | "BF16" => 2,
        other => panic!("no test dtype {other}"),
    }
}

/// Writes a tensor's or a zip entry's bytes.
pub type WriteFn<'a> = dyn Fn(&mut dyn Write) -> io::Result<()> + 'a;
/// A zip entry: name, length and its bytes.
type ZipEntry<'a> = (String, usize, &'a WriteFn<'a>);

/// One tensor of a checkpoint being written: its bytes are produced when written.
pub struct Entry<'a> {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub data: Box<WriteFn<'a>>,
}

impl<'a> Entry<'a> {
    pub fn new(
        name: &str,
        dtype: &'static str,
        shape: Vec<usize>,
        data: impl Fn(&mut dyn Write) -> io::Result<()> + 'a,
    ) -> Self {
        Entry { name: name.into(), dtype, shape, data: Box::new(data) }
    }

    pub fn from_bytes(name: &str, dtype: &'static str, shape: Vec<usize>, bytes: Vec<u8>) -> Self {
        Self::new(name, dtype, shape, move |out| out.write_all(&bytes))
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product::<usize>() * dtype_size(self.dtype)
    }
}

/// One tensor of a small synthetic checkpoint: its stored dtype and the exact values stored.
#[derive(Clone)]
pub struct Tensor {
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl Tensor {
    pub fn bytes(&self) -> Vec<u8> {
        le_bytes(self.dtype, &self.values)
    }

    pub fn entry(&self, name: &str) -> Entry<'_> {
        Entry::new(name, self.dtype, self.shape.clone(), move |out| out.write_all(&self.bytes()))
    }
}

pub fn entries(tensors: &BTreeMap<String, Tensor>) -> Vec<Entry<'_>> {
    tensors.iter().map(|(name, t)| t.entry(name)).collect()
}

/// A safetensors file per the format specification: u64 LE header length, JSON header
/// (padded with spaces to a multiple of 8), data.
pub fn write_safetensors(out: &mut dyn Write, entries: &[Entry]) -> io::Result<()> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0;
    for entry in entries {
        header.insert(
            entry.name.clone(),
            json!({"dtype": entry.dtype, "shape": entry.shape, "data_offsets": [offset, offset + entry.len()]}),
        );
        offset += entry.len();
    }
    let mut header = serde_json::to_vec(&header).unwrap();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    out.write_all(&(header.len() as u64).to_le_bytes())?;
    out.write_all(&header)?;
    for entry in entries {
        (entry.data)(out)?;
    }
    Ok(())
}

pub fn safetensors_bytes(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    write_safetensors(&mut out, entries).unwrap();
    out
}

pub fn config(a: &Architecture) -> serde_json::Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "num_hidden_layers": a.n_layers,
        "hidden_size": a.hidden,
        "num_attention_heads": a.n_heads,
        "num_key_value_heads": a.n_kv_heads,
        "intermediate_size": a.ffn,
        "vocab_size": a.vocab,
        "rms_norm_eps": a.norm_eps,
        "rope_theta": a.rope_theta,
        "max_position_embeddings": a.context_length,
        "tie_word_embeddings": a.tied_embeddings,
        "bos_token_id": 1,
        "eos_token_id": [2],
        "rope_scaling": null,
        "torch_dtype": "float16",
    })
}

/// A minimal valid tokenizer.json: a WordLevel vocabulary split on whitespace.
pub fn tokenizer_json(vocab_size: usize) -> String {
    let mut vocab = serde_json::Map::new();
    for (i, word) in ["<unk>", "<s>", "</s>"].iter().enumerate() {
        vocab.insert((*word).into(), json!(i));
    }
    for i in 3..vocab_size {
        vocab.insert(format!("w{i}"), json!(i));
    }
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    })
    .to_string()
}

/// Writes config.json, tokenizer.json and tokenizer_config.json (a LLaMA tokenizer class
/// without a chat template, as LLaMA-2 checkpoints and Auto-J's have).
pub fn write_metadata(dir: &Path, a: &Architecture) {
    std::fs::write(dir.join("config.json"), config(a).to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json(a.vocab)).unwrap();
    write_tokenizer_config(dir);
}

pub fn write_tokenizer_config(dir: &Path) {
    let config = json!({"add_bos_token": true, "tokenizer_class": "LlamaTokenizer"});
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
}

pub const SAFETENSORS_NAMES: [&str; 4] = ["model.safetensors", "model", "safetensors", "model.safetensors.index.json"];
pub const TORCH_NAMES: [&str; 4] = ["pytorch_model.bin", "pytorch_model", "bin", "pytorch_model.bin.index.json"];

/// A file writer: safetensors or a PyTorch `.bin`.
pub type FileWriter = fn(&mut dyn Write, &[Entry]) -> io::Result<()>;

/// Writes the weights in one file or in `shards` with an index: `names` are the single
/// file, the shard stem, the shard extension and the index; `write` writes one file.
pub fn write_weights(
    dir: &Path,
    entries: &[Entry],
    shards: usize,
    [single, stem, extension, index]: [&str; 4],
    write: FileWriter,
) {
    let create = |file: &str, chunk: &[Entry]| {
        let mut out = BufWriter::new(File::create(dir.join(file)).unwrap());
        write(&mut out, chunk).unwrap();
        out.flush().unwrap();
    };
    if shards == 1 {
        create(single, entries);
        return;
    }
    let mut weight_map = serde_json::Map::new();
    let per_shard = entries.len().div_ceil(shards);
    for (i, chunk) in entries.chunks(per_shard).enumerate() {
        let file = format!("{stem}-{:05}-of-{shards:05}.{extension}", i + 1);
        create(&file, chunk);
        for entry in chunk {
            weight_map.insert(entry.name.clone(), json!(file));
        }
    }
    let index_json = json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(dir.join(index), index_json.to_string()).unwrap();
}

// ---- PyTorch `.bin` checkpoints: zip archives of a protocol-2 pickle and raw storages.

/// A pickle written opcode by opcode, memoizing like Python's pickler.
pub struct Pickle {
    pub out: Vec<u8>,
    memo: u32,
}

impl Pickle {
    pub fn new() -> Self {
        Pickle { out: vec![0x80, 2], memo: 0 }
    }

    pub fn op(&mut self, bytes: &[u8]) -> &mut Self {
        self.out.extend_from_slice(bytes);
        self
    }

    fn put(&mut self) -> &mut Self {
        let index = self.memo;
        self.memo += 1;
        match u8::try_from(index) {
            Ok(index) => self.op(&[b'q', index]),
            Err(_) => self.op(b"r").op(&index.to_le_bytes()),
        }
    }

    fn string(&mut self, s: &str) -> &mut Self {
        self.op(b"X").op(&(s.len() as u32).to_le_bytes()).op(s.as_bytes()).put()
    }

    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(format!("c{module}\n{name}\n").as_bytes()).put()
    }

    fn int(&mut self, v: usize) -> &mut Self {
        match v {
            0..=255 => self.op(&[b'K', v as u8]),
            256..=65535 => self.op(b"M").op(&(v as u16).to_le_bytes()),
            _ => self.op(b"J").op(&(v as i32).to_le_bytes()),
        }
    }

    fn ints(&mut self, values: &[usize]) -> &mut Self {
        match values.len() {
            1..=3 => {
                values.iter().for_each(|&v| {
                    self.int(v);
                });
                self.op(&[0x84 + values.len() as u8]).put()
            }
            _ => {
                self.op(b"(");
                values.iter().for_each(|&v| {
                    self.int(v);
                });
                self.op(b"t").put()
            }
        }
    }
}

/// One pickled tensor: its storage (key, dtype, element count) and view.
pub struct Pickled<'a> {
    pub name: &'a str,
    pub key: String,
    pub dtype: &'a str,
    pub numel: usize,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// `torch.save(state_dict)` of an OrderedDict, as pickle protocol 2 writes it.
pub fn torch_pickle(tensors: &[Pickled]) -> Vec<u8> {
    let mut p = Pickle::new();
    p.global("collections", "OrderedDict").op(b")").op(b"R").put().op(b"(");
    for t in tensors {
        let storage = match t.dtype {
            "F32" => "FloatStorage",
            "F16" => "HalfStorage",
            "BF16" => "BFloat16Storage",
            "I32" => "IntStorage",
            other => panic!("no test dtype {other}"),
        };
        p.string(t.name).global("torch._utils", "_rebuild_tensor_v2").op(b"(");
        p.op(b"(").string("storage").global("torch", storage).string(&t.key).string("cpu").int(t.numel);
        p.op(b"t").put().op(b"Q").int(t.offset).ints(&t.shape).ints(&t.stride).op(&[0x89]);
        p.global("collections", "OrderedDict").op(b")").op(b"R").put().op(b"t").put().op(b"R").put();
    }
    p.op(b"u");
    // The state dict's `_metadata` attribute, restored by BUILD.
    p.op(b"}").put().string("_metadata").global("collections", "OrderedDict").op(b")").op(b"R").put();
    p.string("").op(b"}").put().string("version").int(1).op(b"s").op(b"s").op(b"s").op(b"b").op(b".");
    p.out
}

/// A zip archive of stored entries, as PyTorch's writer makes (CRCs are not checked),
/// each entry's data streamed.
fn write_zip(out: &mut dyn Write, entries: &[ZipEntry]) -> io::Result<()> {
    let mut central = Vec::new();
    let mut offset = 0u32;
    for (name, len, data) in entries {
        let sizes = [0u32, *len as u32, *len as u32];
        let mut header = 0x0403_4b50u32.to_le_bytes().to_vec();
        header.extend([20u16, 0, 0, 0, 0].iter().flat_map(|v| v.to_le_bytes()));
        header.extend(sizes.iter().flat_map(|v| v.to_le_bytes()));
        header.extend([name.len() as u16, 0].iter().flat_map(|v| v.to_le_bytes()));
        header.extend(name.as_bytes());
        out.write_all(&header)?;
        data(out)?;
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend([20u16, 20, 0, 0, 0, 0].iter().flat_map(|v| v.to_le_bytes()));
        central.extend(sizes.iter().flat_map(|v| v.to_le_bytes()));
        central.extend([name.len() as u16, 0, 0, 0, 0].iter().flat_map(|v| v.to_le_bytes()));
        central.extend(0u32.to_le_bytes());
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
        offset += (header.len() + len) as u32;
    }
    let directory_size = central.len() as u32;
    out.write_all(&central)?;
    let mut end = 0x0605_4b50u32.to_le_bytes().to_vec();
    let count = entries.len() as u16;
    end.extend([0u16, 0, count, count].iter().flat_map(|v| v.to_le_bytes()));
    end.extend(directory_size.to_le_bytes());
    end.extend(offset.to_le_bytes());
    end.extend(0u16.to_le_bytes());
    out.write_all(&end)
}

/// A zip archive of the given entries.
pub fn zip_bytes(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let writers: Vec<_> = entries.iter().map(|(_, bytes)| move |out: &mut dyn Write| out.write_all(bytes)).collect();
    let listed: Vec<ZipEntry> =
        entries.iter().zip(&writers).map(|((name, bytes), w)| (name.clone(), bytes.len(), w as &WriteFn)).collect();
    let mut out = Vec::new();
    write_zip(&mut out, &listed).unwrap();
    out
}

/// A `.bin` file of the tensors, each in its own storage.
pub fn write_torch_bin(out: &mut dyn Write, entries: &[Entry]) -> io::Result<()> {
    let pickled: Vec<Pickled> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut stride = vec![1; e.shape.len()];
            for d in (0..e.shape.len().saturating_sub(1)).rev() {
                stride[d] = stride[d + 1] * e.shape[d + 1];
            }
            Pickled {
                name: &e.name,
                key: i.to_string(),
                dtype: e.dtype,
                numel: e.shape.iter().product(),
                offset: 0,
                shape: e.shape.clone(),
                stride,
            }
        })
        .collect();
    let pickle = torch_pickle(&pickled);
    let write_pickle = |out: &mut dyn Write| out.write_all(&pickle);
    let write_order = |out: &mut dyn Write| out.write_all(b"little");
    let write_version = |out: &mut dyn Write| out.write_all(b"3\n");
    let mut listed: Vec<ZipEntry> =
        vec![("archive/data.pkl".into(), pickle.len(), &write_pickle), ("archive/byteorder".into(), 6, &write_order)];
    for (i, e) in entries.iter().enumerate() {
        listed.push((format!("archive/data/{i}"), e.len(), &*e.data));
    }
    listed.push(("archive/version".into(), 2, &write_version));
    write_zip(out, &listed)
}

pub fn torch_bin_bytes(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    write_torch_bin(&mut out, entries).unwrap();
    out
}

// ---- The independent forward pass.

/// The weights as the converted model holds them, in Hugging Face's row order: a 2-D
/// weight encoded and decoded with the chosen quant (groups lie within rows, so this
/// commutes with the importer's row permutation).
pub fn as_converted(values: &[f32], rows: usize, cols: usize, quant: Quant, group: usize) -> Vec<f32> {
    let encoding = uniform_encoding(quant, cols, group);
    dequantize(encoding.dtype, &encoding.encode(values, None), rows, cols, encoding.group.max(1))
}

/// The encoding a `--quant` choice other than a mix gives every 2-D weight of `cols` columns.
pub fn uniform_encoding(quant: Quant, cols: usize, group: usize) -> Encoding {
    assert!(!matches!(quant, Quant::Q4KM | Quant::Q5KM), "a mix types each weight by its role");
    let any = MixContext { n_layers: 1, tied_embeddings: false };
    quant.encoding(WeightRole::Global(GlobalWeight::TokenEmbedding), cols, group, any).unwrap()
}

/// `rows` values made by `make` over row ranges, the rows split among the machine's cores
/// (each range's values are the same whatever the split).
pub fn par_rows(rows: usize, make: impl Fn(std::ops::Range<usize>) -> Vec<f32> + Sync) -> Vec<f32> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = rows.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let make = &make;
        let parts: Vec<_> =
            (0..rows).step_by(chunk).map(|start| scope.spawn(move || make(start..(start + chunk).min(rows)))).collect();
        parts.into_iter().flat_map(|part| part.join().unwrap()).collect()
    })
}

/// [`matvec`] with its rows split among the cores.
fn par_matvec(w: &[f32], x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    par_rows(rows, |r| matvec(&w[r.start * cols..r.end * cols], x, r.len(), cols))
}

#[derive(Clone, Copy, PartialEq)]
pub enum Rope {
    /// Hugging Face's `rotate_half`: pairs `(i, i + d/2)`.
    HalfSplit,
    /// Adjacent pairs on the unpermuted rows: what forgetting the permutation computes.
    Adjacent,
}

fn rope(x: &mut [f32], position: usize, a: &Architecture, style: Rope) {
    let d = a.head_dim;
    for head in x.chunks_exact_mut(d) {
        for i in 0..d / 2 {
            let angle = position as f64 * (a.rope_theta as f64).powf(-((2 * i) as f64) / d as f64);
            let (sin, cos) = (angle.sin() as f32, angle.cos() as f32);
            let (ia, ib) = match style {
                Rope::HalfSplit => (i, i + d / 2),
                Rope::Adjacent => (2 * i, 2 * i + 1),
            };
            let (x0, x1) = (head[ia], head[ib]);
            head[ia] = x0 * cos - x1 * sin;
            head[ib] = x0 * sin + x1 * cos;
        }
    }
}

/// A CPU forward over Hugging Face weights (by Hugging Face name; the token embedding
/// row of a token comes from `embed`), returning the logits after each token from
/// position `first` on. Keys and values are rounded to f16 as the GPU's cache stores them.
pub fn hf_forward(
    a: &Architecture,
    w: &BTreeMap<String, Vec<f32>>,
    embed: &dyn Fn(u32) -> Vec<f32>,
    ids: &[u32],
    style: Rope,
    first: usize,
) -> Vec<Vec<f32>> {
    let (hidden, q_dim, kv_dim) = (a.hidden, a.q_dim(), a.kv_dim());
    let mut keys = vec![Vec::new(); a.n_layers];
    let mut values = vec![Vec::new(); a.n_layers];
    let mut all = Vec::new();
    for (position, &id) in ids.iter().enumerate() {
        let mut x = embed(id);
        for l in 0..a.n_layers {
            let get = |name: &str| &w[&format!("model.layers.{l}.{name}")];
            let xn = rmsnorm(&x, get("input_layernorm.weight"), a.norm_eps);
            let mut q = par_matvec(get("self_attn.q_proj.weight"), &xn, q_dim, hidden);
            let mut k = par_matvec(get("self_attn.k_proj.weight"), &xn, kv_dim, hidden);
            let v = par_matvec(get("self_attn.v_proj.weight"), &xn, kv_dim, hidden);
            rope(&mut q, position, a, style);
            rope(&mut k, position, a, style);
            keys[l].push(round_f16(&k));
            values[l].push(round_f16(&v));
            let attended = attend(&q, &keys[l], &values[l], a.n_heads, a.n_kv_heads);
            let o = par_matvec(get("self_attn.o_proj.weight"), &attended, hidden, q_dim);
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
            let xn = rmsnorm(&x, get("post_attention_layernorm.weight"), a.norm_eps);
            let gate = par_matvec(get("mlp.gate_proj.weight"), &xn, a.ffn, hidden);
            let up = par_matvec(get("mlp.up_proj.weight"), &xn, a.ffn, hidden);
            let down = par_matvec(get("mlp.down_proj.weight"), &swiglu(&gate, &up), hidden, a.ffn);
            x.iter_mut().zip(&down).for_each(|(x, d)| *x += d);
        }
        if position < first {
            continue;
        }
        let xn = rmsnorm(&x, &w["model.norm.weight"], a.norm_eps);
        let head = w.get("lm_head.weight").unwrap_or_else(|| &w["model.embed_tokens.weight"]);
        all.push(par_matvec(head, &xn, a.vocab, hidden));
    }
    all
}

pub fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Loads a converted model directory on the GPU with a context of 64 positions (small
/// test models need no more).
pub fn load_short_context(dir: &Path) -> Engine {
    load_with_context(dir, 64)
}

/// Loads a converted model directory with a KV cache of `context` positions.
pub fn load_with_context(dir: &Path, context: usize) -> Engine {
    let with_context = |mut options: LoadOptions| {
        options.context = context;
        options
    };
    load_dir(dir, GpuOptions::default(), with_context, &mut |_, _| {}).unwrap()
}

/// Loads a converted model directory on the GPU, prefills `prompt` and decodes one token,
/// and checks both steps' logits against [`hf_forward`] within `tolerance`; then checks
/// that adjacent-pair RoPE on the unpermuted rows would differ by far more. Returns the
/// worst logit difference and that gap.
pub fn check_decode(
    case: &str,
    out: &Path,
    a: &Architecture,
    w: &BTreeMap<String, Vec<f32>>,
    embed: &dyn Fn(u32) -> Vec<f32>,
    prompt: &[u32],
    tolerance: f32,
) -> (f32, f32) {
    let mut engine = load_short_context(out);
    let model = engine.model_mut();
    let chosen = pollster::block_on(model.prefill(prompt, Sampling::Greedy)).unwrap();
    let logits = pollster::block_on(model.logits(1)).unwrap();
    let mut ids = prompt.to_vec();
    ids.push(chosen);
    let expected = hf_forward(a, w, embed, &ids, Rope::HalfSplit, prompt.len() - 1);
    let prefill_worst = max_difference(&logits, &expected[0]);
    assert!(prefill_worst <= tolerance, "{case}: prefill logits differ by {prefill_worst}");
    assert_eq!(chosen as usize, argmax(&logits), "{case}");

    // One decode step feeding the chosen token.
    pollster::block_on(model.decode(Sampling::Greedy)).unwrap();
    let logits = pollster::block_on(model.logits(1)).unwrap();
    let worst = max_difference(&logits, expected.last().unwrap());
    assert!(worst <= tolerance, "{case}: decode logits differ by {worst}");

    // The check is sensitive to the convention: adjacent pairs on the unpermuted rows
    // give clearly different logits.
    let wrong = hf_forward(a, w, embed, &ids, Rope::Adjacent, prompt.len());
    let gap = max_difference(wrong.last().unwrap(), expected.last().unwrap());
    assert!(gap > 10.0 * tolerance, "{case}: the RoPE convention barely matters here ({gap})");
    println!("{case}: worst logit difference {:.2e}, wrong-RoPE gap {gap:.3}", worst.max(prefill_worst));
    (worst.max(prefill_worst), gap)
}

// ---- Checkpoints at Auto-J's real shapes, generated cheaply.

/// One layer of Auto-J-13B (LLaMA-2-13B): untied, multi-head attention.
pub fn autoj_13b_layer() -> Architecture {
    real_architecture(5120, 40, 40, 13824, 32000, 10000.0)
}

/// One layer of Auto-J-bilingual-6B (Yi-6B): grouped-query attention, RoPE theta 5e6.
pub fn yi_6b_layer() -> Architecture {
    real_architecture(4096, 32, 4, 11008, 64000, 5_000_000.0)
}

/// Llama-3.1-8B's `rope_scaling` (its config.json).
pub const LLAMA31_ROPE_SCALING: Llama3RopeScaling =
    Llama3RopeScaling { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_context: 8192.0 };

fn real_architecture(
    hidden: usize,
    n_heads: usize,
    n_kv_heads: usize,
    ffn: usize,
    vocab: usize,
    theta: f32,
) -> Architecture {
    Architecture {
        n_layers: 1,
        hidden,
        n_heads,
        n_kv_heads,
        head_dim: hidden / n_heads,
        ffn,
        vocab,
        rope_theta: theta,
        rope_frequency_divisors: Vec::new(),
        qkv_bias: false,
        rope_attention_factor: 1.0,
        norm_eps: 1e-5,
        context_length: 4096,
        tied_embeddings: false,
        bos_id: Some(1),
        eos_ids: vec![2],
        add_bos: true,
    }
}

/// SplitMix64's output function: a fast, well-mixed hash of a counter.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The synthetic values of one tensor, a function of the position alone (nothing is
/// stored): uniform in `center ± scale`, rounded to f16.
#[derive(Clone, Copy)]
pub struct Synth {
    pub seed: u64,
    pub center: f32,
    pub scale: f32,
}

impl Synth {
    /// The raw hash of position `i`.
    pub fn bits(&self, i: usize) -> u64 {
        mix(self.seed.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
    }

    pub fn value(&self, i: usize) -> f16 {
        let unit = (self.bits(i) >> 40) as f32 / (1u64 << 24) as f32;
        f16::from_f32(self.center + self.scale * (2.0 * unit - 1.0))
    }

    /// Rows of a matrix of `cols` columns (a vector is one row).
    pub fn rows(&self, rows: std::ops::Range<usize>, cols: usize) -> Vec<f32> {
        (rows.start * cols..rows.end * cols).map(|i| self.value(i).to_f32()).collect()
    }
}

/// A Hugging Face tensor of a synthetic checkpoint.
pub struct Planned {
    pub name: String,
    pub shape: Vec<usize>,
    pub synth: Synth,
}

impl Planned {
    pub fn rows(&self) -> usize {
        if self.shape.len() == 2 {
            self.shape[0]
        } else {
            1
        }
    }

    pub fn cols(&self) -> usize {
        *self.shape.last().unwrap()
    }

    /// The tensor stored as f16, written 64 rows at a time.
    pub fn f16_entry(&self) -> Entry<'_> {
        Entry::new(&self.name, "F16", self.shape.clone(), move |out| {
            for start in (0..self.rows()).step_by(64) {
                let end = (start + 64).min(self.rows());
                let values = (start * self.cols()..end * self.cols()).map(|i| self.synth.value(i));
                out.write_all(bytemuck::cast_slice(&values.map(f16::to_bits).collect::<Vec<u16>>()))?;
            }
            Ok(())
        })
    }
}

/// Every Hugging Face tensor of `a` with synthetic values, scaled so that activations
/// stay of order one at any width (a linear layer's outputs have a standard deviation
/// of about `gain` for inputs of RMS one).
pub fn synthetic_tensors(a: &Architecture) -> Vec<Planned> {
    let mut tensors = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, center: f32, scale: f32| {
        let seed = mix(tensors.len() as u64 + 1);
        tensors.push(Planned { name, shape, synth: Synth { seed, center, scale } });
    };
    let linear = |inputs: usize, gain: f32| gain * (3.0 / inputs as f32).sqrt();
    add("model.embed_tokens.weight".into(), vec![a.vocab, a.hidden], 0.0, 1.0);
    add("model.norm.weight".into(), vec![a.hidden], 1.0, 0.2);
    if !a.tied_embeddings {
        add("lm_head.weight".into(), vec![a.vocab, a.hidden], 0.0, linear(a.hidden, 2.0));
    }
    for l in 0..a.n_layers {
        let p = format!("model.layers.{l}.");
        add(format!("{p}input_layernorm.weight"), vec![a.hidden], 1.0, 0.2);
        add(format!("{p}post_attention_layernorm.weight"), vec![a.hidden], 1.0, 0.2);
        // Large Q/K weights make the scores, and so RoPE, matter.
        add(format!("{p}self_attn.q_proj.weight"), vec![a.q_dim(), a.hidden], 0.0, linear(a.hidden, 3.0));
        add(format!("{p}self_attn.k_proj.weight"), vec![a.kv_dim(), a.hidden], 0.0, linear(a.hidden, 3.0));
        add(format!("{p}self_attn.v_proj.weight"), vec![a.kv_dim(), a.hidden], 0.0, linear(a.hidden, 1.0));
        add(format!("{p}self_attn.o_proj.weight"), vec![a.hidden, a.q_dim()], 0.0, linear(a.q_dim(), 1.0));
        add(format!("{p}mlp.gate_proj.weight"), vec![a.ffn, a.hidden], 0.0, linear(a.hidden, 1.0));
        add(format!("{p}mlp.up_proj.weight"), vec![a.ffn, a.hidden], 0.0, linear(a.hidden, 1.0));
        add(format!("{p}mlp.down_proj.weight"), vec![a.hidden, a.ffn], 0.0, linear(a.ffn, 1.0));
    }
    tensors
}

/// The weights of a synthetic checkpoint as converted with `quant`/`group`, for
/// [`hf_forward`], except the token embedding (see [`synthetic_embedding`]) and the
/// tensors `skip` names. Converted 256 rows at a time, on every core.
pub fn synthetic_reference(
    tensors: &[Planned],
    quant: Quant,
    group: usize,
    skip: impl Fn(&str) -> bool,
) -> BTreeMap<String, Vec<f32>> {
    let mut weights = BTreeMap::new();
    for t in tensors.iter().filter(|t| t.name != "model.embed_tokens.weight" && !skip(&t.name)) {
        let values = if t.shape.len() == 1 {
            t.synth.rows(0..1, t.cols())
        } else {
            par_rows(t.rows(), |rows| {
                let mut values = Vec::with_capacity(rows.len() * t.cols());
                for start in rows.clone().step_by(256) {
                    let end = (start + 256).min(rows.end);
                    values.extend(as_converted(
                        &t.synth.rows(start..end, t.cols()),
                        end - start,
                        t.cols(),
                        quant,
                        group,
                    ));
                }
                values
            })
        };
        weights.insert(t.name.clone(), values);
    }
    weights
}

/// The converted token embedding row of a token.
pub fn synthetic_embedding(tensors: &[Planned], quant: Quant, group: usize) -> impl Fn(u32) -> Vec<f32> + '_ {
    let t = tensors.iter().find(|t| t.name == "model.embed_tokens.weight").unwrap();
    move |id| as_converted(&t.synth.rows(id as usize..id as usize + 1, t.cols()), 1, t.cols(), quant, group)
}

/// A directory under the system's temporary directory, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("webjudge-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Asserts that two model directories hold the same files, byte for byte (one file in
/// memory at a time).
pub fn assert_same_model_files(a: &Path, b: &Path) {
    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    };
    assert_eq!(names(a), names(b));
    for name in names(a) {
        assert!(std::fs::read(a.join(&name)).unwrap() == std::fs::read(b.join(&name)).unwrap(), "{name} differs");
    }
}
