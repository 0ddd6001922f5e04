//! The arguments of the wasm class's calls, read from the plain JS objects they take
//! ([`options`]'s readers): which protocol judges (the CLI's rule, [`ProtocolRequest`]), the
//! items and rows, and each call's settings.

use js_sys::{Function, Object};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::AbortSignal;

use super::callbacks::Abort;
use super::loader::ShardOptions;
use super::{fit, options, WebError};
use crate::judge::dataset::{self, Row};
use crate::judge::policy::{ProtocolRequest, DEFAULTS};
use crate::judge::session::{JudgeOptions, Verdict};
use crate::judge::{Item, JudgeFamily, Protocol, Rubric, VerdictKind, Winner};
use crate::kernels::MatvecPath;

/// The settings of one `pairwise` / `single` / `rubric` / `compare` / `judgeBatch` call.
pub struct JudgeCall {
    pub protocol: Protocol,
    pub options: JudgeOptions,
    pub swap: bool,
    pub on_token: Option<Function>,
    pub abort: Abort,
}

impl JudgeCall {
    pub fn parse(o: Option<&Object>, protocol: Protocol) -> Result<Self, WebError> {
        let swap = options::opt_bool(o, "swap")?.unwrap_or(false);
        if swap && !protocol.is_pairwise() {
            return Err(WebError::InvalidInput("swap applies to pairwise judging only".into()));
        }
        let abort = Abort::new(options::opt_signal(o, "signal")?);
        Ok(Self {
            protocol,
            options: JudgeOptions {
                max_new_tokens: options::opt_count(o, "maxNewTokens", 1)?.unwrap_or(DEFAULTS.max_new_tokens),
                truncate: options::opt_bool(o, "truncate")?.unwrap_or(false),
                cancel: Some(abort.cancel.clone()),
            },
            swap,
            on_token: options::opt_function(o, "onToken")?,
            abort,
        })
    }
}

/// What a one-item call judges: a pair, a single response, or a single response for a Yes/No
/// answer (`classify`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asks {
    Pair,
    Single,
    Answer,
}

/// The protocol of a one-item call: its method's family (`pairwise`/`single` Auto-J's, by
/// `language`; `rubric`/`compare` Prometheus' or the model's, `_ref` when the input has a
/// reference answer).
pub fn item_protocol(
    o: Option<&Object>,
    input: &JsValue,
    family: JudgeFamily,
    asks: Asks,
) -> Result<Protocol, WebError> {
    let language = language(o, family == JudgeFamily::AutoJ)?;
    let reference = reference_field(input.dyn_ref()).is_some();
    let request = ProtocolRequest {
        asked: Some(family),
        language: language.as_deref(),
        pairwise: asks == Asks::Pair,
        reference,
        answer: asks == Asks::Answer,
        ..Default::default()
    };
    Ok(request.choose()?)
}

/// `judgeBatch`'s protocol: the `protocol` option; else the first item's family (`parseRows`'
/// rows carry the protocol they were read for), else the model's; for the first item's kind,
/// in the `language` asked for, with a reference answer when the first item has one.
pub fn batch_protocol(
    o: Option<&Object>,
    first: Option<&Object>,
    model: Option<JudgeFamily>,
) -> Result<Protocol, WebError> {
    let named = options::opt_protocol(o, "protocol")?;
    let of_rows = options::opt_protocol(first, "protocol").map_err(|error| in_item("items[0]", error))?;
    // Rows read by the same field names as the model's own (JudgeBench's, for Skywork-Critic
    // and CompassJudger-1) are the model's: parseRows cannot tell the two apart.
    let asked = of_rows.map(|protocol| match model {
        Some(model) if model.row_fields() == protocol.family().row_fields() => model,
        _ => protocol.family(),
    });
    let mut request = ProtocolRequest {
        named,
        asked,
        model,
        pairwise: match of_rows {
            Some(protocol) => protocol.is_pairwise(),
            None => ["response1", "responseA"].iter().any(|field| options::field(first, field).is_some()),
        },
        reference: match of_rows {
            Some(protocol) => protocol.uses_reference(),
            None => reference_field(first).is_some(),
        },
        answer: of_rows.is_some_and(|protocol| protocol.verdict_kind() == VerdictKind::Classification),
        ..Default::default()
    };
    let language = language(o, named.is_none() && request.family() == JudgeFamily::AutoJ)?;
    request.language = language.as_deref();
    Ok(request.choose()?)
}

/// The `language` option: its text where Auto-J's protocols read it (`autoj`); elsewhere only
/// whether it is there (as an empty text), which [`ProtocolRequest::choose`] refuses
/// whatever its value.
fn language(o: Option<&Object>, autoj: bool) -> Result<Option<String>, WebError> {
    match autoj {
        true => options::opt_string(o, "language"),
        false => Ok(options::field(o, "language").map(|_| String::new())),
    }
}

/// An item for `protocol`: a pair (`{ query, response1, response2 }`) or a single response
/// (`{ query, response }`); for the other judges also `instruction` for `query` and
/// `responseA`, `responseB` for the pair (prometheus-eval's names), with `rubric` (else the batch's
/// `rubric`) and a reference answer (`referenceAnswer`, or `reference_answer` as `parseRows`'
/// rows have it). `name` is how errors call it.
pub fn item(input: &JsValue, name: &str, protocol: Protocol, rubric: Option<&Rubric>) -> Result<Item, WebError> {
    let input = options::object(input, name)?;
    let fields = Some(&input);
    let rubric_judge = protocol.family() != JudgeFamily::AutoJ;
    // The first of the field's names present (Auto-J knows only the first).
    let text = |names: &[&str]| {
        let names = if rubric_judge { names } else { &names[..1] };
        let present = names.iter().copied().find(|field| options::field(fields, field).is_some());
        options::string(fields, present.unwrap_or(names[0]))
            .map_err(|_| named(name, &present.map_or_else(|| names.join(" or "), str::to_string)))
    };
    let query = text(&["query", "instruction"])?;
    let item = match protocol.is_pairwise() {
        true => Item::pair(query, text(&["response1", "responseA"])?, text(&["response2", "responseB"])?),
        false => Item::single(query, text(&["response"])?),
    };
    if !rubric_judge {
        return Ok(item);
    }
    let item = match options::field(fields, "rubric") {
        Some(value) => item.with_rubric(options::rubric(value).map_err(|error| in_item(name, error))?),
        None => match rubric {
            Some(rubric) => item.with_rubric(rubric.clone()),
            None => item,
        },
    };
    Ok(match reference_field(fields) {
        Some(field) => item.with_reference_answer(options::string(fields, field).map_err(|_| named(name, field))?),
        None => item,
    })
}

/// The field of `input` holding a reference answer, if it has one.
fn reference_field(input: Option<&Object>) -> Option<&'static str> {
    ["referenceAnswer", "reference_answer"].into_iter().find(|&field| options::field(input, field).is_some())
}

/// An item of `judgeBatch`: a pair or single response, with a row's `index` (default: its
/// `position`), `scenario` and `label` where it has them.
pub fn row(input: &JsValue, position: usize, protocol: Protocol, rubric: Option<&Rubric>) -> Result<Row, WebError> {
    let name = format!("items[{position}]");
    let item = item(input, &name, protocol, rubric)?;
    let fields = input.dyn_ref::<Object>();
    let scenario = options::opt_string(fields, "scenario").map_err(|_| named(&name, "scenario"))?;
    let label = options::field(fields, "label").map(|label| row_label(label, protocol, &name)).transpose()?;
    let index = options::opt_count(fields, "index", 0)?.unwrap_or(position);
    Ok(Row { index, protocol, item, label, scenario })
}

/// A row's gold label: Auto-J's as `parseRows` names it, Prometheus' as its files and records
/// write it (`"A"`/`"B"`, a score 1 to 5).
fn row_label(label: JsValue, protocol: Protocol, name: &str) -> Result<Verdict, WebError> {
    if protocol.family() == JudgeFamily::AutoJ {
        return serde_wasm_bindgen::from_value::<Winner>(label).map(|winner| Verdict::Pairwise(Some(winner))).map_err(
            |_| WebError::InvalidInput(format!("{name}.label must be \"response1\", \"response2\", \"tie\" or null")),
        );
    }
    let value = serde_wasm_bindgen::from_value::<serde_json::Value>(label).unwrap_or(serde_json::Value::Null);
    dataset::parse_label(&value, protocol).map_err(|problem| WebError::InvalidInput(format!("{name}: {problem}")))
}

/// "response1 must be a string", or "items[3].response1 …" for an item of a batch.
fn named(item: &str, field: &str) -> WebError {
    let field = if item == "input" { field.to_string() } else { format!("{item}.{field}") };
    WebError::InvalidInput(format!("{field} must be a string"))
}

/// An argument error about an item of a batch, prefixed with which.
fn in_item(item: &str, error: WebError) -> WebError {
    match error {
        WebError::InvalidInput(message) if item != "input" => WebError::InvalidInput(format!("{item}: {message}")),
        other => other,
    }
}

/// `profile`'s options.
pub struct ProfileSettings {
    pub context_tokens: usize,
    pub runs: usize,
    pub prefill: bool,
}

/// `Judge.load`'s options.
pub struct LoadSettings {
    pub on_progress: Option<Function>,
    pub context: Option<usize>,
    pub batch_size: Option<usize>,
    pub shards: ShardOptions,
    pub subgroups: bool,
    /// How the decode matvecs multiply x (`matvec`: "exact", the default, or "int8").
    pub matvec: MatvecPath,
    /// A GGUF model's expected sha256s (lowercase hex), the page's `sha256=`: one, or a split
    /// model's parts' in order.
    pub sha256: Option<Vec<String>>,
    /// Aborting it cancels a GGUF's load.
    pub signal: Option<AbortSignal>,
}

impl LoadSettings {
    pub fn parse(options: Option<&Object>) -> Result<Self, WebError> {
        let defaults = ShardOptions::default();
        Ok(Self {
            on_progress: options::opt_function(options, "onProgress")?,
            context: options::opt_count(options, "contextLength", 1)?,
            batch_size: fit::requested_batch_size(options::opt_count(options, "batchSize", 1)?)?,
            shards: ShardOptions {
                parallel: options::opt_count(options, "parallel", 1)?.unwrap_or(defaults.parallel),
                retries: options::opt_count(options, "retries", 0)?.map_or(defaults.retries, |r| r as u32),
                stall_ms: match options::opt_count(options, "stallMs", 1)? {
                    // setTimeout's delay is a 32-bit signed count.
                    Some(ms) => i32::try_from(ms).map_err(|_| {
                        WebError::InvalidInput(format!("stallMs must be at most {}, not {ms}", i32::MAX))
                    })?,
                    None => defaults.stall_ms,
                },
                ..defaults
            },
            subgroups: options::opt_bool(options, "subgroups")?.unwrap_or(true),
            matvec: match options::opt_string(options, "matvec")? {
                Some(name) => name.parse().map_err(|e| WebError::InvalidInput(format!("matvec: {e}")))?,
                None => MatvecPath::default(),
            },
            sha256: options::opt_string(options, "sha256")?.as_deref().map(parse_sha256s).transpose()?,
            signal: options::opt_signal(options, "signal")?,
        })
    }
}

/// The `sha256` option: 64 hexadecimal digits, or for a split model its parts' hashes in order,
/// separated by commas.
fn parse_sha256s(hashes: &str) -> Result<Vec<String>, WebError> {
    let parse = |hash: &str| {
        let hash = hash.trim();
        match hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => Ok(hash.to_ascii_lowercase()),
            false => Err(WebError::InvalidInput(format!("sha256 {hash:?} is not 64 hexadecimal digits"))),
        }
    };
    hashes.split(',').map(parse).collect()
}
