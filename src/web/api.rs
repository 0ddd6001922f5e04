//! The `Judge` class JavaScript sees (docs/web-api.md): load a model directory, judge,
//! generate, unload. Calls on one Judge run one at a time in call order (an async mutex,
//! never a RefCell borrow held across an await), so several page elements can share it.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use js_sys::{Function, Object, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::AbortSignal;

use super::loader::{self, ShardOptions, ShardStats};
use super::types::{
    self, ArchitectureInfo, BatchRow, BuiltInRubric, GenerateResult, ModelInfo, PairwiseMetrics, ProfileResult,
};
use super::{fit, options, WebError};
use crate::engine::bench::{self, PROFILE_CONTEXT_TOKENS, PROFILE_RUNS};
use crate::engine::{Cancel, Engine, EngineError, GenerateOptions};
use crate::format::manifest::{MANIFEST_FILE, TOKENIZER_FILE};
use crate::format::Manifest;
use crate::judge::autoj_metrics::{self, Judged, ScenarioGroups};
use crate::judge::dataset::{self, Record, Row};
use crate::judge::prometheus_metrics::{self, Preference};
use crate::judge::session::{self, JudgeEvent, JudgeOptions, Order, Verdict, AUTOJ_MAX_NEW_TOKENS};
use crate::judge::{render, Item, JudgeFamily, Protocol, Rubric, Winner};
use crate::kernels::{Gpu, GpuOptions, Sampling};
use crate::model::{LlamaModel, ShardUploader};
use crate::tokenizer::Tokenizer;

/// `generate`'s default token limit.
const GENERATE_MAX_NEW_TOKENS: usize = 256;

enum State {
    Ready(Box<session::Judge>),
    /// The GPU device was lost: every later call fails; a new `Judge.load` recovers.
    Lost(String),
    Unloaded,
}

struct Shared {
    state: futures_util::lock::Mutex<State>,
    /// `None` once unloaded. Only borrowed synchronously.
    info: RefCell<Option<ModelInfo>>,
    stats: ShardStats,
}

/// A loaded judge model (Auto-J, Prometheus 2, or any webjudge model).
#[wasm_bindgen]
pub struct Judge {
    shared: Rc<Shared>,
}

/// The usable judge behind `state`, or why there is none. A device loss recorded since
/// the last call is noticed here, before any work is queued on the dead device.
fn ready(state: &mut State) -> Result<&mut session::Judge, WebError> {
    if let State::Ready(judge) = state {
        if let Err(error) = judge.engine().model().gpu().check() {
            let error = WebError::from(error);
            if let WebError::DeviceLost(message) = &error {
                *state = State::Lost(message.clone());
            }
            return Err(error);
        }
    }
    match state {
        State::Ready(judge) => Ok(judge),
        State::Lost(message) => Err(WebError::DeviceLost(message.clone())),
        State::Unloaded => Err(WebError::Unloaded),
    }
}

/// Records a device loss a call ran into, so later calls fail fast.
fn note_loss(state: &mut State, error: &WebError) {
    if let WebError::DeviceLost(message) = error {
        *state = State::Lost(message.clone());
    }
}

/// Ties an optional AbortSignal to the engine's [`Cancel`] flag for one call. The
/// listener fires while generation awaits the GPU; it is removed when the call ends.
struct Abort {
    cancel: Cancel,
    listener: Option<(AbortSignal, Closure<dyn FnMut()>)>,
}

impl Abort {
    fn new(signal: Option<AbortSignal>) -> Self {
        let cancel = Cancel::default();
        let listener = signal.map(|signal| {
            if signal.aborted() {
                cancel.cancel();
            }
            let flag = cancel.clone();
            let closure = Closure::<dyn FnMut()>::new(move || flag.cancel());
            // Adding a listener to an AbortSignal cannot fail.
            let _ = signal.add_event_listener_with_callback("abort", closure.as_ref().unchecked_ref());
            (signal, closure)
        });
        Self { cancel, listener }
    }
}

impl Drop for Abort {
    fn drop(&mut self) {
        if let Some((signal, closure)) = &self.listener {
            let _ = signal.remove_event_listener_with_callback("abort", closure.as_ref().unchecked_ref());
        }
    }
}

/// Calls a JS callback (`onToken`, `onJudged`) as the work reports. If it throws, the work
/// is cancelled and the call rejects with what it threw.
struct Stream<'a> {
    callback: Option<Function>,
    cancel: &'a Cancel,
    thrown: Option<JsValue>,
}

impl<'a> Stream<'a> {
    fn new(callback: Option<Function>, cancel: &'a Cancel) -> Self {
        Self { callback, cancel, thrown: None }
    }

    fn call(&mut self, args: &[JsValue]) {
        let Some(callback) = &self.callback else { return };
        if self.thrown.is_some() {
            return;
        }
        let args: js_sys::Array = args.iter().collect();
        if let Err(error) = callback.apply(&JsValue::NULL, &args) {
            self.thrown = Some(error);
            self.cancel.cancel();
        }
    }

    /// A streamed piece of text, with its order when the call judges a pair.
    fn emit(&mut self, piece: &str, order: Option<Order>) {
        if piece.is_empty() {
            return;
        }
        match order {
            None => self.call(&[piece.into()]),
            Some(order) => self.call(&[piece.into(), order_name(order).into()]),
        }
    }

    fn finish<T, E: Into<JsValue>>(self, result: Result<T, E>) -> Result<T, JsValue> {
        match self.thrown {
            Some(thrown) => Err(thrown),
            None => result.map_err(Into::into),
        }
    }
}

fn order_name(order: Order) -> &'static str {
    match order {
        Order::Forward => "forward",
        Order::Swapped => "swapped",
    }
}

/// Runs `work` as a JS promise; synchronous argument errors reject it too.
fn promise<F>(work: Result<F, WebError>) -> Promise
where
    F: Future<Output = Result<JsValue, JsValue>> + 'static,
{
    match work {
        Ok(future) => wasm_bindgen_futures::future_to_promise(future),
        Err(error) => Promise::reject(&error.into()),
    }
}

/// The settings of one `pairwise` / `single` / `rubric` / `compare` / `judgeBatch` call.
struct JudgeCall {
    protocol: Protocol,
    options: JudgeOptions,
    swap: bool,
    on_token: Option<Function>,
    abort: Abort,
}

impl JudgeCall {
    fn parse(o: Option<&Object>, protocol: Protocol) -> Result<Self, WebError> {
        let swap = options::opt_bool(o, "swap")?.unwrap_or(false);
        if swap && !protocol.is_pairwise() {
            return Err(WebError::InvalidInput("swap applies to pairwise judging only".into()));
        }
        let abort = Abort::new(options::opt_signal(o, "signal")?);
        Ok(Self {
            protocol,
            options: JudgeOptions {
                max_new_tokens: options::opt_count(o, "maxNewTokens", 1)?.unwrap_or(AUTOJ_MAX_NEW_TOKENS),
                truncate: options::opt_bool(o, "truncate")?.unwrap_or(false),
                cancel: Some(abort.cancel.clone()),
            },
            swap,
            on_token: options::opt_function(o, "onToken")?,
            abort,
        })
    }
}

/// Auto-J's pairwise evaluation (agreement and swap consistency, per scenario group and
/// overall) of batch records, computed by the same code as `webjudge judge`'s metrics. Needs
/// no model (and no GPU).
#[wasm_bindgen(js_name = pairwiseMetrics, unchecked_return_type = "PairwiseMetrics")]
pub fn pairwise_metrics(
    #[wasm_bindgen(unchecked_param_type = "Partial<BatchRecord>[]")] records: JsValue,
) -> Result<JsValue, JsValue> {
    let records = records_of(records, "pairwiseMetrics")?;
    let judged: Vec<Judged> = records.iter().filter_map(Judged::from_record).collect();
    let figures = autoj_metrics::pairwise_metrics(&judged, &ScenarioGroups::autoj());
    Ok(types::to_js(&PairwiseMetrics::new(&figures)))
}

/// Prometheus 2's relative grading against gold `"A"`/`"B"` labels (accuracy, and consistency
/// of rows judged in both orders) of batch records, computed by the same code as `webjudge
/// judge`'s metrics. Needs no model.
#[wasm_bindgen(js_name = preferenceMetrics, unchecked_return_type = "PreferenceMetrics")]
pub fn preference_metrics(
    #[wasm_bindgen(unchecked_param_type = "Partial<BatchRecord>[]")] records: JsValue,
) -> Result<JsValue, JsValue> {
    let records = records_of(records, "preferenceMetrics")?;
    let rows: Vec<Preference> = records.iter().filter_map(Preference::from_record).collect();
    Ok(types::to_js(&prometheus_metrics::preference_metrics(&rows)))
}

/// Prometheus 2's absolute grading against gold scores (Pearson, Spearman, Kendall's tau-b) of
/// batch records, computed by the same code as `webjudge judge`'s metrics. Needs no model.
#[wasm_bindgen(js_name = scoreMetrics, unchecked_return_type = "ScoreMetrics")]
pub fn score_metrics(
    #[wasm_bindgen(unchecked_param_type = "Partial<BatchRecord>[]")] records: JsValue,
) -> Result<JsValue, JsValue> {
    let records = records_of(records, "scoreMetrics")?;
    let rows: Vec<_> = records.iter().filter_map(prometheus_metrics::scores_of_record).collect();
    Ok(types::to_js(&prometheus_metrics::score_metrics(&rows)))
}

/// The records a metrics export was given, as JSON objects.
fn records_of(records: JsValue, function: &str) -> Result<Vec<serde_json::Value>, WebError> {
    let records: Vec<serde_json::Value> = serde_wasm_bindgen::from_value(records)
        .map_err(|error| WebError::InvalidInput(format!("{function}: records must be an array of objects: {error}")))?;
    if let Some(position) = records.iter().position(|record| !record.is_object()) {
        return Err(WebError::InvalidInput(format!("{function}: record {position} is not an object")));
    }
    Ok(records)
}

/// The rows of a test-data file (JSON Lines), read by the same code as `webjudge judge
/// --input`: Auto-J's rows, or Prometheus 2's (prometheus-eval's field names, by
/// `instruction`); pairs or single responses by their fields, every row of one kind. Each row
/// carries the protocol it was read for (Prometheus': with a reference answer when the first row
/// has one), which `judgeBatch` takes. Needs no model (and no GPU).
#[wasm_bindgen(js_name = parseRows, unchecked_return_type = "BatchRow[]")]
pub fn parse_rows(text: &str) -> Result<JsValue, JsValue> {
    let rows: Vec<Row> = dataset::parse_rows(text.lines(), None)
        .collect::<Result<_, _>>()
        .map_err(|e| WebError::InvalidInput(e.to_string()))?;
    let Some(first) = rows.first() else {
        return Err(WebError::InvalidInput("the file has no rows".into()).into());
    };
    let protocols: Vec<Protocol> = rows.iter().map(|row| row.protocol).collect();
    let kind = |protocol: Protocol| match (protocol.family(), protocol.is_pairwise()) {
        (JudgeFamily::AutoJ, true) => "a pair",
        (JudgeFamily::AutoJ, false) => "a single response",
        (JudgeFamily::Prometheus, true) => "a Prometheus pair (by its instruction field)",
        (JudgeFamily::Prometheus, false) => "a Prometheus single response (by its instruction field)",
    };
    if let Some(other) = protocols.iter().position(|&protocol| protocol != protocols[0]) {
        let message = format!(
            "row {other} is {}, but row 0 is {}: a file holds one kind",
            kind(protocols[other]),
            kind(protocols[0])
        );
        return Err(WebError::InvalidInput(message).into());
    }
    let protocol = match protocols[0].family() {
        JudgeFamily::AutoJ => protocols[0],
        JudgeFamily::Prometheus => prometheus(first.item.is_pair(), first.item.reference_answer().is_some()),
    };
    Ok(types::to_js(&rows.iter().map(|row| BatchRow { protocol, row }).collect::<Vec<_>>()))
}

/// prometheus-eval's built-in rubrics (`load_rubric`'s names), each with the text absolute
/// grading shows the judge (relative grading takes its first line: the criteria). Needs no
/// model.
#[wasm_bindgen(js_name = builtInRubrics, unchecked_return_type = "{ name: BuiltInRubric; text: string }[]")]
pub fn built_in_rubrics() -> JsValue {
    types::to_js(&Rubric::BUILT_IN.iter().map(|&(name, text)| BuiltInRubric { name, text }).collect::<Vec<_>>())
}

/// Prometheus 2's protocol for a pair (relative grading) or one response (absolute grading),
/// with a reference answer or without.
fn prometheus(pairwise: bool, reference: bool) -> Protocol {
    match (pairwise, reference) {
        (false, false) => Protocol::PrometheusAbsolute,
        (false, true) => Protocol::PrometheusAbsoluteRef,
        (true, false) => Protocol::PrometheusRelative,
        (true, true) => Protocol::PrometheusRelativeRef,
    }
}

#[wasm_bindgen]
impl Judge {
    /// Loads the model directory at `modelUrl` (made by `webjudge convert`): checks
    /// WebGPU and the adapter's limits, allocates every GPU buffer, then fetches,
    /// verifies and caches the shards.
    pub async fn load(
        #[wasm_bindgen(js_name = modelUrl)] model_url: String,
        #[wasm_bindgen(unchecked_optional_param_type = "LoadOptions")] options: Option<Object>,
    ) -> Result<Judge, JsValue> {
        let settings = LoadSettings::parse(options.as_ref())?;
        Ok(load(&model_url, settings).await?)
    }

    /// Removes the cached files of the model at `modelUrl`, or every webjudge cache.
    #[wasm_bindgen(js_name = clearCache)]
    pub async fn clear_cache(#[wasm_bindgen(js_name = modelUrl)] model_url: Option<String>) -> Result<(), JsValue> {
        Ok(loader::clear(model_url.as_deref()).await?)
    }

    /// Judges two responses to a query with Auto-J's pairwise protocol.
    #[wasm_bindgen(unchecked_return_type = "Promise<PairwiseResult>")]
    pub fn pairwise(
        &self,
        #[wasm_bindgen(unchecked_param_type = "{ query: string; response1: string; response2: string }")]
        input: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "JudgeOptions")] options: Option<Object>,
    ) -> Promise {
        self.judge(input, options, JudgeFamily::AutoJ, true)
    }

    /// Critiques and rates one response with Auto-J's single-response protocol.
    #[wasm_bindgen(unchecked_return_type = "Promise<SingleResult>")]
    pub fn single(
        &self,
        #[wasm_bindgen(unchecked_param_type = "{ query: string; response: string }")] input: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "JudgeOptions")] options: Option<Object>,
    ) -> Promise {
        self.judge(input, options, JudgeFamily::AutoJ, false)
    }

    /// Grades one response against a rubric, 1 to 5, with Prometheus 2's absolute protocol
    /// (`prometheus_absolute`, or `prometheus_absolute_ref` with a reference answer).
    #[wasm_bindgen(unchecked_return_type = "Promise<ScoreResult>")]
    pub fn rubric(
        &self,
        #[wasm_bindgen(unchecked_param_type = "RubricInput")] input: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "RubricOptions")] options: Option<Object>,
    ) -> Promise {
        self.judge(input, options, JudgeFamily::Prometheus, false)
    }

    /// Chooses the better of two responses under a rubric with Prometheus 2's relative
    /// protocol (`prometheus_relative`, or `prometheus_relative_ref` with a reference answer).
    #[wasm_bindgen(unchecked_return_type = "Promise<CompareResult>")]
    pub fn compare(
        &self,
        #[wasm_bindgen(unchecked_param_type = "CompareInput")] input: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "CompareOptions")] options: Option<Object>,
    ) -> Promise {
        self.judge(input, options, JudgeFamily::Prometheus, true)
    }

    /// Judges many items together, up to the loaded batch size at a time (with `swap`, each
    /// pair in both orders as two sequences of the batch) with one protocol ([`batch_protocol`]):
    /// pairs when the first item is one, else single responses; `parseRows`' rows carry their
    /// index, scenario and label into the records. Each item's record goes to `onJudged` as it
    /// finishes, in any order; the promise resolves when every item has been reported, and
    /// rejects only when the whole batch fails (a lost device, a throwing callback).
    #[wasm_bindgen(js_name = judgeBatch, unchecked_return_type = "Promise<void>")]
    pub fn judge_batch(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(PairInput | SingleInput | RubricInput | CompareInput | BatchRow)[]")]
        items: JsValue,
        #[wasm_bindgen(unchecked_param_type = "BatchOptions")] options: Object,
    ) -> Promise {
        let shared = Rc::clone(&self.shared);
        promise((|| {
            let items: js_sys::Array =
                items.dyn_into().map_err(|_| WebError::InvalidInput("items must be an array".into()))?;
            let o = Some(&options);
            let protocol = batch_protocol(o, items.get(0).dyn_ref(), shared.family())?;
            protocol.check_served_by(shared.family())?;
            let rubric = options::field(o, "rubric").map(options::rubric).transpose()?;
            let rows: Vec<Row> = items
                .iter()
                .enumerate()
                .map(|(position, input)| row(&input, position, protocol, rubric.as_ref()))
                .collect::<Result<_, _>>()?;
            let on_judged = options::opt_function(o, "onJudged")?
                .ok_or_else(|| WebError::InvalidInput("onJudged must be a function".into()))?;
            let call = JudgeCall::parse(o, protocol)?;
            Ok(async move { shared.judge_batch(rows, call, on_judged).await })
        })())
    }

    /// Greedy generation from a raw prompt (no chat template).
    #[wasm_bindgen(unchecked_return_type = "Promise<GenerateResult>")]
    pub fn generate(
        &self,
        prompt: String,
        #[wasm_bindgen(unchecked_optional_param_type = "GenerateOptions")] options: Option<Object>,
    ) -> Promise {
        let shared = Rc::clone(&self.shared);
        promise((|| {
            let o = options.as_ref();
            let abort = Abort::new(options::opt_signal(o, "signal")?);
            let settings = GenerateOptions {
                max_tokens: options::opt_count(o, "maxNewTokens", 1)?.unwrap_or(GENERATE_MAX_NEW_TOKENS),
                sampling: Sampling::Greedy,
                cancel: Some(abort.cancel.clone()),
            };
            let on_token = options::opt_function(o, "onToken")?;
            Ok(async move { shared.generate(prompt, settings, on_token, abort).await })
        })())
    }

    /// Times every kernel of a decode step (and of a prefill chunk) after `contextTokens`
    /// prompt tokens, as `webjudge bench --profile` does natively. The KV cache is
    /// overwritten: the next call prefills its whole prompt.
    #[wasm_bindgen(unchecked_return_type = "Promise<Profile>")]
    pub fn profile(
        &self,
        #[wasm_bindgen(unchecked_optional_param_type = "ProfileOptions")] options: Option<Object>,
    ) -> Promise {
        let shared = Rc::clone(&self.shared);
        promise((|| {
            let o = options.as_ref();
            let settings = ProfileSettings {
                context_tokens: options::opt_count(o, "contextTokens", 1)?.unwrap_or(PROFILE_CONTEXT_TOKENS),
                runs: options::opt_count(o, "runs", 1)?.unwrap_or(PROFILE_RUNS),
                prefill: options::opt_bool(o, "prefill")?.unwrap_or(true),
            };
            Ok(async move { shared.profile(settings).await })
        })())
    }

    /// What was loaded, from where, and on which adapter.
    #[wasm_bindgen(unchecked_return_type = "ModelInfo")]
    pub fn info(&self) -> Result<JsValue, JsValue> {
        match &*self.shared.info.borrow() {
            Some(info) => Ok(types::to_js(info)),
            None => Err(WebError::Unloaded.into()),
        }
    }

    /// Frees the GPU memory (after a call in progress ends); later calls reject with
    /// `Unloaded`.
    pub async fn unload(&self) -> Result<(), JsValue> {
        let shared = Rc::clone(&self.shared);
        let mut state = shared.state.lock().await;
        if let State::Ready(judge) = &*state {
            // Dropping wgpu objects frees nothing on the web until garbage collection;
            // destroying the device releases every buffer now.
            judge.engine().model().gpu().device.destroy();
        }
        *state = State::Unloaded;
        shared.info.replace(None);
        Ok(())
    }
}

/// An item for `protocol`: a pair (`{ query, response1, response2 }`) or a single response
/// (`{ query, response }`); for Prometheus 2 also `instruction` for `query` and `responseA`,
/// `responseB` for the pair (prometheus-eval's names), with `rubric` (else the batch's
/// `rubric`) and a reference answer (`referenceAnswer`, or `reference_answer` as `parseRows`'
/// rows have it). `name` is how errors call it.
fn item(input: &JsValue, name: &str, protocol: Protocol, rubric: Option<&Rubric>) -> Result<Item, WebError> {
    let input = options::object(input, name)?;
    let fields = Some(&input);
    let prometheus = protocol.family() == JudgeFamily::Prometheus;
    // The first of the field's names present (Auto-J knows only the first).
    let text = |names: &[&str]| {
        let names = if prometheus { names } else { &names[..1] };
        let present = names.iter().copied().find(|field| options::field(fields, field).is_some());
        options::string(fields, present.unwrap_or(names[0]))
            .map_err(|_| named(name, &present.map_or_else(|| names.join(" or "), str::to_string)))
    };
    let query = text(&["query", "instruction"])?;
    let item = match protocol.is_pairwise() {
        true => Item::pair(query, text(&["response1", "responseA"])?, text(&["response2", "responseB"])?),
        false => Item::single(query, text(&["response"])?),
    };
    if !prometheus {
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

/// `judgeBatch`'s protocol: the `protocol` option; else the first item's (`parseRows`' rows
/// carry the one they were read for; Auto-J's in the `language` asked for); else the model's
/// judge family's for the first item's kind (Auto-J's, by `language`, for a model of no known
/// family; Prometheus' with a reference answer when the first item has one).
fn batch_protocol(
    o: Option<&Object>,
    first: Option<&Object>,
    model: Option<JudgeFamily>,
) -> Result<Protocol, WebError> {
    let given = options::opt_protocol(o, "protocol")?;
    let of_rows = options::opt_protocol(first, "protocol").map_err(|error| in_item("items[0]", error))?;
    let pairwise = match of_rows {
        Some(protocol) => protocol.is_pairwise(),
        None => ["response1", "responseA"].iter().any(|field| options::field(first, field).is_some()),
    };
    let family = of_rows.map(|protocol| protocol.family()).or(model).unwrap_or(JudgeFamily::AutoJ);
    let language = options::field(o, "language").is_some();
    match (given, family) {
        (Some(_), _) if language => Err(WebError::InvalidInput(
            "give protocol or language, not both (Auto-J's Chinese protocols are zh_pairwise_tie and zh_single)".into(),
        )),
        (Some(protocol), _) => Ok(protocol),
        (None, JudgeFamily::AutoJ) => options::protocol(o, pairwise),
        (None, JudgeFamily::Prometheus) if language => Err(language_is_autoj()),
        (None, JudgeFamily::Prometheus) => {
            Ok(of_rows.unwrap_or_else(|| prometheus(pairwise, reference_field(first).is_some())))
        }
    }
}

fn language_is_autoj() -> WebError {
    WebError::InvalidInput("language applies to Auto-J's protocols only".into())
}

/// An item of `judgeBatch`: a pair or single response, with a row's `index` (default: its
/// `position`), `scenario` and `label` where it has them.
fn row(input: &JsValue, position: usize, protocol: Protocol, rubric: Option<&Rubric>) -> Result<Row, WebError> {
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

/// Rust-side access (not exported to JavaScript).
impl Judge {
    /// One item: Auto-J's `pairwise`/`single` (its protocol by `language`), Prometheus'
    /// `compare`/`rubric` (with a reference answer when the input has one). A protocol of the
    /// other family than the model's, a missing rubric or reference answer are refused before
    /// the call waits its turn.
    fn judge(&self, input: JsValue, options: Option<Object>, family: JudgeFamily, pairwise: bool) -> Promise {
        let shared = Rc::clone(&self.shared);
        promise((|| {
            let o = options.as_ref();
            let protocol = match family {
                JudgeFamily::AutoJ => options::protocol(o, pairwise)?,
                JudgeFamily::Prometheus if options::field(o, "language").is_some() => return Err(language_is_autoj()),
                JudgeFamily::Prometheus => prometheus(pairwise, reference_field(input.dyn_ref()).is_some()),
            };
            protocol.check_served_by(shared.family())?;
            let item = item(&input, "input", protocol, None)?;
            render(protocol, &item)?;
            let call = JudgeCall::parse(o, protocol)?;
            Ok(async move { shared.judge_item(item, call).await })
        })())
    }

    /// How the shards were obtained when this model loaded.
    pub fn shard_stats(&self) -> ShardStats {
        self.shared.stats.clone()
    }

    /// Runs `f` on the engine, in turn with the JS calls (Rust code embedding the web
    /// build, and tests, reach the model and GPU this way).
    pub async fn with_engine<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> Result<R, WebError> {
        let mut state = self.shared.state.lock().await;
        let judge = ready(&mut state)?;
        Ok(f(judge.engine_mut()))
    }
}

impl Shared {
    /// The loaded model's judge family (its manifest's `judge`); `None` for a model of no known
    /// family, and once unloaded.
    fn family(&self) -> Option<JudgeFamily> {
        self.info.borrow().as_ref().and_then(|info| info.judge)
    }

    /// `pairwise`, `single`, `rubric` and `compare`: one item, a pair in both orders with `swap`.
    async fn judge_item(&self, item: Item, call: JudgeCall) -> Result<JsValue, JsValue> {
        let mut state = self.state.lock().await;
        let judge = ready(&mut state)?;
        let JudgeCall { protocol, options, swap, on_token, abort } = call;
        let mut stream = Stream::new(on_token, &abort.cancel);
        let result = if swap {
            judge
                .judge_swapped(protocol, &item, &options, &mut |order, piece| stream.emit(piece, Some(order)))
                .await
                .map(|pair| types::to_js(&pair))
                .map_err(WebError::from)
        } else {
            judge
                .judge(protocol, &item, &options, &mut |piece| stream.emit(piece, Some(Order::Forward)))
                .await
                .map(|judgement| types::to_js(&judgement))
                .map_err(WebError::from)
        };
        if let Err(error) = &result {
            note_loss(&mut state, error);
        }
        stream.finish(result)
    }

    async fn judge_batch(&self, rows: Vec<Row>, call: JudgeCall, on_judged: Function) -> Result<JsValue, JsValue> {
        let mut state = self.state.lock().await;
        let judge = ready(&mut state)?;
        let JudgeCall { protocol, options, swap, on_token, abort } = call;
        let mut tokens = Stream::new(on_token, &abort.cancel);
        let mut judged = Stream::new(Some(on_judged), &abort.cancel);
        let items: Vec<Item> = rows.iter().map(|row| row.item.clone()).collect();
        let result = judge
            .judge_batch(protocol, &items, swap, &options, &mut |position, event| match event {
                JudgeEvent::Text(order, piece) => {
                    if !piece.is_empty() {
                        tokens.call(&[position.into(), piece.into(), order_name(order).into()]);
                    }
                }
                JudgeEvent::Judged(outcome) => {
                    let row = &rows[position];
                    let (record, error) = match outcome.map_err(WebError::from) {
                        Ok(outcome) => (Record::new(row, Ok::<_, WebError>(outcome), None), JsValue::NULL),
                        Err(error) => (Record::new(row, Err(&error), None), error.into()),
                    };
                    judged.call(&[position.into(), types::to_js(&record), error]);
                }
            })
            .await
            .map_err(WebError::from);
        if let Err(error) = &result {
            note_loss(&mut state, error);
        }
        judged.finish(tokens.finish(result)).map(|()| JsValue::UNDEFINED)
    }

    async fn generate(
        &self,
        prompt: String,
        settings: GenerateOptions,
        on_token: Option<Function>,
        abort: Abort,
    ) -> Result<JsValue, JsValue> {
        let mut state = self.state.lock().await;
        let judge = ready(&mut state)?;
        let engine = judge.engine_mut();
        let mut stream = Stream::new(on_token, &abort.cancel);
        let result = engine
            .generate(&prompt, &settings, &mut |piece| stream.emit(piece, None))
            .await
            .map(|g| GenerateResult::from_generation(&g))
            .map_err(WebError::from);
        if let Err(error) = &result {
            note_loss(&mut state, error);
        }
        stream.finish(result).map(|r| types::to_js(&r))
    }
}

impl Shared {
    async fn profile(&self, settings: ProfileSettings) -> Result<JsValue, JsValue> {
        let mut state = self.state.lock().await;
        let judge = ready(&mut state)?;
        let engine = judge.engine_mut();
        // The timed steps need a position after the prompt (a prefill chunk needs room).
        let context = engine.model().context();
        if settings.context_tokens >= context {
            let message = format!("contextTokens {} must be below contextLength {context}", settings.context_tokens);
            return Err(WebError::InvalidInput(message).into());
        }
        let prompt_ids =
            engine.tokenizer.encode(bench::PROMPT_TEXT).map_err(|e| WebError::from(EngineError::from(e)))?;
        let profile = bench::profile(engine, &prompt_ids, settings.context_tokens, settings.runs, settings.prefill)
            .await
            .map_err(WebError::from);
        if let Err(error) = &profile {
            note_loss(&mut state, error);
        }
        Ok(types::to_js(&ProfileResult::new(profile?)))
    }
}

/// `profile`'s options.
struct ProfileSettings {
    context_tokens: usize,
    runs: usize,
    prefill: bool,
}

/// `Judge.load`'s options.
struct LoadSettings {
    on_progress: Option<Function>,
    context: Option<usize>,
    batch_size: Option<usize>,
    shards: ShardOptions,
    subgroups: bool,
}

impl LoadSettings {
    fn parse(options: Option<&Object>) -> Result<Self, WebError> {
        let defaults = ShardOptions::default();
        Ok(Self {
            on_progress: options::opt_function(options, "onProgress")?,
            context: options::opt_count(options, "contextLength", 1)?,
            batch_size: fit::requested_batch_size(options::opt_count(options, "batchSize", 1)?)?,
            shards: ShardOptions {
                parallel: options::opt_count(options, "parallel", 1)?.unwrap_or(defaults.parallel),
                retries: options::opt_count(options, "retries", 0)?.map_or(defaults.retries, |r| r as u32),
                ..defaults
            },
            subgroups: options::opt_bool(options, "subgroups")?.unwrap_or(true),
        })
    }
}

async fn load(model_url: &str, settings: LoadSettings) -> Result<Judge, WebError> {
    loader::require_webgpu()?;
    let base = loader::base_url(model_url)?;
    let cache = loader::open_cache().await;
    let manifest_url = format!("{base}{MANIFEST_FILE}");
    let manifest = Manifest::from_json(&loader::fetch_text(&manifest_url, cache.as_ref()).await?)
        .map_err(|e| WebError::Model(format!("{manifest_url}: {e}")))?;
    let tokenizer_url = format!("{base}{TOKENIZER_FILE}");
    let tokenizer = Tokenizer::from_json(&loader::fetch_text(&tokenizer_url, cache.as_ref()).await?)
        .map_err(|e| WebError::Model(format!("{tokenizer_url}: {e}")))?;
    let context = fit::context_length(&manifest.architecture, settings.context)?;

    let gpu = Gpu::new(GpuOptions { allow_subgroups: settings.subgroups }).await?;
    let max_binding = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size);
    let sequences = fit::batch_size(&manifest, context, settings.batch_size, max_binding);
    let estimate = fit::estimate(&manifest, context, sequences);
    let device = gpu.device.clone();
    let progress = |loaded: u64, total: u64| {
        if let Some(callback) = &settings.on_progress {
            if let Err(error) = callback.call2(&JsValue::NULL, &(loaded as f64).into(), &(total as f64).into()) {
                web_sys::console::error_2(&"webjudge: onProgress threw".into(), &error);
            }
        }
    };
    let uploaded = upload(&gpu, &manifest, estimate, &base, cache.as_ref(), &settings.shards, &progress).await;
    let (weights, stats, estimate) = match uploaded {
        Ok(done) => done,
        Err(error) => {
            device.destroy();
            return Err(error);
        }
    };
    let adapter = gpu.describe();
    let subgroups = gpu.subgroups;
    let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let architecture = manifest.architecture.clone();
    let options = fit::load_options(context, estimate.sequences);
    let model = LlamaModel::new(gpu, architecture, weights, options);
    if let Some(error) = scope.pop().await {
        device.destroy();
        return Err(fit::out_of_memory(&estimate, false, &error.to_string()));
    }
    let model = model.inspect_err(|_| device.destroy())?;
    let a = &manifest.architecture;
    let info = ModelInfo {
        model_url: base,
        adapter,
        subgroups,
        context_length: context,
        batch_size: model.sequences(),
        weight_bytes: manifest.total_bytes(),
        kv_cache_bytes: estimate.kv_cache,
        from_cache: stats.downloaded == 0,
        downloaded_bytes: stats.downloaded_bytes,
        judge: manifest.judge,
        architecture: ArchitectureInfo {
            layers: a.n_layers,
            hidden: a.hidden,
            heads: a.n_heads,
            kv_heads: a.n_kv_heads,
            head_dim: a.head_dim,
            ffn: a.ffn,
            vocab: a.vocab,
            context: a.context_length,
        },
    };
    let judge = session::Judge::new(Engine::new(model, tokenizer, manifest));
    Ok(Judge {
        shared: Rc::new(Shared {
            state: futures_util::lock::Mutex::new(State::Ready(Box::new(judge))),
            info: RefCell::new(Some(info)),
            stats,
        }),
    })
}

/// Checks the adapter's limits, allocates every weight buffer and probes the KV cache's
/// and activations' (all before downloading; a batch whose KV cache cannot be allocated is
/// halved until it can, down to one sequence), then streams the shards in. Returns the
/// estimate of what fits.
async fn upload(
    gpu: &Gpu,
    manifest: &Manifest,
    estimate: fit::Estimate,
    base: &str,
    cache: Option<&web_sys::Cache>,
    shards: &ShardOptions,
    progress: &dyn Fn(u64, u64),
) -> Result<(std::collections::HashMap<String, crate::kernels::GpuTensor>, ShardStats, fit::Estimate), WebError> {
    fit::check_limits(
        &estimate,
        &manifest.architecture,
        gpu.limits.max_storage_buffer_binding_size,
        gpu.limits.max_buffer_size,
    )?;
    let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let uploader = ShardUploader::new(gpu, manifest);
    if let Some(error) = scope.pop().await {
        return Err(fit::out_of_memory(&estimate, true, &error.to_string()));
    }
    let uploader = RefCell::new(uploader?);
    // The KV cache and activations are allocated with the model after the download
    // (they need the uploaded weights); buffers of their sizes made now and released
    // tell whether they will fit before anything is fetched.
    let mut estimate = estimate;
    loop {
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let layers = manifest.architecture.n_layers;
        let probes: Vec<wgpu::Buffer> = (0..2 * layers)
            .map(|_| gpu.storage("kv cache probe", estimate.kv_layer_buffer))
            .chain([gpu.storage("activations probe", estimate.activations)])
            .collect();
        let failed = scope.pop().await;
        probes.iter().for_each(wgpu::Buffer::destroy);
        match failed {
            None => break,
            Some(_) if estimate.sequences > 1 => {
                estimate = fit::estimate(manifest, estimate.context, estimate.sequences / 2);
            }
            Some(error) => return Err(fit::out_of_memory(&estimate, false, &error.to_string())),
        }
    }
    let accept = |index: usize, bytes: &[u8]| uploader.borrow_mut().upload_shard(index, bytes);
    let stats = loader::load_shards(base, manifest, cache, shards, progress, &accept).await?;
    Ok((uploader.into_inner().finish()?, stats, estimate))
}
