//! A GGUF's repacked model kept in the Origin Private File System (files of several GB; the
//! Cache API is for the directory loader's shards): one folder per GGUF URL under
//! `webjudge-gguf/`, holding the shards as the stream packed them (`shard-N`), the
//! `tokenizer.json`, `source.json` (the URL, its size and sha256, whether the host's hash
//! verified it) and, written last once the file's hash has been checked, `manifest.json`: a
//! folder without it is never read, and one whose file fails its check is removed. Reached
//! through `navigator.storage.getDirectory()` by name (window or worker alike), so no
//! web-sys feature is needed; where the browser has no OPFS, nothing is kept.

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

/// What a kept model was made from.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub struct Source {
    pub url: String,
    pub size: u64,
    pub sha256: String,
    /// Whether `sha256` matched the host's (or the page's) before the model was kept; else
    /// it is only what this browser computed.
    pub verified: bool,
}

/// A kept model's files, as read back.
pub struct Kept {
    pub manifest: String,
    pub tokenizer: String,
    pub source: Source,
    folder: JsValue,
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

/// The folder of `url`'s kept model (made if `make`), or `None` where there is no OPFS.
async fn folder(url: &str, make: bool) -> Option<JsValue> {
    let root = storage_root().await?;
    let models = call(&root, "getDirectoryHandle", &[ROOT_FOLDER.into(), create(make)]).await.ok()?;
    call(&models, "getDirectoryHandle", &[folder_name(url).into(), create(make)]).await.ok()
}

/// A URL's folder name: its hash (URLs hold characters no file name may).
fn folder_name(url: &str) -> String {
    hex(&Sha256::digest(url.as_bytes()))[..32].to_string()
}

async fn read_file(folder: &JsValue, name: &str) -> Result<Vec<u8>, JsValue> {
    let handle = call(folder, "getFileHandle", &[name.into()]).await?;
    let file = call(&handle, "getFile", &[]).await?;
    let buffer = call(&file, "arrayBuffer", &[]).await?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

async fn read_text(folder: &JsValue, name: &str) -> Option<String> {
    String::from_utf8(read_file(folder, name).await.ok()?).ok()
}

/// The model kept for `url`, if one was kept whole.
pub async fn kept(url: &str) -> Option<Kept> {
    let folder = folder(url, false).await?;
    let manifest = read_text(&folder, MANIFEST).await?;
    let source: Source = serde_json::from_str(&read_text(&folder, SOURCE).await?).ok()?;
    let tokenizer = read_text(&folder, TOKENIZER).await?;
    (source.url == url).then_some(Kept { manifest, tokenizer, source, folder })
}

impl Kept {
    /// Shard `index`'s bytes (verified by the caller against the manifest).
    pub async fn shard(&self, index: usize) -> Result<Vec<u8>, String> {
        read_file(&self.folder, &shard_name(index)).await.map_err(|e| js_message(&e))
    }
}

fn shard_name(index: usize) -> String {
    format!("shard-{:05}", index + 1)
}

/// Removes `url`'s kept model, if any.
pub async fn forget(url: &str) {
    let Some(models) = models_folder().await else { return };
    let _ = call(&models, "removeEntry", &[folder_name(url).into(), recursive()]).await;
}

/// Removes every kept model.
pub async fn forget_all() {
    let Some(root) = storage_root().await else { return };
    let _ = call(&root, "removeEntry", &[ROOT_FOLDER.into(), recursive()]).await;
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

async fn models_folder() -> Option<JsValue> {
    call(&storage_root().await?, "getDirectoryHandle", &[ROOT_FOLDER.into(), create(false)]).await.ok()
}

/// Writes a model into `url`'s folder as it streams: shard by shard, then (`commit`) the
/// manifest last. The first write that fails (a full quota) stops the keeping, says why
/// with the numbers, and the load goes on without it.
pub struct Keeper {
    url: String,
    folder: Option<JsValue>,
    /// The shard being written and its open writable stream.
    open: Option<(usize, JsValue)>,
}

impl Keeper {
    /// Starts keeping `url`'s model afresh (what was kept for it is removed first).
    pub async fn start(url: &str) -> Self {
        forget(url).await;
        Self { url: url.into(), folder: folder(url, true).await, open: None }
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
    /// was written.
    async fn give_up(&mut self, error: &JsValue) {
        let mut why = js_message(error);
        if let Some((usage, quota)) = storage_estimate().await {
            why.push_str(&format!(" (this origin uses {usage} of its {quota} bytes)"));
        }
        web_sys::console::warn_1(&format!("webjudge: {} not kept for the next visit: {why}", self.url).into());
        self.open = None;
        self.folder = None;
        forget(&self.url).await;
    }

    /// Closes the last shard and writes the tokenizer, the source and then the manifest,
    /// which makes the folder a kept model.
    pub async fn commit(mut self, manifest: &str, tokenizer: &str, source: &Source) {
        let written = async {
            if let Some((_, writable)) = self.open.take() {
                call(&writable, "close", &[]).await?;
            }
            self.write_text(TOKENIZER, tokenizer).await?;
            self.write_text(SOURCE, &serde_json::to_string(source).expect("a source serializes")).await?;
            self.write_text(MANIFEST, manifest).await
        };
        if let Err(error) = written.await {
            self.give_up(&error).await;
        }
    }

    /// Drops what was written: the file failed its check.
    pub async fn discard(self) {
        if let Some((_, writable)) = &self.open {
            let _ = call(writable, "abort", &[]).await;
        }
        forget(&self.url).await;
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
