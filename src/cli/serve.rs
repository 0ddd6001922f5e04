//! `webjudge serve`: the static page (www/) and one model directory, or one GGUF file, over
//! HTTP on 127.0.0.1, with what a browser needs from a model host: the wasm MIME type, byte
//! ranges (the loader resumes interrupted shards), conditional requests (ETag and
//! Last-Modified), the wasm precompressed (the `.gz`/`.br` copies the web build leaves
//! beside it), CORS on the model, and cache headers that let content-addressed shards be
//! kept forever. A GGUF file is served as the Hugging Face Hub serves one: ranges, CORS, and
//! its sha256 in `X-Linked-Etag` (the Hub's LFS hash), readable by a page.
//!
//! HTTP/1.1 is hyper's and files are tower-http's `ServeDir` (ranges, validators,
//! precompressed variants). This module adds the policy: only regular files whose real
//! path (symlinks resolved) lies inside their root are served, never a dotfile; headers by
//! what is served; no client holds a connection beyond the limits below (any web page the
//! browser opens can reach 127.0.0.1); and no file, however slow or odd, holds a thread
//! beyond a deadline or takes every thread that reads files.

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_io_timeout::TimeoutStream;
use tower_http::services::fs::{Backend, DefaultServeDirFallback, ServeDir, ServeFileSystemResponseBody};
use webjudge::format::checked_file::{self, ReadError};

use super::{outln, CliResult};

/// Where the model directory appears on the server.
const MODEL_PREFIX: &str = "/models/default/";

/// The page may talk to its own origin and, for its catalog's GGUFs, the Hugging Face Hub (and
/// the hosts the Hub redirects downloads to) only; wasm needs 'wasm-unsafe-eval'. The same as
/// www/index.html's own. Sent with every site file: a worker script takes its policy from its
/// own response.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     worker-src 'self'; connect-src 'self' https://huggingface.co https://*.huggingface.co https://*.hf.co; \
     style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'self'";

/// Time from the connection's start to the end of the request head, however the bytes
/// trickle in. A browser on the same machine sends its head at once; ten seconds forgive
/// a loaded one.
const HEAD_DEADLINE: Duration = Duration::from_secs(10);

/// How long a response may wait for the client to take any byte before the connection
/// is dropped. No total limit: a multi-GiB shard takes long, but it keeps moving.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest `--write-stall-secs`: a day is no limit already, and much more would
/// overflow the timer's clock.
const MAX_WRITE_STALL_SECS: u64 = 24 * 60 * 60;

/// Connections served at once. A page loads a few files at a time (browsers open at most
/// six connections per host); the cap bounds the sockets that idle or slow clients can
/// pin, for up to the two timeouts above.
const MAX_CONNECTIONS: usize = 64;

/// File operations (resolving a path, its metadata, an open, a read) running at once, at
/// most: each holds a thread of the blocking pool, and one the file system never finishes
/// (a hung network mount) holds it for good. Twice the connections, which run one each at
/// a time; the pool has no more threads, so stuck operations cannot grow it without bound.
const MAX_FILE_OPERATIONS: usize = 2 * MAX_CONNECTIONS;

/// How long one file operation may take, its wait for a free slot included. Past it the
/// request is answered 503, or a response already started ends; a read of a local file
/// takes milliseconds.
const FILE_OPERATION_DEADLINE: Duration = Duration::from_secs(10);

/// Bytes each read of a served file asks for: a response body takes 64 KiB at a time, and
/// each read is a trip to the blocking pool.
const READ_AHEAD_BYTES: usize = 512 << 10;

#[derive(clap::Args)]
pub struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080, allow_negative_numbers = true, value_parser = super::flags::whole::<u16>(0..=u16::MAX.into()))]
    port: u16,
    /// Model directory to serve at /models/default/, or a GGUF file, served alone at
    /// /models/default/NAME.gguf with its sha256 in X-Linked-Etag.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The static site to serve at /.
    #[arg(long, default_value = "www")]
    root: PathBuf,
    /// Seconds a response may wait for the client to read; shortened by the tests only.
    #[arg(
        long,
        hide = true,
        default_value_t = WRITE_STALL_TIMEOUT.as_secs(),
        allow_negative_numbers = true,
        value_parser = super::flags::whole::<u64>(1..=MAX_WRITE_STALL_SECS)
    )]
    write_stall_secs: u64,
}

/// Files under one root, as [`InsideRoot`] lets them be seen.
type Files = ServeDir<DefaultServeDirFallback, InsideRoot>;

/// What every connection shares: the files of each root and the write stall timeout.
struct Site {
    pages: Files,
    model: Option<Files>,
    /// Where `--model` is a GGUF file: its name, the one file served from its folder, and
    /// its sha256.
    gguf: Option<(String, String)>,
    write_stall_timeout: Duration,
}

pub fn run(args: Args) -> CliResult {
    if !args.root.join("index.html").is_file() {
        return Err(
            format!("{} has no index.html: run from the repository root or pass --root", args.root.display()).into()
        );
    }
    if !args.root.join("pkg").is_dir() {
        eprintln!("warning: {} has no pkg/ (the wasm build): run `make web`", args.root.display());
    }
    let gguf = match &args.model {
        Some(model) if model.is_file() => Some(gguf_identity(model)?),
        Some(model) if !model.join("manifest.json").is_file() => {
            return Err(format!(
                "{} has no manifest.json and is no GGUF file: make a model directory with `webjudge convert`",
                model.display()
            )
            .into());
        }
        _ => None,
    };
    let operations = FileOperations::new(MAX_FILE_OPERATIONS, FILE_OPERATION_DEADLINE);
    let pages = files(&args.root, &operations)?.precompressed_gzip().precompressed_br();
    let model = match &args.model {
        // The GGUF's folder, of which only the file is served (see `route`).
        Some(file) if gguf.is_some() => Some(
            files(file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")), &operations)?
                .ignore_multi_range_requests(true),
        ),
        Some(dir) => Some(
            files(dir, &operations)?
                // A model directory is flat; its files are served as they are.
                .append_index_html_on_directories(false)
                // One range per request, as the loader asks; a multi-range request gets the whole file.
                .ignore_multi_range_requests(true),
        ),
        None => None,
    };
    let site = Arc::new(Site { pages, model, gguf, write_stall_timeout: Duration::from_secs(args.write_stall_secs) });
    // One thread serves every connection; file operations run on tokio's blocking pool.
    let runtime =
        tokio::runtime::Builder::new_current_thread().max_blocking_threads(MAX_FILE_OPERATIONS).enable_all().build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(("127.0.0.1", args.port))
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
        let port = listener.local_addr()?.port();
        let model_note = match (&args.model, &site.gguf) {
            (Some(model), Some((name, sha256))) => {
                format!(" (GGUF {} at {MODEL_PREFIX}{name}, sha256 {sha256})", model.display())
            }
            (Some(model), None) => format!(" (model {} at {MODEL_PREFIX})", model.display()),
            _ => String::new(),
        };
        outln!("serving http://127.0.0.1:{port}/{model_note}")?;
        io::stdout().flush()?;
        accept_forever(listener, site).await
    })
}

/// The name and sha256 of the GGUF file `path` (read once, at start), checked to be one.
fn gguf_identity(path: &Path) -> Result<(String, String), String> {
    use sha2::{Digest, Sha256};
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    webjudge::format::gguf::GgufFile::open(path).map_err(|e| at(&e))?;
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| at(&"no file name"))?;
    let mut file = checked_file::open(path).map_err(|e| at(&e))?.file;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(|e| at(&e))?;
    Ok((name.to_string(), webjudge::format::hex(&hasher.finalize())))
}

fn files(root: &Path, operations: &FileOperations) -> Result<Files, String> {
    let real_root = root.canonicalize().map_err(|e| format!("cannot resolve {}: {e}", root.display()))?;
    let backend = InsideRoot { real_root: real_root.clone().into(), operations: operations.clone() };
    Ok(ServeDir::with_backend(&real_root, backend))
}

async fn accept_forever(listener: TcpListener, site: Arc<Site>) -> CliResult {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                tokio::spawn(serve_connection(Arc::clone(&site), stream, slot));
            }
            Err(_) => refuse_busy(&stream),
        }
    }
}

/// Answers 503 without reading the request, never waiting: a new socket's send buffer
/// takes the few bytes, and if it does not they are dropped.
fn refuse_busy(stream: &TcpStream) {
    // By then every connection still waiting for its request head is gone.
    let body = "busy, retry\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        HEAD_DEADLINE.as_secs(),
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

/// One request per connection, then close: nothing idles in a slot between requests.
async fn serve_connection(site: Arc<Site>, stream: TcpStream, _slot: OwnedSemaphorePermit) {
    let mut stream = TimeoutStream::new(stream);
    stream.set_write_timeout(Some(site.write_stall_timeout));
    let service = service_fn(move |request| answer(Arc::clone(&site), request));
    // A client that goes away, stalls or times out is not the server's problem.
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_DEADLINE)
        .keep_alive(false)
        .serve_connection(TokioIo::new(Box::pin(stream)), service)
        .await;
}

type Body = Either<ServeFileSystemResponseBody, Full<Bytes>>;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// The page, its scripts and the wasm build.
    Site,
    /// manifest.json and tokenizer.json: their names stay when a model is re-converted.
    ModelIndex,
    /// Weight shards, named by their content hash.
    Shard,
    /// A GGUF file: its name may stay when its content changes.
    Gguf,
}

async fn answer(site: Arc<Site>, mut request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    match *request.method() {
        Method::GET | Method::HEAD => {}
        Method::OPTIONS => return Ok(preflight()),
        _ => {
            let mut refusal = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
            refusal.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
            return Ok(refusal);
        }
    }
    let path = request.uri().path().to_string();
    let Some((kind, files)) = route(&site, &mut request) else { return Ok(not_found()) };
    let linked_etag = site.gguf.as_ref().filter(|_| kind == Kind::Gguf).map(|(_, sha256)| format!("\"{sha256}\""));
    let response = match files.clone().try_call(request).await {
        Ok(response) if response.status() == StatusCode::NOT_FOUND => return Ok(not_found()),
        Ok(response) => response,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(not_found()),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            eprintln!("warning: cannot serve {path}: {e}");
            let mut refusal = text(StatusCode::SERVICE_UNAVAILABLE, "the file system is slow, retry\n");
            refusal.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(FILE_OPERATION_DEADLINE.as_secs()));
            return Ok(refusal);
        }
        Err(e) => {
            eprintln!("warning: cannot serve {path}: {e}");
            return Ok(text(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file\n"));
        }
    };
    let mut response = with_policy(response.map(Either::Left), kind, &path);
    if let Some(value) = linked_etag.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(HeaderName::from_static("x-linked-etag"), value);
    }
    Ok(response)
}

/// The file service for `request` and what it serves, with a model request's URI made
/// relative to the model directory; `None` under /models/ for anything but the model.
fn route<'a>(site: &'a Site, request: &mut Request<Incoming>) -> Option<(Kind, &'a Files)> {
    let raw = request.uri().path();
    if !percent_decode_str(raw).decode_utf8_lossy().starts_with("/models/") {
        return Some((Kind::Site, &site.pages));
    }
    let relative = Uri::try_from(format!("/{}", raw.strip_prefix(MODEL_PREFIX)?)).ok()?;
    let kind = match &site.gguf {
        // Nothing of the GGUF's folder but the file itself.
        Some((name, _)) if percent_decode_str(relative.path()).decode_utf8_lossy() != format!("/{name}") => {
            return None
        }
        Some(_) => Kind::Gguf,
        None if relative.path().ends_with(".bin") => Kind::Shard,
        None => Kind::ModelIndex,
    };
    *request.uri_mut() = relative;
    Some((kind, site.model.as_ref()?))
}

/// The headers that depend on what was served; the type from the requested name, which
/// for a directory is its index.html.
fn with_policy(mut response: Response<Body>, kind: Kind, requested: &str) -> Response<Body> {
    let has_body = matches!(response.status(), StatusCode::OK | StatusCode::PARTIAL_CONTENT);
    let headers = response.headers_mut();
    let mut set = |name: HeaderName, value: &'static str| headers.insert(name, HeaderValue::from_static(value));
    if has_body {
        let name = if requested.ends_with('/') { "index.html" } else { requested };
        set(header::CONTENT_TYPE, content_type(name));
    }
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    match kind {
        Kind::Site => {
            set(header::CACHE_CONTROL, "no-cache");
            set(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
        }
        Kind::ModelIndex | Kind::Shard | Kind::Gguf => {
            let cache = if kind == Kind::Shard { "public, max-age=31536000, immutable" } else { "no-cache" };
            set(header::CACHE_CONTROL, cache);
            // Models are public files; a page on another origin (or port) may load them.
            set(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
            set(header::ACCESS_CONTROL_EXPOSE_HEADERS, "Content-Length, Content-Range, ETag, X-Linked-Etag");
        }
    }
    response
}

fn content_type(name: &str) -> &'static str {
    match Path::new(name).extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "jsonl" => "application/jsonl",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "webmanifest" => "application/manifest+json",
        "txt" | "md" | "ts" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Lets a page on another origin fetch the model with a Range header.
fn preflight() -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::default()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD"),
        (header::ACCESS_CONTROL_ALLOW_HEADERS, "Range"),
        (header::ACCESS_CONTROL_MAX_AGE, "86400"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The same bare answer whatever is (or is not) there: nothing about the files, no CORS.
fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "not found\n")
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

/// Runs file operations on tokio's blocking pool, each within a deadline and at most
/// `slots` at once: an operation holds its slot until it returns, however long past its
/// deadline that is, so operations that never return cannot take every thread.
#[derive(Clone)]
struct FileOperations {
    slots: Arc<Semaphore>,
    deadline: Duration,
}

impl FileOperations {
    fn new(slots: usize, deadline: Duration) -> Self {
        Self { slots: Arc::new(Semaphore::new(slots)), deadline }
    }

    /// `operation`'s result, or a TimedOut error when it has not returned by the deadline.
    fn run<T: Send + 'static>(
        &self,
        operation: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> impl Future<Output = io::Result<T>> + Send + 'static {
        let (slots, deadline) = (Arc::clone(&self.slots), self.deadline);
        let finished = async move {
            let slot = slots.acquire_owned().await.map_err(io::Error::other)?;
            let operation = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                operation()
            });
            operation.await.map_err(io::Error::other)?
        };
        async move {
            tokio::time::timeout(deadline, finished).await.map_err(|_| {
                let message = format!("a file operation did not finish within {} s", deadline.as_secs_f32());
                io::Error::new(io::ErrorKind::TimedOut, message)
            })?
        }
    }
}

/// The file system as `ServeDir` sees it, less what must not be served: a path whose
/// real path leaves the root or passes through a dot-directory or dotfile there (a
/// symlink inside the root may point at one), anything but a regular file or a directory
/// (a FIFO, a device), and a `.gz`/`.br` copy older than the file it compresses (a wasm
/// rebuilt without its copies is served uncompressed, never stale). Such paths read as
/// missing, and `ServeDir` falls back from a missing copy to the file. Every operation
/// runs as one of [`FileOperations`].
#[derive(Clone)]
struct InsideRoot {
    real_root: Arc<Path>,
    operations: FileOperations,
}

fn missing() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}

/// The real path to open for `path`, or a NotFound error.
fn permitted(real_root: &Path, path: &Path) -> io::Result<PathBuf> {
    let real = path.canonicalize().map_err(|_| missing())?;
    let below_root = real.strip_prefix(real_root).map_err(|_| missing())?;
    let hidden = |part: Component| part.as_os_str().as_encoded_bytes().starts_with(b".");
    if below_root.components().any(hidden) || is_stale_copy(&real) {
        return Err(missing());
    }
    Ok(real)
}

/// Compressors that keep the file's time may keep it to the second (brotli -k does).
const COPY_TIME_SLACK: Duration = Duration::from_secs(1);

fn is_stale_copy(path: &Path) -> bool {
    if !matches!(path.extension().and_then(|e| e.to_str()), Some("gz" | "br")) {
        return false;
    }
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    match (modified(&path.with_extension("")), modified(path)) {
        (Some(original), Some(copy)) => copy + COPY_TIME_SLACK < original,
        _ => false,
    }
}

/// `path` opened for reading if it is a regular file ([`checked_file::open`]: without
/// waiting on a FIFO, checked once open), else a NotFound error.
fn open_regular(path: &Path) -> io::Result<(std::fs::File, std::fs::Metadata)> {
    let opened = checked_file::open(path).map_err(|error| match error {
        ReadError::Io { source, .. } => source,
        _ => missing(),
    })?;
    let metadata = opened.file.metadata()?;
    Ok((opened.file, metadata))
}

impl Backend for InsideRoot {
    type File = ServedFile;
    type Metadata = std::fs::Metadata;
    type OpenFuture = BoxFuture<ServedFile>;
    type MetadataFuture = BoxFuture<std::fs::Metadata>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        let (real_root, operations) = (Arc::clone(&self.real_root), self.operations.clone());
        let opened = self.operations.run(move || open_regular(&permitted(&real_root, &path)?));
        Box::pin(async move {
            let (file, metadata) = opened.await?;
            Ok(ServedFile::new(file, metadata, operations))
        })
    }

    /// A directory's too: `ServeDir` asks whether a path is one (and serves its index.html).
    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        let real_root = Arc::clone(&self.real_root);
        Box::pin(self.operations.run(move || {
            let metadata = std::fs::metadata(permitted(&real_root, &path)?)?;
            match metadata.is_file() || metadata.is_dir() {
                true => Ok(metadata),
                false => Err(missing()),
            }
        }))
    }
}

/// A regular file opened by [`InsideRoot`], read ahead [`READ_AHEAD_BYTES`] at a time, each
/// read one of [`FileOperations`]: a read that misses the deadline fails, which ends the
/// response.
struct ServedFile {
    file: Arc<std::fs::File>,
    metadata: std::fs::Metadata,
    /// Where the next byte given to the caller is.
    position: u64,
    /// Bytes read ahead, of which the first `given` have been given: the rest start at
    /// `position`.
    ahead: Vec<u8>,
    given: usize,
    operations: FileOperations,
    /// The read in flight, from `position`. In a Mutex only to make the file `Sync`, as
    /// `ServeDir` asks: reached through `&mut self` alone, it is never locked.
    read: Mutex<Option<BoxFuture<Vec<u8>>>>,
}

impl ServedFile {
    fn new(file: std::fs::File, metadata: std::fs::Metadata, operations: FileOperations) -> Self {
        let (ahead, given, read) = (Vec::new(), 0, Mutex::new(None));
        Self { file: Arc::new(file), metadata, position: 0, ahead, given, operations, read }
    }
}

impl AsyncRead for ServedFile {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.given == this.ahead.len() {
            let in_flight = this.read.get_mut().unwrap_or_else(PoisonError::into_inner);
            let read = in_flight.get_or_insert_with(|| {
                let (file, position) = (Arc::clone(&this.file), this.position);
                // The last read's buffer, whole again (zeroed only where it grows).
                let mut bytes = std::mem::take(&mut this.ahead);
                this.given = 0;
                Box::pin(this.operations.run(move || {
                    bytes.resize(READ_AHEAD_BYTES, 0);
                    let read = read_at(&file, &mut bytes, position)?;
                    bytes.truncate(read);
                    Ok(bytes)
                }))
            });
            let bytes = ready!(read.as_mut().poll(cx));
            *in_flight = None;
            (this.ahead, this.given) = (bytes?, 0);
        }
        let given = (this.ahead.len() - this.given).min(buf.remaining());
        buf.put_slice(&this.ahead[this.given..][..given]);
        this.given += given;
        this.position += given as u64;
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for ServedFile {
    fn start_seek(self: Pin<&mut Self>, seek: io::SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        let position = match seek {
            io::SeekFrom::Start(offset) => Some(offset),
            io::SeekFrom::End(offset) => this.metadata.len().checked_add_signed(offset),
            io::SeekFrom::Current(offset) => this.position.checked_add_signed(offset),
        };
        this.position = position.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek out of range"))?;
        // What was read ahead, or is being read, was from the old position.
        this.given = this.ahead.len();
        *this.read.get_mut().unwrap_or_else(PoisonError::into_inner) = None;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.position))
    }
}

impl tower_http::services::fs::File for ServedFile {
    type Metadata = std::fs::Metadata;
    type MetadataFuture<'a> = std::future::Ready<io::Result<std::fs::Metadata>>;

    /// As it was when opened.
    fn metadata(&self) -> Self::MetadataFuture<'_> {
        std::future::ready(Ok(self.metadata.clone()))
    }
}

/// Reads at `offset` without moving a shared cursor.
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    #[cfg(unix)]
    return std::os::unix::fs::FileExt::read_at(file, buf, offset);
    #[cfg(windows)]
    return std::os::windows::fs::FileExt::seek_read(file, buf, offset);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    use super::*;

    /// Operations that never return (a hung mount) end at the deadline but keep their
    /// slots; with every slot held, the next operation fails at its deadline without
    /// running, and runs again once they return.
    #[test]
    fn stuck_file_operations_time_out_and_cannot_take_more_than_their_slots() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let operations = FileOperations::new(2, Duration::from_millis(200));
            let mut releases = Vec::new();
            for _ in 0..2 {
                let (release, released) = mpsc::channel::<()>();
                releases.push(release);
                let stuck = operations.run(move || Ok(released.recv()));
                assert_eq!(stuck.await.unwrap_err().kind(), io::ErrorKind::TimedOut);
            }
            let ran = Arc::new(AtomicBool::new(false));
            let runs = Arc::clone(&ran);
            let waiting = operations.run(move || {
                runs.store(true, Ordering::SeqCst);
                Ok(())
            });
            assert_eq!(waiting.await.unwrap_err().kind(), io::ErrorKind::TimedOut);
            assert!(!ran.load(Ordering::SeqCst), "an operation ran beyond the slots");

            drop(releases);
            // Both slots come back as the stuck operations return.
            drop(operations.slots.acquire_many(2).await.unwrap());
            assert_eq!(operations.run(|| Ok(7)).await.unwrap(), 7);
        });
    }
}
