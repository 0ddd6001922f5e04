//! Getting a model directory into the browser: the manifest and tokenizer (network
//! first, the cached copy when offline), then the shards, a few at a time, with
//! byte-level progress, each verified against the manifest's sha256 before it is
//! uploaded and stored in the Cache API, retried with backoff and resumed with a Range
//! request after a network error. Only global `fetch`, `caches` and `setTimeout` are
//! used, so this runs in a window and in a dedicated worker alike.

use std::cell::{Cell, RefCell};

use js_sys::{Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, CacheStorage, ReadableStreamDefaultReader, RequestCache, RequestInit, Response};

use super::WebError;
use crate::format::Manifest;
use crate::model::LoadError;

/// The Cache API cache every webjudge model file goes into. A new layout of what is
/// stored gets a new name; [`clear`] without a model removes every `webjudge-` cache.
pub const CACHE_NAME: &str = "webjudge-v1";
const CACHE_PREFIX: &str = "webjudge-";

#[wasm_bindgen]
extern "C" {
    /// The global `fetch` (window or worker).
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(url: &str, init: &RequestInit) -> Promise;
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &js_sys::Function, ms: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
}

pub(super) fn js_message(value: &JsValue) -> String {
    match value.dyn_ref::<js_sys::Error>() {
        Some(error) => String::from(error.message()),
        None => value.as_string().unwrap_or_else(|| format!("{value:?}")),
    }
}

fn global_property(name: &str) -> Option<JsValue> {
    js_sys::Reflect::get(&js_sys::global(), &name.into()).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

/// Fails with a hint when the browser (or this context) has no `navigator.gpu`.
pub fn require_webgpu() -> Result<(), WebError> {
    let gpu = global_property("navigator")
        .and_then(|navigator| js_sys::Reflect::get(&navigator, &"gpu".into()).ok())
        .filter(|gpu| !gpu.is_undefined() && !gpu.is_null());
    match gpu {
        Some(_) => Ok(()),
        None => Err(WebError::WebGpuUnavailable(format!("navigator.gpu is missing; {}", super::error::WEBGPU_HINT))),
    }
}

/// `model_url` made absolute (against the page's or worker's location) with a trailing
/// slash, so shard names resolve inside it.
pub fn base_url(model_url: &str) -> Result<String, WebError> {
    let mut base = absolute_url(model_url)?;
    if !base.ends_with('/') {
        base.push('/');
    }
    Ok(base)
}

/// `model_url` made absolute against the page's or worker's location, without its query
/// and fragment.
pub fn absolute_url(model_url: &str) -> Result<String, WebError> {
    let location = global_property("location")
        .and_then(|l| js_sys::Reflect::get(&l, &"href".into()).ok())
        .and_then(|h| h.as_string());
    let url = match &location {
        Some(href) => web_sys::Url::new_with_base(model_url, href),
        None => web_sys::Url::new(model_url),
    }
    .map_err(|e| WebError::InvalidInput(format!("model URL {model_url:?} is not a URL: {}", js_message(&e))))?;
    let mut absolute = url.href();
    if let Some(cut) = absolute.find(['?', '#']) {
        absolute.truncate(cut);
    }
    Ok(absolute)
}

/// The Cache API cache, or `None` where the context has none (an insecure origin).
pub async fn open_cache() -> Option<Cache> {
    let storage: CacheStorage = global_property("caches")?.unchecked_into();
    JsFuture::from(storage.open(CACHE_NAME)).await.ok().map(JsCast::unchecked_into)
}

/// Where a shard is stored: its URL plus its hash, so a new model version at the same
/// URL never reads old bytes. A query, not a fragment: the Cache API ignores fragments.
pub fn shard_key(url: &str, sha256: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}webjudge-sha256={sha256}")
}

/// Removes the cached files of the model at `model_url`, or every webjudge cache.
pub async fn clear(model_url: Option<&str>) -> Result<(), WebError> {
    let Some(storage) = global_property("caches").map(JsCast::unchecked_into::<CacheStorage>) else {
        return Ok(());
    };
    let failed = |e: JsValue| WebError::Model(format!("clearing the cache failed: {}", js_message(&e)));
    match model_url {
        Some(url) => {
            let base = base_url(url)?;
            let cache: Cache = JsFuture::from(storage.open(CACHE_NAME)).await.map_err(failed)?.unchecked_into();
            let requests: js_sys::Array = JsFuture::from(cache.keys()).await.map_err(failed)?.unchecked_into();
            for request in requests.iter() {
                let request: web_sys::Request = request.unchecked_into();
                if request.url().starts_with(&base) {
                    JsFuture::from(cache.delete_with_request(&request)).await.map_err(failed)?;
                }
            }
        }
        None => {
            let names: js_sys::Array = JsFuture::from(storage.keys()).await.map_err(failed)?.unchecked_into();
            for name in names.iter().filter_map(|n| n.as_string()) {
                if name.starts_with(CACHE_PREFIX) {
                    JsFuture::from(storage.delete(&name)).await.map_err(failed)?;
                }
            }
        }
    }
    Ok(())
}

pub(super) async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms);
    });
    // A timer promise never rejects.
    let _ = JsFuture::from(promise).await;
}

fn request(cache: RequestCache, range_from: u64) -> RequestInit {
    let init = RequestInit::new();
    init.set_cache(cache);
    if range_from > 0 {
        let headers = web_sys::Headers::new().expect("Headers constructor");
        headers.set("Range", &format!("bytes={range_from}-")).expect("Range is a valid header");
        init.set_headers(&headers);
    }
    init
}

pub(super) async fn fetch(url: &str, init: &RequestInit) -> Result<Response, JsValue> {
    Ok(JsFuture::from(global_fetch(url, init)).await?.unchecked_into())
}

/// A small file of the model directory as text: from the network (revalidating the
/// HTTP cache, so a republished model is seen) and stored in `cache`; the stored copy
/// when the network cannot be reached.
pub async fn fetch_text(url: &str, cache: Option<&Cache>) -> Result<String, WebError> {
    let network_error = match fetch(url, &request(RequestCache::NoCache, 0)).await {
        Ok(response) if response.ok() => {
            let text = response_text(&response, url).await?;
            if let Some(cache) = cache {
                let copy = Response::new_with_opt_str(Some(&text)).expect("Response from a string");
                // A full quota only costs the offline copy.
                let _ = JsFuture::from(cache.put_with_str(url, &copy)).await;
            }
            return Ok(text);
        }
        Ok(response) => return Err(WebError::Network(format!("GET {url}: HTTP {}", response.status()))),
        Err(error) => js_message(&error),
    };
    if let Some(cache) = cache {
        if let Ok(found) = JsFuture::from(cache.match_with_str(url)).await {
            if let Ok(response) = found.dyn_into::<Response>() {
                return response_text(&response, url).await;
            }
        }
    }
    Err(WebError::Network(format!("GET {url} failed and no cached copy exists: {network_error}")))
}

async fn response_text(response: &Response, url: &str) -> Result<String, WebError> {
    let promise = response.text().map_err(|e| WebError::Network(format!("reading {url}: {}", js_message(&e))))?;
    let text =
        JsFuture::from(promise).await.map_err(|e| WebError::Network(format!("reading {url}: {}", js_message(&e))))?;
    Ok(text.as_string().unwrap_or_default())
}

#[derive(Clone, Debug)]
pub struct ShardOptions {
    /// Shards in flight at once (and so in wasm memory at once).
    pub parallel: usize,
    /// Further attempts per shard after a network error or a hash mismatch.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff_ms: i32,
    /// A transfer that delivers no bytes for this long is aborted and retried: a
    /// stalled connection reports no error by itself.
    pub stall_ms: i32,
}

impl Default for ShardOptions {
    fn default() -> Self {
        Self { parallel: 3, retries: 4, backoff_ms: 250, stall_ms: 30_000 }
    }
}

/// Aborts a transfer when it has been silent for `ms`; re-armed on every chunk.
pub(super) struct Watchdog {
    ms: i32,
    timer: JsValue,
    fired: std::rc::Rc<Cell<bool>>,
    abort: Closure<dyn FnMut()>,
}

impl Watchdog {
    pub(super) fn new(controller: web_sys::AbortController, ms: i32) -> Self {
        let fired = std::rc::Rc::new(Cell::new(false));
        let flag = std::rc::Rc::clone(&fired);
        let abort = Closure::<dyn FnMut()>::new(move || {
            flag.set(true);
            controller.abort();
        });
        let timer = set_timeout(abort.as_ref().unchecked_ref(), ms);
        Self { ms, timer, fired, abort }
    }

    pub(super) fn rearm(&mut self) {
        clear_timeout(&self.timer);
        self.timer = set_timeout(self.abort.as_ref().unchecked_ref(), self.ms);
    }

    /// Why a failed transfer failed: the watchdog's abort, or the network's error.
    pub(super) fn explain(&self, error: &JsValue) -> String {
        match self.fired.get() {
            true => format!("no data for {} ms", self.ms),
            false => js_message(error),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        clear_timeout(&self.timer);
    }
}

/// What a shard load did, for `info()` and for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Shards read from the Cache API (and verified).
    pub from_cache: usize,
    /// Shards fetched from the network.
    pub downloaded: usize,
    /// Bytes received from the network, retries included.
    pub downloaded_bytes: u64,
    /// Shard copies rejected for their size or hash (from the network or the cache).
    pub rejected: usize,
    /// Transfers continued with a Range request after a network error.
    pub resumed: usize,
    /// Network attempts that failed and were retried.
    pub retried: usize,
}

/// How a transfer attempt ended when it did not deliver all bytes.
enum Transfer {
    /// Worth another attempt (a network error, a server error status).
    Retry(String),
    /// The server sent more bytes than the manifest lists: a wrong file, like a bad hash.
    Oversized(String),
    /// Never worth one (not found, forbidden).
    Fatal(WebError),
}

/// Takes a shard's bytes (index, bytes): verifies its size and sha256 and uploads it.
pub type Accept<'a> = dyn Fn(usize, &[u8]) -> Result<(), LoadError> + 'a;

/// Loads every shard of `manifest` from `base`, `options.parallel` at a time, handing
/// each one's bytes to `accept`, which verifies them (size and sha256) and uploads them;
/// bytes it rejects are never cached. `progress(loaded, total)` counts shard bytes
/// received or taken from the cache.
pub async fn load_shards(
    base: &str,
    manifest: &Manifest,
    cache: Option<&Cache>,
    options: &ShardOptions,
    progress: &dyn Fn(u64, u64),
    accept: &Accept<'_>,
) -> Result<ShardStats, WebError> {
    let run = ShardRun {
        base,
        manifest,
        cache,
        options,
        progress,
        accept,
        total: manifest.total_bytes(),
        loaded: Cell::new(0),
        reported: Cell::new(0),
        next: Cell::new(0),
        failure: RefCell::new(None),
        stats: RefCell::new(ShardStats::default()),
    };
    progress(0, run.total);
    let workers = options.parallel.clamp(1, manifest.shards.len().max(1));
    futures_util::future::join_all((0..workers).map(|_| run.worker())).await;
    if let Some(error) = run.failure.take() {
        return Err(error);
    }
    progress(run.total, run.total);
    Ok(run.stats.take())
}

struct ShardRun<'a> {
    base: &'a str,
    manifest: &'a Manifest,
    cache: Option<&'a Cache>,
    options: &'a ShardOptions,
    progress: &'a dyn Fn(u64, u64),
    accept: &'a Accept<'a>,
    total: u64,
    loaded: Cell<u64>,
    reported: Cell<u64>,
    next: Cell<usize>,
    failure: RefCell<Option<WebError>>,
    stats: RefCell<ShardStats>,
}

/// Progress is reported at most every this many bytes (and at the end): a 7 GB model
/// arrives in ~100,000 network chunks.
pub(super) const PROGRESS_STEP: u64 = 1 << 20;

impl ShardRun<'_> {
    /// Takes shards from the shared queue until none is left or one has failed.
    async fn worker(&self) {
        loop {
            let index = self.next.get();
            if index >= self.manifest.shards.len() || self.failure.borrow().is_some() {
                return;
            }
            self.next.set(index + 1);
            if let Err(error) = self.shard(index).await {
                self.failure.borrow_mut().get_or_insert(error);
            }
        }
    }

    fn add(&self, bytes: u64) {
        self.loaded.set(self.loaded.get() + bytes);
        self.report();
    }

    /// Bytes that were counted and must be fetched again.
    fn take_back(&self, bytes: u64) {
        self.loaded.set(self.loaded.get().saturating_sub(bytes));
        self.report();
    }

    fn report(&self) {
        let loaded = self.loaded.get();
        if loaded.abs_diff(self.reported.get()) >= PROGRESS_STEP || loaded == self.total {
            self.reported.set(loaded);
            (self.progress)(loaded, self.total);
        }
    }

    fn is_corrupt(error: &LoadError) -> bool {
        matches!(error, LoadError::ShardHash { .. } | LoadError::ShardSize { .. })
    }

    async fn shard(&self, index: usize) -> Result<(), WebError> {
        let shard = &self.manifest.shards[index];
        let url = format!("{}{}", self.base, shard.file);
        let key = shard_key(&url, &shard.sha256);
        if let Some(cache) = self.cache {
            if let Some(bytes) = cached(cache, &key).await {
                self.add(bytes.len() as u64);
                match (self.accept)(index, &bytes) {
                    Ok(()) => {
                        self.stats.borrow_mut().from_cache += 1;
                        return Ok(());
                    }
                    Err(error) if Self::is_corrupt(&error) => {
                        // Storage went bad under us: forget the copy and download anew.
                        self.stats.borrow_mut().rejected += 1;
                        self.take_back(bytes.len() as u64);
                        let _ = JsFuture::from(cache.delete_with_str(&key)).await;
                    }
                    Err(error) => return Err(error.into()),
                }
            }
        }
        let mut bytes = Vec::with_capacity(shard.size as usize);
        let mut failures = 0;
        loop {
            let outcome = self.download(&url, shard.size, &mut bytes).await;
            let problem = match outcome {
                Ok(()) => match (self.accept)(index, &bytes) {
                    Ok(()) => {
                        self.stats.borrow_mut().downloaded += 1;
                        if let Some(cache) = self.cache {
                            store(cache, &key, &mut bytes).await;
                        }
                        return Ok(());
                    }
                    Err(error) if Self::is_corrupt(&error) => {
                        self.stats.borrow_mut().rejected += 1;
                        self.take_back(bytes.len() as u64);
                        bytes.clear();
                        WebError::CorruptShard(error.to_string())
                    }
                    Err(error) => return Err(error.into()),
                },
                Err(Transfer::Oversized(message)) => {
                    self.stats.borrow_mut().rejected += 1;
                    self.take_back(bytes.len() as u64);
                    bytes.clear();
                    WebError::CorruptShard(message)
                }
                Err(Transfer::Retry(message)) => WebError::Network(message),
                Err(Transfer::Fatal(error)) => return Err(error),
            };
            failures += 1;
            if failures > self.options.retries {
                return Err(match problem {
                    WebError::CorruptShard(m) => {
                        WebError::CorruptShard(format!("{m} ({failures} downloads, none matched)"))
                    }
                    WebError::Network(m) => WebError::Network(format!("{m} (gave up after {failures} attempts)")),
                    other => other,
                });
            }
            self.stats.borrow_mut().retried += 1;
            sleep(self.options.backoff_ms.saturating_mul(1i32 << (failures - 1).min(6))).await;
        }
    }

    /// One transfer attempt: appends the shard's bytes to `bytes`, continuing after the
    /// ones already there with a Range request (restarting if the server ignores it).
    async fn download(&self, url: &str, size: u64, bytes: &mut Vec<u8>) -> Result<(), Transfer> {
        let from = bytes.len() as u64;
        // `no-store`: the Cache API keeps the verified copy; the HTTP cache would keep a
        // second, unverified one (and could hand back the bad bytes being replaced).
        let init = request(RequestCache::NoStore, from);
        let controller = web_sys::AbortController::new().expect("AbortController constructor");
        init.set_signal(Some(&controller.signal()));
        let mut watchdog = Watchdog::new(controller, self.options.stall_ms);
        let response =
            fetch(url, &init).await.map_err(|e| Transfer::Retry(format!("GET {url}: {}", watchdog.explain(&e))))?;
        match response.status() {
            206 if from > 0 => self.stats.borrow_mut().resumed += 1,
            200 => {
                if from > 0 {
                    self.take_back(from);
                    bytes.clear();
                }
            }
            status @ (408 | 416 | 425 | 429 | 500..=599) => {
                // 416: the partial bytes no longer match the file: start over.
                if status == 416 {
                    self.take_back(from);
                    bytes.clear();
                }
                return Err(Transfer::Retry(format!("GET {url}: HTTP {status}")));
            }
            status => return Err(Transfer::Fatal(WebError::Network(format!("GET {url}: HTTP {status}")))),
        }
        let body = response.body().ok_or_else(|| Transfer::Retry(format!("GET {url}: the response has no body")))?;
        let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
        loop {
            let chunk = JsFuture::from(reader.read())
                .await
                .map_err(|e| Transfer::Retry(format!("GET {url}: the transfer broke off: {}", watchdog.explain(&e))))?;
            watchdog.rearm();
            let done = js_sys::Reflect::get(&chunk, &"done".into()).map(|d| d.is_truthy()).unwrap_or(true);
            if done {
                return Ok(());
            }
            let value: Uint8Array = js_sys::Reflect::get(&chunk, &"value".into())
                .map_err(|e| Transfer::Retry(js_message(&e)))?
                .unchecked_into();
            let start = bytes.len();
            let length = value.length() as usize;
            if (start + length) as u64 > size {
                // Stop before holding an unbounded body in memory.
                let _ = reader.cancel();
                return Err(Transfer::Oversized(format!("GET {url}: more than the manifest's {size} bytes")));
            }
            bytes.resize(start + length, 0);
            value.copy_to(&mut bytes[start..]);
            self.stats.borrow_mut().downloaded_bytes += length as u64;
            self.add(length as u64);
        }
    }
}

/// A shard's stored bytes, if the cache has them.
async fn cached(cache: &Cache, key: &str) -> Option<Vec<u8>> {
    let found = JsFuture::from(cache.match_with_str(key)).await.ok()?;
    let response: Response = found.dyn_into().ok()?;
    let buffer = JsFuture::from(response.array_buffer().ok()?).await.ok()?;
    Some(Uint8Array::new(&buffer).to_vec())
}

/// Stores verified shard bytes. A failure (a full quota) only means the next load
/// downloads the shard again, so it is logged, not raised.
async fn store(cache: &Cache, key: &str, bytes: &mut [u8]) {
    let stored = match Response::new_with_opt_u8_array(Some(bytes)) {
        Ok(response) => JsFuture::from(cache.put_with_str(key, &response)).await.map(drop),
        Err(error) => Err(error),
    };
    if let Err(error) = stored {
        web_sys::console::warn_1(&format!("webjudge: not cached: {key}: {}", js_message(&error)).into());
    }
}
