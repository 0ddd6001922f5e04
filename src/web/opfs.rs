//! A GGUF's repacked model kept in the Origin Private File System (files of several GB; the
//! Cache API is for the directory loader's shards): two slot folders per GGUF URL under
//! `webjudge-gguf/` (`<hash of the URL>-0` and `-1`), each holding the shards as the stream
//! packed them (`shard-N`), the `tokenizer.json`, `source.json` (the URL, each file's size
//! and sha256 (a split model's parts'), whether the host's hashes verified them) and, written
//! last once the file's hash has been checked, `manifest.json`: a slot without it is never
//! read. A download is written into the
//! slot that does not hold the kept model, and only its commit removes the other: a download
//! that is refused (a wrong hash, a changed file, a broken network) leaves the model kept
//! before it as it was. Reached through `navigator.storage.getDirectory()` by name (window or
//! worker alike), so no web-sys feature is needed; where the browser has no OPFS, nothing is
//! kept.

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use sha2::{Digest, Sha256};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::loader::js_message;
use crate::format::hex;

const ROOT_FOLDER: &str = "webjudge-gguf";
const MANIFEST: &str = "manifest.json";
const TOKENIZER: &str = "tokenizer.json";
const SOURCE: &str = "source.json";
/// Slot folders per URL: the kept model's and the one a download is written into.
const SLOTS: usize = 2;

/// What a kept model was made from.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub struct Source {
    /// The model's URL: its file's, or a split model's first part's.
    pub url: String,
    /// Its files: the one, or a split model's parts in order.
    pub files: Vec<SourceFile>,
    /// Whether every file's `sha256` matched the host's (or the page's) before the model was
    /// kept; else some are only what this browser computed.
    pub verified: bool,
}

/// One file of a kept model, as it was downloaded.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub struct SourceFile {
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

impl Source {
    /// The files' sha256s as the API gives them (and the `sha256` option takes them): one, or
    /// a split model's parts' in order, separated by commas.
    pub fn sha256(&self) -> String {
        self.files.iter().map(|file| file.sha256.as_str()).collect::<Vec<_>>().join(",")
    }
}

/// A kept model's files, as read back.
pub struct Kept {
    pub manifest: String,
    pub tokenizer: String,
    pub source: Source,
    /// Its slot, and that slot's folder.
    index: usize,
    folder: JsValue,
}

/// A slot folder holding a committed model (its `manifest.json` written).
struct Slot {
    index: usize,
    folder: JsValue,
    source: Source,
    /// When its manifest was written (ms since the epoch): of two committed slots (a commit
    /// cut short before it removed the other) the later one is the kept model.
    committed_at: f64,
}

/// Calls `target.method(...args)`, awaiting the result if it is a promise.
async fn call(target: &JsValue, method: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let function: Function = Reflect::get(target, &method.into())?.dyn_into()?;
    let result = function.apply(target, &args.iter().collect::<Array>())?;
    match result.dyn_into::<Promise>() {
        Ok(promise) => JsFuture::from(promise).await,
        Err(value) => Ok(value),
    }
}

fn create(flag: bool) -> JsValue {
    let options = Object::new();
    let _ = Reflect::set(&options, &"create".into(), &flag.into());
    options.into()
}

/// Slot `index`'s folder name for `url`: the URL's hash (URLs hold characters no file name
/// may) and the slot.
fn slot_name(url: &str, index: usize) -> String {
    format!("{}-{index}", &hex(&Sha256::digest(url.as_bytes()))[..32])
}

async fn file(folder: &JsValue, name: &str) -> Result<JsValue, JsValue> {
    call(&call(folder, "getFileHandle", &[name.into()]).await?, "getFile", &[]).await
}

async fn read_file(folder: &JsValue, name: &str) -> Result<Vec<u8>, JsValue> {
    let buffer = call(&file(folder, name).await?, "arrayBuffer", &[]).await?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

async fn read_text(folder: &JsValue, name: &str) -> Option<String> {
    String::from_utf8(read_file(folder, name).await.ok()?).ok()
}

/// Slot `index` of `url`, if it holds a committed model of that URL.
async fn committed_slot(models: &JsValue, url: &str, index: usize) -> Option<Slot> {
    let folder = call(models, "getDirectoryHandle", &[slot_name(url, index).into()]).await.ok()?;
    let manifest = file(&folder, MANIFEST).await.ok()?;
    let committed_at = Reflect::get(&manifest, &"lastModified".into()).ok()?.as_f64()?;
    let source: Source = serde_json::from_str(&read_text(&folder, SOURCE).await?).ok()?;
    (source.url == url).then_some(Slot { index, folder, source, committed_at })
}

/// The slot holding `url`'s kept model. Should both be committed (a commit cut short before
/// it removed the other), the earlier one is removed.
async fn kept_slot(models: &JsValue, url: &str) -> Option<Slot> {
    let mut kept: Option<Slot> = None;
    for index in 0..SLOTS {
        let Some(slot) = committed_slot(models, url, index).await else { continue };
        let (later, earlier) = match kept {
            Some(other) if other.committed_at >= slot.committed_at => (other, Some(slot)),
            other => (slot, other),
        };
        if let Some(earlier) = earlier {
            remove(models, &slot_name(url, earlier.index)).await;
        }
        kept = Some(later);
    }
    kept
}

/// The model kept for `url`, if one was kept whole.
pub async fn kept(url: &str) -> Option<Kept> {
    let Slot { index, folder, source, .. } = kept_slot(&models_folder(false).await?, url).await?;
    let manifest = read_text(&folder, MANIFEST).await?;
    let tokenizer = read_text(&folder, TOKENIZER).await?;
    Some(Kept { manifest, tokenizer, source, index, folder })
}

impl Kept {
    /// Shard `index`'s bytes (verified by the caller against the manifest).
    pub async fn shard(&self, index: usize) -> Result<Vec<u8>, String> {
        read_file(&self.folder, &shard_name(index)).await.map_err(|e| js_message(&e))
    }

    /// Removes this kept copy (found damaged), and nothing else kept for its URL.
    pub async fn remove(self) {
        if let Some(models) = models_folder(false).await {
            remove(&models, &slot_name(&self.source.url, self.index)).await;
        }
    }
}

fn shard_name(index: usize) -> String {
    format!("shard-{:05}", index + 1)
}

/// Every kept model and the bytes its files take, by URL.
pub async fn list() -> Vec<(Source, u64)> {
    let Some(models) = models_folder(false).await else { return Vec::new() };
    let mut urls = Vec::new();
    for (name, folder) in entries(&models).await {
        let Some(source) = read_text(&folder, SOURCE).await else { continue };
        let Ok(Source { url, .. }) = serde_json::from_str(&source) else { continue };
        if (0..SLOTS).any(|index| slot_name(&url, index) == name) && !urls.contains(&url) {
            urls.push(url);
        }
    }
    urls.sort();
    let mut kept = Vec::new();
    for url in urls {
        if let Some(slot) = kept_slot(&models, &url).await {
            let bytes = folder_bytes(&slot.folder).await;
            kept.push((slot.source, bytes));
        }
    }
    kept
}

/// A folder's entries as (name, handle).
async fn entries(folder: &JsValue) -> Vec<(String, JsValue)> {
    let mut found = Vec::new();
    let Ok(iterator) = call(folder, "entries", &[]).await else { return found };
    while let Ok(step) = call(&iterator, "next", &[]).await {
        if Reflect::get(&step, &"done".into()).map_or(true, |done| done.is_truthy()) {
            break;
        }
        let Some(entry) = Reflect::get(&step, &"value".into()).ok().and_then(|v| v.dyn_into::<Array>().ok()) else {
            break;
        };
        if let Some(name) = entry.get(0).as_string() {
            found.push((name, entry.get(1)));
        }
    }
    found
}

/// The size of a slot's files together.
async fn folder_bytes(folder: &JsValue) -> u64 {
    let mut bytes = 0;
    for (name, _) in entries(folder).await {
        if let Ok(file) = file(folder, &name).await {
            bytes += Reflect::get(&file, &"size".into()).ok().and_then(|size| size.as_f64()).unwrap_or(0.0) as u64;
        }
    }
    bytes
}

/// Removes `url`'s kept model and any download of it left unfinished.
pub async fn forget(url: &str) {
    let Some(models) = models_folder(false).await else { return };
    for index in 0..SLOTS {
        remove(&models, &slot_name(url, index)).await;
    }
}

/// Removes every kept model.
pub async fn forget_all() {
    let Some(root) = storage_root().await else { return };
    let _ = call(&root, "removeEntry", &[ROOT_FOLDER.into(), recursive()]).await;
}

/// Removes folder `name` of the models' folder, if it is there.
async fn remove(models: &JsValue, name: &str) {
    let _ = call(models, "removeEntry", &[name.into(), recursive()]).await;
}

fn recursive() -> JsValue {
    let options = Object::new();
    let _ = Reflect::set(&options, &"recursive".into(), &true.into());
    options.into()
}

/// The origin's OPFS root, where the browser has one.
async fn storage_root() -> Option<JsValue> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let storage = Reflect::get(&navigator, &"storage".into()).ok().filter(|s| !s.is_undefined())?;
    call(&storage, "getDirectory", &[]).await.ok()
}

/// The folder of every kept model (made if `make`).
async fn models_folder(make: bool) -> Option<JsValue> {
    call(&storage_root().await?, "getDirectoryHandle", &[ROOT_FOLDER.into(), create(make)]).await.ok()
}

/// Writes a model into the slot of `url` that does not hold its kept model, as it streams:
/// shard by shard, then (`commit`) the manifest last, and only then removes the other slot.
/// The first write that fails (a full quota) stops the keeping, says why with the numbers,
/// and the load goes on without it.
pub struct Keeper {
    url: String,
    /// The slot written into.
    index: usize,
    models: Option<JsValue>,
    folder: Option<JsValue>,
    /// The shard being written and its open writable stream.
    open: Option<(usize, JsValue)>,
}

impl Keeper {
    /// Starts keeping `url`'s model in the slot `kept` (the model kept for it, if any) is not
    /// in; what else was there (a download cut short) is removed first.
    pub async fn start(url: &str, kept: Option<&Kept>) -> Self {
        let kept = kept.map(|kept| kept.index);
        let index = (0..SLOTS).find(|&index| Some(index) != kept).expect("two slots");
        let models = models_folder(true).await;
        let mut folder = None;
        if let Some(models) = &models {
            for other in (0..SLOTS).filter(|&other| Some(other) != kept) {
                remove(models, &slot_name(url, other)).await;
            }
            folder = call(models, "getDirectoryHandle", &[slot_name(url, index).into(), create(true)]).await.ok();
        }
        Self { url: url.into(), index, models, folder, open: None }
    }

    /// Appends `bytes` to shard `shard` (parts arrive in layout order).
    pub async fn write(&mut self, shard: usize, bytes: &[u8]) {
        if let Err(error) = self.try_write(shard, bytes).await {
            self.give_up(&error).await;
        }
    }

    async fn try_write(&mut self, shard: usize, bytes: &[u8]) -> Result<(), JsValue> {
        let Some(folder) = &self.folder else { return Ok(()) };
        if self.open.as_ref().is_none_or(|(open, _)| *open != shard) {
            if let Some((_, writable)) = self.open.take() {
                call(&writable, "close", &[]).await?;
            }
            let handle = call(folder, "getFileHandle", &[shard_name(shard).into(), create(true)]).await?;
            self.open = Some((shard, call(&handle, "createWritable", &[]).await?));
        }
        let (_, writable) = self.open.as_ref().expect("opened above");
        call(writable, "write", &[Uint8Array::from(bytes).into()]).await?;
        Ok(())
    }

    async fn write_text(&self, name: &str, text: &str) -> Result<(), JsValue> {
        let Some(folder) = &self.folder else { return Ok(()) };
        let handle = call(folder, "getFileHandle", &[name.into(), create(true)]).await?;
        let writable = call(&handle, "createWritable", &[]).await?;
        call(&writable, "write", &[text.into()]).await?;
        call(&writable, "close", &[]).await?;
        Ok(())
    }

    /// Stops keeping after `error`, saying why (with the quota's numbers), and removes what
    /// was written (the model kept before stays).
    async fn give_up(&mut self, error: &JsValue) {
        let mut why = js_message(error);
        if let Some((usage, quota)) = storage_estimate().await {
            why.push_str(&format!(" (this origin uses {usage} of its {quota} bytes)"));
        }
        web_sys::console::warn_1(&format!("webjudge: {} not kept for the next visit: {why}", self.url).into());
        self.open = None;
        if self.folder.take().is_some() {
            self.remove_slot(self.index).await;
        }
    }

    async fn remove_slot(&self, index: usize) {
        if let Some(models) = &self.models {
            remove(models, &slot_name(&self.url, index)).await;
        }
    }

    /// Closes the last shard and writes the tokenizer, the source and then the manifest,
    /// which makes the slot the kept model; then removes the other slot (the model kept
    /// before).
    pub async fn commit(mut self, manifest: &str, tokenizer: &str, source: &Source) {
        if self.folder.is_none() {
            return;
        }
        let written = async {
            if let Some((_, writable)) = self.open.take() {
                call(&writable, "close", &[]).await?;
            }
            self.write_text(TOKENIZER, tokenizer).await?;
            self.write_text(SOURCE, &serde_json::to_string(source).expect("a source serializes")).await?;
            self.write_text(MANIFEST, manifest).await
        };
        match written.await {
            Ok(()) => {
                for other in (0..SLOTS).filter(|&other| other != self.index) {
                    self.remove_slot(other).await;
                }
            }
            Err(error) => self.give_up(&error).await,
        }
    }

    /// Drops what was written: the file failed its check (the model kept before stays).
    pub async fn discard(self) {
        if let Some((_, writable)) = &self.open {
            let _ = call(writable, "abort", &[]).await;
        }
        self.remove_slot(self.index).await;
    }
}

/// `navigator.storage.estimate()`'s usage and quota, where the browser says.
async fn storage_estimate() -> Option<(u64, u64)> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let storage = Reflect::get(&navigator, &"storage".into()).ok()?;
    let estimate = call(&storage, "estimate", &[]).await.ok()?;
    let number = |name: &str| Reflect::get(&estimate, &name.into()).ok()?.as_f64().map(|n| n as u64);
    Some((number("usage")?, number("quota")?))
}
