//! `Judge.load` of a GGUF URL (a Hugging Face Hub `resolve` link, or any server with CORS and
//! byte ranges): the header by range requests of growing prefixes, the plan and the fit
//! checked and every weight buffer allocated before the weights are fetched, then the file
//! streamed from its first byte by range requests into [`GgufStream`], each part repacked and
//! uploaded as it completes, never the whole file in memory. A broken transfer resumes where
//! it stopped (a Range request from the bytes received); the file's sha256 is checked once it
//! has arrived against the caller's (`sha256`) or the host's (`X-Linked-Etag`, the Hub's LFS
//! hash, or for a Hub `resolve` link whose redirect hides it, the Hub API's `lfs.oid`), and a
//! mismatch leaves nothing loaded. The repacked model is kept in the Origin
//! Private File System ([`opfs`]) once verified (replacing the copy kept before only then),
//! and the next load of the URL reads it from there, fetching no weights (one byte, to see
//! whether the file changed).
//!
//! llama.cpp's split files (`NAME-00001-of-00003.gguf` …, any part's URL) load as one model:
//! every part's header first, joined as natively ([`GgufFile::join_splits`]), then the parts
//! streamed in order into one [`GgufStream`] as if laid end to end, each checked against its
//! own sha256 as it ends; the model is kept under the first part's URL, and its next load
//! probes one byte of each part.

use std::collections::HashMap;

use js_sys::Uint8Array;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStreamDefaultReader, RequestCache, Response};

use super::arguments::LoadSettings;
use super::class::JsJudge;
use super::load::LoadedFrom;
use super::loader::{self, ShardStats, Watchdog};
use super::opfs::{self, Keeper, Kept, Source, SourceFile};
use super::WebError;
use crate::format::gguf::{split_name, GgufFile};
use crate::format::manifest::DEFAULT_SHARD_BYTES;
use crate::format::Manifest;
use crate::import::gguf::{GgufPlan, ImportOptions};
use crate::import::hub::HubFile;
use crate::import::stream::{GgufStream, StreamedFile};
use crate::model::{allocate_tensors, ShardUploader};
use crate::tokenizer::Tokenizer;

/// The first prefix fetched for the header; doubled until it holds the header.
const FIRST_PREFIX_BYTES: u64 = 4 << 20;
/// No GGUF header is larger (a 256k-token vocabulary with merges takes some 10 MB).
const MAX_HEADER_BYTES: u64 = 256 << 20;

/// Whether `model_url` names a GGUF file (its path ends in `.gguf`) rather than a model
/// directory.
pub fn is_gguf_url(model_url: &str) -> bool {
    let path = model_url.split(['?', '#']).next().unwrap_or("");
    path.to_ascii_lowercase().ends_with(".gguf")
}

/// The URLs of the files the GGUF model at `url` is made of: the file itself, or where its
/// name is a llama.cpp split part's (`NAME-00002-of-00003.gguf`) every part, in order. The
/// first is the model's URL, which it is kept under.
pub fn model_files(url: &str) -> Vec<String> {
    let (path, query) = url.split_at(url.find(['?', '#']).unwrap_or(url.len()));
    let (folder, name) = path.rsplit_once('/').unwrap_or(("", path));
    match split_name(name) {
        Some((_, count, part_name)) => (1..=count).map(|n| format!("{folder}/{}{query}", part_name(n))).collect(),
        None => vec![url.to_owned()],
    }
}

/// One file of the model being downloaded: the whole GGUF, or one split part.
struct RemoteFile {
    url: String,
    size: u64,
    /// Where it starts in the files laid end to end.
    start: u64,
}

/// `Judge.load` of the GGUF at `model_url`.
pub async fn load(model_url: &str, settings: LoadSettings) -> Result<JsJudge, WebError> {
    loader::require_webgpu()?;
    let given = loader::absolute_url(model_url)?;
    let urls = model_files(&given);
    let url = urls[0].clone();
    check_signal(&url, &settings, || "before anything was fetched".into())?;
    let given_sha256 = given_hashes(&url, urls.len(), settings.sha256.as_deref())?;
    // A kept copy that is no longer the file (or not the hash asked for) stays kept until a
    // download of the file as it is now has been verified.
    let mut kept = opfs::kept(&url).await;
    if let Some(copy) = &kept {
        if still_current(&urls, &copy.source, given_sha256.as_deref()).await {
            match load_kept(&url, copy, &settings).await {
                Err(WebError::CorruptShard(why)) => {
                    let note = format!("webjudge: the kept copy of {url} is damaged ({why}): downloading it again");
                    web_sys::console::warn_1(&note.into());
                    if let Some(damaged) = kept.take() {
                        damaged.remove().await;
                    }
                }
                loaded => return loaded,
            }
        }
    }
    let (header, files, linked) = fetch_headers(&urls).await?;
    let starts: Vec<u64> = files.iter().map(|file| file.start).collect();
    let mut apart = crate::import::gguf::ApartTensors::new();
    for (name, range) in GgufPlan::apart_ranges(&header).map_err(|e| model_error(&url, e))? {
        let (index, range) = GgufFile::split_part_range(&starts, range);
        apart.insert(name, fetch_range(&files[index].url, range.start, range.end).await?.0);
    }
    let file_name = given.rsplit('/').next().filter(|n| !n.is_empty());
    let plan =
        GgufPlan::new(&header, file_name, &ImportOptions::default(), &apart).map_err(|e| model_error(&url, e))?;
    check_signal(&url, &settings, || "before its weights were fetched".into())?;
    let mut expected = given_sha256.map_or(linked, |hashes| hashes.into_iter().map(Some).collect());
    let mut listings = HubListings::default();
    for (file, hash) in files.iter().zip(expected.iter_mut()).filter(|(_, hash)| hash.is_none()) {
        *hash = listings.sha256(&file.url).await;
        if hash.is_none() {
            let note = format!(
                "webjudge: {} comes with no sha256 (no X-Linked-Etag, no Hub API listing, no sha256 option): not verified",
                file.url
            );
            web_sys::console::warn_1(&note.into());
        }
    }
    let verified = expected.iter().all(Option::is_some);
    let streamed_files = files
        .iter()
        .zip(&expected)
        .map(|(file, hash)| StreamedFile { size: file.size, expected_sha256: hash.clone() })
        .collect();
    let mut stream = GgufStream::new(plan, streamed_files, DEFAULT_SHARD_BYTES);
    // The manifest the fit is estimated from: the layout, before any weight arrives.
    let planned = Manifest {
        format_version: 0,
        architecture: stream.plan().architecture.clone(),
        chat_template: None,
        judge: None,
        tensors: stream.entries().to_vec(),
        shards: Vec::new(),
    };
    let prepared = super::load::prepare(&planned, &settings).await?;
    let device = prepared.gpu.device.clone();
    let weights =
        super::load::allocate(&prepared, &planned, || allocate_tensors(&prepared.gpu, stream.entries())).await;
    let (weights, estimate) = weights.inspect_err(|_| device.destroy())?;
    let progress = super::load::progress_callback(&settings);
    let mut stats = ShardStats::default();
    let mut keeper = Keeper::start(&url, kept.as_ref()).await;
    let mut upload = |name: &str, part: usize, bytes: &[u8]| weights[name].write_part(&prepared.gpu, part, bytes);
    let streamed = download(&files, &mut stream, &settings, &progress, &mut stats, &mut keeper, &mut upload).await;
    if let Err(error) = streamed {
        device.destroy();
        keeper.discard().await;
        return Err(error);
    }
    let model = match stream.finish() {
        Ok(model) => model,
        Err(error) => {
            device.destroy();
            keeper.discard().await;
            return Err(WebError::CorruptShard(format!("{url}: {error}")));
        }
    };
    let kept_files = files.iter().zip(model.sha256).map(|(file, sha256)| SourceFile { size: file.size, sha256 });
    let source = Source { url: url.clone(), files: kept_files.collect(), verified };
    keeper.commit(&model.manifest.to_json(), &model.plan.tokenizer_json, &source).await;
    stats.downloaded = 1;
    let tokenizer = model.plan.tokenizer;
    super::load::finish(prepared, estimate, weights, model.manifest, tokenizer, LoadedFrom::Gguf(source), stats).await
}

/// The header of the model made of the files at `urls` (one, or a split model's parts, joined
/// as [`GgufFile::join_splits`] joins them), each file with where it starts, and the sha256 its
/// host publishes for each, where it does.
async fn fetch_headers(urls: &[String]) -> Result<(GgufFile, Vec<RemoteFile>, Vec<Option<String>>), WebError> {
    let mut files = Vec::new();
    let mut headers = Vec::new();
    let mut linked = Vec::new();
    for (index, url) in urls.iter().enumerate() {
        let fetched = fetch_header(url).await;
        let (header, size, hash) = fetched.map_err(|error| in_split(error, &urls[0], index, urls.len()))?;
        let start = files.last().map_or(0, |file: &RemoteFile| file.start + file.size);
        files.push(RemoteFile { url: url.clone(), size, start });
        headers.push(header);
        linked.push(hash);
    }
    let header = match headers.len() {
        1 => headers.pop().expect("one header"),
        _ => GgufFile::join_splits(headers).map_err(|e| model_error(&urls[0], e))?,
    };
    Ok((header, files, linked))
}

/// The `sha256` option's hashes for a model of `count` files: one per file, in order (a split
/// model's parts' separated by commas).
fn given_hashes(url: &str, count: usize, given: Option<&[String]>) -> Result<Option<Vec<String>>, WebError> {
    match given {
        Some(hashes) if hashes.len() != count => {
            let takes = match count {
                1 => format!("{url} is one file: sha256 takes its one hash"),
                _ => format!(
                    "{url} is a split model of {count} parts: sha256 takes their {count} hashes in order, \
                     separated by commas"
                ),
            };
            Err(WebError::InvalidInput(format!("{takes}; {} given", hashes.len())))
        }
        given => Ok(given.map(<[String]>::to_vec)),
    }
}

/// `error`, from part `index` of a split model of `count` parts, saying which part it is.
fn in_split(error: WebError, url: &str, index: usize, count: usize) -> WebError {
    let context = |message: String| format!("{url}: split part {} of {count}: {message}", index + 1);
    match error {
        _ if count == 1 => error,
        WebError::Network(message) => WebError::Network(context(message)),
        WebError::Model(message) => WebError::Model(context(message)),
        other => other,
    }
}

/// Whether the model kept for `urls` (its files) is still the files there: the host's size
/// and hash of each now (a one-byte range request each, and for a Hub link whose answer hides
/// the hash, the Hub API's listing) are those recorded, and the page expects no other hashes.
/// Offline, the kept model is used as it is.
async fn still_current(urls: &[String], kept: &Source, expected: Option<&[String]>) -> bool {
    let kept_hashes = || kept.files.iter().map(|file| &file.sha256);
    if kept.files.len() != urls.len() || expected.is_some_and(|hashes| !hashes.iter().eq(kept_hashes())) {
        return false;
    }
    let mut listings = HubListings::default();
    for (url, file) in urls.iter().zip(&kept.files) {
        match fetch_range(url, 0, 1).await {
            Ok((_, size, linked)) if size == file.size => {
                // Where the answer hides the host's hash (a Hub link behind its CDN redirect),
                // the Hub API's listing gives it.
                let published = match linked {
                    Some(hash) => Some(hash),
                    None => listings.sha256(url).await,
                };
                if published.is_some_and(|hash| hash != file.sha256) {
                    return false;
                }
            }
            Err(WebError::Network(_)) => {}
            _ => return false,
        }
    }
    true
}

/// Loads the model kept for `url`: its shards read from the OPFS, each verified against the
/// kept manifest (a damaged one is `CorruptShard`).
async fn load_kept(url: &str, kept: &Kept, settings: &LoadSettings) -> Result<JsJudge, WebError> {
    let manifest = Manifest::from_json(&kept.manifest).map_err(|e| model_error(url, e))?;
    let tokenizer = Tokenizer::from_json(&kept.tokenizer).map_err(|e| model_error(url, e))?;
    let prepared = super::load::prepare(&manifest, settings).await?;
    let device = prepared.gpu.device.clone();
    let progress = super::load::progress_callback(settings);
    let uploaded = async {
        let make = || ShardUploader::new(&prepared.gpu, &manifest);
        let (mut uploader, estimate) = super::load::allocate(&prepared, &manifest, make).await?;
        let total = manifest.total_bytes();
        let mut done = 0;
        progress(done, total);
        for (index, shard) in manifest.shards.iter().enumerate() {
            check_signal(url, settings, || {
                format!("after {done} of {total} bytes read from its kept copy, which stays")
            })?;
            let bytes = kept.shard(index).await.map_err(WebError::CorruptShard)?;
            uploader.upload_shard(index, &bytes).map_err(|e| WebError::CorruptShard(e.to_string()))?;
            done += shard.size;
            progress(done, total);
        }
        Ok::<_, WebError>((uploader.finish()?, estimate))
    };
    let (weights, estimate) = match uploaded.await {
        Ok(done) => done,
        Err(error) => {
            device.destroy();
            return Err(error);
        }
    };
    let stats = ShardStats { from_cache: manifest.shards.len(), ..ShardStats::default() };
    let from = LoadedFrom::Gguf(kept.source.clone());
    super::load::finish(prepared, estimate, weights, manifest, tokenizer, from, stats).await
}

/// `Aborted` once the caller's `signal` has been aborted; `at` says how far the load got.
fn check_signal(url: &str, settings: &LoadSettings, at: impl FnOnce() -> String) -> Result<(), WebError> {
    match &settings.signal {
        Some(signal) if signal.aborted() => {
            Err(WebError::Aborted(format!("{url}: the load was cancelled (its signal was aborted) {}", at())))
        }
        _ => Ok(()),
    }
}

fn model_error(url: &str, error: impl std::fmt::Display) -> WebError {
    WebError::Model(format!("{url}: {error}"))
}

/// The header, from prefixes fetched by range requests and doubled until one holds it; the
/// file's size; and the sha256 its host publishes (`X-Linked-Etag`), where it does.
async fn fetch_header(url: &str) -> Result<(GgufFile, u64, Option<String>), WebError> {
    let mut length = FIRST_PREFIX_BYTES;
    loop {
        let (prefix, file_size, linked) = fetch_range(url, 0, length).await?;
        match GgufFile::read_prefix(&prefix, file_size).map_err(|e| model_error(url, e))? {
            Some(header) => return Ok((header, file_size, linked)),
            None if length < MAX_HEADER_BYTES && length < file_size => length *= 2,
            None => return Err(model_error(url, format!("no GGUF header within its first {length} bytes"))),
        }
    }
}

/// Bytes `start..end` of `url` (fewer where the file ends first), the file's size from the
/// `Content-Range`, and its `X-Linked-Etag` if it is a sha256.
async fn fetch_range(url: &str, start: u64, end: u64) -> Result<(Vec<u8>, u64, Option<String>), WebError> {
    let response = range_request(url, start, Some(end), None).await.map_err(WebError::Network)?;
    let file_size = checked_range(url, &response, start)?;
    let buffer =
        JsFuture::from(response.array_buffer().map_err(|e| network(url, &e))?).await.map_err(|e| network(url, &e))?;
    Ok((Uint8Array::new(&buffer).to_vec(), file_size, linked_sha256(&response)))
}

fn network(url: &str, error: &wasm_bindgen::JsValue) -> WebError {
    WebError::Network(format!("GET {url}: {}", loader::js_message(error)))
}

/// A `Range: bytes=start-[end-1]` request (never from the HTTP cache: the stream verifies
/// the file as a whole).
async fn range_request(
    url: &str,
    start: u64,
    end: Option<u64>,
    signal: Option<&web_sys::AbortSignal>,
) -> Result<Response, String> {
    let init = web_sys::RequestInit::new();
    init.set_cache(RequestCache::NoStore);
    let headers = web_sys::Headers::new().expect("Headers constructor");
    let last = end.map_or(String::new(), |end| (end - 1).to_string());
    headers.set("Range", &format!("bytes={start}-{last}")).expect("Range is a valid header");
    init.set_headers(&headers);
    init.set_signal(signal);
    loader::fetch(url, &init).await.map_err(|e| format!("GET {url}: {}", loader::js_message(&e)))
}

/// The file's size from a 206 answer starting at `start`; a server that ignores ranges is
/// refused (it would send the whole file into memory).
fn checked_range(url: &str, response: &Response, start: u64) -> Result<u64, WebError> {
    if let status @ (404 | 410) = response.status() {
        return Err(WebError::Network(format!("GET {url}: HTTP {status}: no such file")));
    }
    if response.status() != 206 {
        return Err(WebError::Network(format!(
            "GET {url}: HTTP {} to a range request; a GGUF is loaded from a server that serves byte ranges",
            response.status()
        )));
    }
    let content_range = response.headers().get("Content-Range").ok().flatten().unwrap_or_default();
    let parsed = content_range.strip_prefix("bytes ").and_then(|r| r.split_once('/')).and_then(|(span, size)| {
        let first = span.split('-').next()?.parse::<u64>().ok()?;
        Some((first, size.parse::<u64>().ok()?))
    });
    match parsed {
        Some((first, size)) if first == start => Ok(size),
        _ => Err(WebError::Network(format!(
            "GET {url}: Content-Range {content_range:?} is not bytes {start}-…/SIZE (not exposed by CORS?)"
        ))),
    }
}

/// The Hub API's folder listings one load has read, by listing URL: a split model's parts,
/// which lie in one folder, cost one request.
#[derive(Default)]
struct HubListings(HashMap<String, Option<String>>);

impl HubListings {
    /// The sha256 the Hub's API lists for `url`, when it is a Hub `resolve` link and the API
    /// answers ([`HubFile`]); `None` otherwise, and the load says it is not verified.
    async fn sha256(&mut self, url: &str) -> Option<String> {
        let file = HubFile::parse(url)?;
        let tree = file.tree_url();
        if !self.0.contains_key(&tree) {
            let listing = loader::fetch_text(&tree, None).await.ok();
            self.0.insert(tree.clone(), listing);
        }
        let path = js_sys::decode_uri_component(file.path()).ok()?.as_string()?;
        HubFile::sha256_in(self.0[&tree].as_deref()?, &path)
    }
}

/// The sha256 a host publishes for the file: the Hub's `X-Linked-Etag` (the LFS object id,
/// quoted), where CORS lets the page read it.
fn linked_sha256(response: &Response) -> Option<String> {
    let etag = response.headers().get("X-Linked-Etag").ok().flatten()?;
    let hash = etag.trim_start_matches("W/").trim_matches('"').to_ascii_lowercase();
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hash)
}

/// Streams `files` (laid end to end) into `stream` from its first byte, resuming after a
/// broken transfer from the bytes received, `settings.shards.retries` times with backoff,
/// until the caller's `signal` is aborted; each completed part goes to `upload(tensor name,
/// part index, bytes)`.
async fn download(
    files: &[RemoteFile],
    stream: &mut GgufStream,
    settings: &LoadSettings,
    progress: &dyn Fn(u64, u64),
    stats: &mut ShardStats,
    keeper: &mut Keeper,
    upload: &mut dyn FnMut(&str, usize, &[u8]),
) -> Result<(), WebError> {
    let options = &settings.shards;
    let size = stream.file_size();
    let mut failures = 0u32;
    progress(0, size);
    while stream.received() < size {
        let from = stream.received();
        let file = files.iter().rev().find(|file| file.start <= from).expect("the first file starts at 0");
        let url = &file.url;
        if from > file.start {
            stats.resumed += 1;
        }
        let ended = match transfer(file, stream, settings, progress, stats, keeper, upload).await {
            Err(Attempt::Refused(error)) => return Err(error),
            Ok(()) if stream.received() == file.start + file.size => continue,
            Ok(()) => {
                let received = stream.received() - file.start;
                format!("GET {url}: the response ended at byte {received} of {}", file.size)
            }
            Err(Attempt::Broken(message)) => message,
        };
        // The caller's abort breaks a transfer off too.
        let received = stream.received();
        check_signal(url, settings, || format!("at byte {received} of {size}; nothing of the download was kept"))?;
        // An attempt that brought bytes starts the count again: a long download over a
        // flaky network goes on as long as it moves.
        failures = if stream.received() > from { 1 } else { failures + 1 };
        if failures > options.retries {
            return Err(WebError::Network(format!("{ended} (gave up after {failures} attempts without progress)")));
        }
        stats.retried += 1;
        loader::sleep(options.backoff_ms.saturating_mul(1i32 << (failures - 1).min(6))).await;
    }
    progress(size, size);
    Ok(())
}

/// How one transfer attempt ended short of the file's end.
enum Attempt {
    /// Worth resuming (a network error, a stall, a server error status).
    Broken(String),
    /// Never worth it: the bytes are not the file the header described, or the server
    /// refuses.
    Refused(WebError),
}

/// One range request from the bytes of `file` received to its end, pushed into `stream`
/// chunk by chunk; the stall watchdog and the caller's `signal` abort it.
async fn transfer(
    file: &RemoteFile,
    stream: &mut GgufStream,
    settings: &LoadSettings,
    progress: &dyn Fn(u64, u64),
    stats: &mut ShardStats,
    keeper: &mut Keeper,
    upload: &mut dyn FnMut(&str, usize, &[u8]),
) -> Result<(), Attempt> {
    let url = &file.url;
    let from = stream.received() - file.start;
    let controller = web_sys::AbortController::new().expect("AbortController constructor");
    let mut watchdog = Watchdog::new(controller.clone(), settings.shards.stall_ms);
    let signal = match &settings.signal {
        Some(caller) => web_sys::AbortSignal::any(&js_sys::Array::of2(caller, &controller.signal())),
        None => controller.signal(),
    };
    let response = range_request(url, from, None, Some(&signal)).await.map_err(Attempt::Broken)?;
    match response.status() {
        206 => {}
        status @ (408 | 425 | 429 | 500..=599) => return Err(Attempt::Broken(format!("GET {url}: HTTP {status}"))),
        _ => {}
    }
    let file_size = checked_range(url, &response, from).map_err(Attempt::Refused)?;
    if file_size != file.size {
        return Err(Attempt::Refused(WebError::CorruptShard(format!(
            "{url} changed while loading: {file_size} bytes now, {} when its header was read",
            file.size
        ))));
    }
    let body = response.body().ok_or_else(|| Attempt::Broken(format!("GET {url}: the response has no body")))?;
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let total = stream.file_size();
    let mut reported = stream.received();
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|e| Attempt::Broken(format!("GET {url}: the transfer broke off: {}", watchdog.explain(&e))))?;
        watchdog.rearm();
        let done = js_sys::Reflect::get(&chunk, &"done".into()).map(|d| d.is_truthy()).unwrap_or(true);
        if done {
            return Ok(());
        }
        let value: Uint8Array = js_sys::Reflect::get(&chunk, &"value".into())
            .map_err(|e| Attempt::Broken(loader::js_message(&e)))?
            .unchecked_into();
        let bytes = value.to_vec();
        // The stream takes the next file's bytes too; this response's must not run into them.
        if stream.received() + bytes.len() as u64 > file.start + file.size {
            let _ = reader.cancel();
            let message = format!("GET {url}: the response runs past the file's {} bytes", file.size);
            return Err(Attempt::Refused(WebError::CorruptShard(message)));
        }
        stats.downloaded_bytes += bytes.len() as u64;
        // Parts to keep, written once the (synchronous) push has handed them on.
        let mut to_keep = Vec::new();
        let mut on_part = |entry: &crate::format::TensorEntry, part: usize, packed: &[u8]| {
            upload(&entry.name, part, packed);
            to_keep.push((entry.parts[part].shard, packed.to_vec()));
        };
        if let Err(error) = stream.push(&bytes, &mut on_part) {
            let _ = reader.cancel();
            return Err(Attempt::Refused(WebError::CorruptShard(format!("{url}: {error}"))));
        }
        for (shard, packed) in to_keep {
            keeper.write(shard, &packed).await;
        }
        if stream.received() - reported >= loader::PROGRESS_STEP {
            reported = stream.received();
            progress(reported, total);
        }
    }
}
