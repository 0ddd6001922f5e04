//! The `Judge` class JavaScript sees (docs/web-api.md), [`JsJudge`] in Rust: load a model
//! directory, judge, generate, unload. Calls on one Judge run one at a time in call order (an
//! async mutex, never a RefCell borrow held across an await), so several page elements can
//! share it. Its arguments are read in `arguments.rs`, its model loaded in `load.rs`.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use js_sys::{Function, Object, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::arguments::{self, Asks, JudgeCall, LoadSettings, ProfileSettings};
use super::callbacks::{order_name, Abort, Stream};
use super::loader::{self, ShardStats};
use super::types::{self, GenerateResult, KeptModel, ModelInfo, ProfileResult};
use super::{options, WebError};
use crate::engine::bench::{self, PROFILE_CONTEXT_TOKENS, PROFILE_RUNS};
use crate::engine::{Engine, EngineError, GenerateOptions};
use crate::judge::dataset::{Record, Row};
use crate::judge::policy::{rubric_family, DEFAULTS};
use crate::judge::session::{Judge, JudgeEvent, Order};
use crate::judge::{render, Item, JudgeFamily};
use crate::kernels::Sampling;

enum State {
    Ready(Box<Judge>),
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

// `Judge` in JavaScript; `JsJudge` in Rust, beside the engine's `session::Judge` it holds.
/// A loaded judge model (Auto-J, Prometheus 2, or any webjudge model).
#[wasm_bindgen(js_name = Judge)]
pub struct JsJudge {
    shared: Rc<Shared>,
}

/// The usable judge behind `state`, or why there is none. A device loss recorded since
/// the last call is noticed here, before any work is queued on the dead device.
fn ready(state: &mut State) -> Result<&mut Judge, WebError> {
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

#[wasm_bindgen(js_class = Judge)]
impl JsJudge {
    /// Loads the model directory at `modelUrl` (made by `webjudge convert`): checks
    /// WebGPU and the adapter's limits, allocates every GPU buffer, then fetches,
    /// verifies and caches the shards.
    pub async fn load(
        #[wasm_bindgen(js_name = modelUrl)] model_url: String,
        #[wasm_bindgen(unchecked_optional_param_type = "LoadOptions")] options: Option<Object>,
    ) -> Result<JsJudge, JsValue> {
        let settings = LoadSettings::parse(options.as_ref())?;
        Ok(super::load::load(&model_url, settings).await?)
    }

    /// Removes the cached files of the model at `modelUrl` (a GGUF's kept model too), or
    /// every webjudge cache and kept model.
    #[wasm_bindgen(js_name = clearCache)]
    pub async fn clear_cache(#[wasm_bindgen(js_name = modelUrl)] model_url: Option<String>) -> Result<(), JsValue> {
        match &model_url {
            Some(url) => super::opfs::forget(&super::gguf::model_files(&loader::absolute_url(url)?)[0]).await,
            None => super::opfs::forget_all().await,
        }
        Ok(loader::clear(model_url.as_deref()).await?)
    }

    /// The GGUF models kept in this origin's Origin Private File System, by URL: the bytes
    /// each one's files take, its file's sha256 and whether that was verified.
    #[wasm_bindgen(js_name = keptModels, unchecked_return_type = "Promise<KeptModel[]>")]
    pub fn kept_models() -> Promise {
        wasm_bindgen_futures::future_to_promise(async {
            let kept: Vec<KeptModel> = super::opfs::list()
                .await
                .into_iter()
                .map(|(source, bytes)| KeptModel {
                    sha256: source.sha256(),
                    url: source.url,
                    bytes,
                    sha256_verified: source.verified,
                })
                .collect();
            Ok(types::to_js(&kept))
        })
    }

    /// Judges two responses to a query with Auto-J's pairwise protocol.
    #[wasm_bindgen(unchecked_return_type = "Promise<PairwiseResult>")]
    pub fn pairwise(
        &self,
        #[wasm_bindgen(unchecked_param_type = "{ query: string; response1: string; response2: string }")]
        input: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "JudgeOptions")] options: Option<Object>,
    ) -> Promise {
        self.judge(input, options, JudgeFamily::AutoJ, Asks::Pair)
    }

    /// Critiques and rates one response with Auto-J's single-response protocol.
    #[wasm_bindgen(unchecked_return_type = "Promise<SingleResult>")]
    pub fn single(
        &self,
        #[wasm_bindgen(unchecked_param_type = "{ query: string; response: string }")] input: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "JudgeOptions")] options: Option<Object>,
    ) -> Promise {
        self.judge(input, options, JudgeFamily::AutoJ, Asks::Single)
    }

    /// Grades one response against a rubric, 1 to 5, with Prometheus 2's absolute protocol
    /// (`prometheus_absolute`, or `prometheus_absolute_ref` with a reference answer); on a
    /// Selene Mini or Flow-Judge model with its own (`selene_absolute`, `flowjudge`, `_ref`).
    #[wasm_bindgen(unchecked_return_type = "Promise<ScoreResult>")]
    pub fn rubric(
        &self,
        #[wasm_bindgen(unchecked_param_type = "RubricInput")] input: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "RubricOptions")] options: Option<Object>,
    ) -> Promise {
        self.judge(input, options, JudgeFamily::Prometheus, Asks::Single)
    }

    /// Chooses the better of two responses under a rubric with Prometheus 2's relative
    /// protocol (`prometheus_relative`, or `prometheus_relative_ref` with a reference answer);
    /// on a Skywork-Critic, CompassJudger-1 or Selene Mini model with its own (`skywork`,
    /// `compassjudger`, `selene_pairwise`).
    #[wasm_bindgen(unchecked_return_type = "Promise<CompareResult>")]
    pub fn compare(
        &self,
        #[wasm_bindgen(unchecked_param_type = "CompareInput")] input: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "CompareOptions")] options: Option<Object>,
    ) -> Promise {
        self.judge(input, options, JudgeFamily::Prometheus, Asks::Pair)
    }

    /// Answers Yes or No for one response against criteria with Selene Mini's classification
    /// (`selene_classification`, or `selene_classification_ref` with a reference answer).
    #[wasm_bindgen(unchecked_return_type = "Promise<AnswerResult>")]
    pub fn classify(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ClassifyInput")] input: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "RubricOptions")] options: Option<Object>,
    ) -> Promise {
        self.judge(input, options, JudgeFamily::Selene, Asks::Answer)
    }

    /// Judges many items together, up to the loaded batch size at a time (with `swap`, each
    /// pair in both orders as two sequences of the batch) with one protocol (`batch_protocol`):
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
            let protocol = arguments::batch_protocol(o, items.get(0).dyn_ref(), shared.family())?;
            protocol.check_served_by(shared.family())?;
            let rubric = options::field(o, "rubric").map(options::rubric).transpose()?;
            let rows: Vec<Row> = items
                .iter()
                .enumerate()
                .map(|(position, input)| arguments::row(&input, position, protocol, rubric.as_ref()))
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
                max_tokens: options::opt_count(o, "maxNewTokens", 1)?.unwrap_or(DEFAULTS.generate_max_new_tokens),
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

/// Rust-side access (not exported to JavaScript).
impl JsJudge {
    /// One item: Auto-J's `pairwise`/`single` (its protocol by `language`), Prometheus'
    /// `compare`/`rubric` (with a reference answer when the input has one). A protocol of the
    /// other family than the model's, a missing rubric or reference answer are refused before
    /// the call waits its turn.
    fn judge(&self, input: JsValue, options: Option<Object>, family: JudgeFamily, asks: Asks) -> Promise {
        let shared = Rc::clone(&self.shared);
        promise((|| {
            let o = options.as_ref();
            let family = match family {
                JudgeFamily::AutoJ => JudgeFamily::AutoJ,
                _ => rubric_family(options::opt_family(o, "family")?, shared.family())?,
            };
            let protocol = arguments::item_protocol(o, &input, family, asks)?;
            protocol.check_served_by(shared.family())?;
            let item = arguments::item(&input, "input", protocol, None)?;
            render(protocol, &item)?;
            let call = JudgeCall::parse(o, protocol)?;
            Ok(async move { shared.judge_item(item, call).await })
        })())
    }

    /// A class over a loaded judge (`load.rs`).
    pub(super) fn new(judge: Judge, info: ModelInfo, stats: ShardStats) -> Self {
        Self {
            shared: Rc::new(Shared {
                state: futures_util::lock::Mutex::new(State::Ready(Box::new(judge))),
                info: RefCell::new(Some(info)),
                stats,
            }),
        }
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
