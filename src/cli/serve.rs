//! `webjudge serve`: the static page (www/) and one model directory over HTTP on
//! 127.0.0.1, with what a browser needs from a model host: the wasm MIME type, byte
//! ranges (the loader resumes interrupted shards), conditional requests (ETag and
//! Last-Modified), the wasm precompressed (the `.gz`/`.br` copies the web build leaves
//! beside it), CORS on the model, and cache headers that let content-addressed shards be
//! kept forever.
//!
//! HTTP/1.1 is hyper's and files are tower-http's `ServeDir` (ranges, validators,
//! precompressed variants). This module adds the policy: only files whose real path
//! (symlinks resolved) lies inside their root are served, never a dotfile; headers by what
//! is served; and no client holds a connection beyond the limits below: any web page the
//! browser opens can reach 127.0.0.1.

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use percent_encoding::percent_decode_str;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_io_timeout::TimeoutStream;
use tower_http::services::fs::{
    Backend, DefaultServeDirFallback, ServeDir, ServeFileSystemResponseBody, TokioBackend, TokioFile,
};

use super::{outln, CliResult};

/// Where the model directory appears on the server.
const MODEL_PREFIX: &str = "/models/default/";

/// The page may talk to its own origin only; wasm needs 'wasm-unsafe-eval'. Sent with
/// every site file: a worker script takes its policy from its own response.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     worker-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'self'";

/// Time from the connection's start to the end of the request head, however the bytes
/// trickle in. A browser on the same machine sends its head at once; ten seconds forgive
/// a loaded one.
const HEAD_DEADLINE: Duration = Duration::from_secs(10);

/// How long a response may wait for the client to take any byte before the connection
/// is dropped. No total limit: a multi-GiB shard takes long, but it keeps moving.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections served at once. A page loads a few files at a time (browsers open at most
/// six connections per host); the cap bounds the sockets that idle or slow clients can
/// pin, for up to the two timeouts above.
const MAX_CONNECTIONS: usize = 64;

#[derive(clap::Args)]
pub struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Model directory to serve at /models/default/.
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
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    write_stall_secs: u64,
}

/// Files under one root, as [`InsideRoot`] lets them be seen.
type Files = ServeDir<DefaultServeDirFallback, InsideRoot>;

/// What every connection shares: the files of each root and the write stall timeout.
struct Site {
    pages: Files,
    model: Option<Files>,
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
    if let Some(model) = &args.model {
        if !model.join("manifest.json").is_file() {
            return Err(format!("{} has no manifest.json: make one with `webjudge convert`", model.display()).into());
        }
    }
    let pages = files(&args.root)?.precompressed_gzip().precompressed_br();
    let model = match &args.model {
        Some(dir) => Some(
            files(dir)?
                // A model directory is flat; its files are served as they are.
                .append_index_html_on_directories(false)
                // One range per request, as the loader asks; a multi-range request gets the whole file.
                .ignore_multi_range_requests(true),
        ),
        None => None,
    };
    let site = Arc::new(Site { pages, model, write_stall_timeout: Duration::from_secs(args.write_stall_secs) });
    // One thread serves every connection; file reads run on tokio's blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(("127.0.0.1", args.port))
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
        let port = listener.local_addr()?.port();
        let model_note = match &args.model {
            Some(model) => format!(" (model {} at {MODEL_PREFIX})", model.display()),
            None => String::new(),
        };
        outln!("serving http://127.0.0.1:{port}/{model_note}")?;
        io::stdout().flush()?;
        accept_forever(listener, site).await
    })
}

fn files(root: &Path) -> Result<Files, String> {
    let real_root = root.canonicalize().map_err(|e| format!("cannot resolve {}: {e}", root.display()))?;
    Ok(ServeDir::with_backend(&real_root, InsideRoot { real_root: real_root.clone().into() }))
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
    let response = match files.clone().try_call(request).await {
        Ok(response) if response.status() == StatusCode::NOT_FOUND => return Ok(not_found()),
        Ok(response) => response,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(not_found()),
        Err(e) => {
            eprintln!("warning: cannot serve {path}: {e}");
            return Ok(text(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file\n"));
        }
    };
    Ok(with_policy(response.map(Either::Left), kind, &path))
}

/// The file service for `request` and what it serves, with a model request's URI made
/// relative to the model directory; `None` under /models/ for anything but the model.
fn route<'a>(site: &'a Site, request: &mut Request<Incoming>) -> Option<(Kind, &'a Files)> {
    let raw = request.uri().path();
    if !percent_decode_str(raw).decode_utf8_lossy().starts_with("/models/") {
        return Some((Kind::Site, &site.pages));
    }
    let relative = Uri::try_from(format!("/{}", raw.strip_prefix(MODEL_PREFIX)?)).ok()?;
    let kind = if relative.path().ends_with(".bin") { Kind::Shard } else { Kind::ModelIndex };
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
        Kind::ModelIndex | Kind::Shard => {
            let cache = if kind == Kind::Shard { "public, max-age=31536000, immutable" } else { "no-cache" };
            set(header::CACHE_CONTROL, cache);
            // Models are public files; a page on another origin (or port) may load them.
            set(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
            set(header::ACCESS_CONTROL_EXPOSE_HEADERS, "Content-Length, Content-Range, ETag");
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

/// tokio's file system as `ServeDir` sees it, less what must not be served: a path whose
/// real path leaves the root or passes through a dot-directory or dotfile there (a
/// symlink inside the root may point at one), and a `.gz`/`.br` copy older than the file
/// it compresses (a wasm rebuilt without its copies is served uncompressed, never stale).
/// Such paths read as missing, and `ServeDir` falls back from a missing copy to the file.
#[derive(Clone)]
struct InsideRoot {
    real_root: Arc<Path>,
}

impl InsideRoot {
    /// The real path to open for `path`, or a NotFound error.
    async fn permitted(&self, path: PathBuf) -> io::Result<PathBuf> {
        let missing = || io::Error::from(io::ErrorKind::NotFound);
        let real = tokio::fs::canonicalize(&path).await.map_err(|_| missing())?;
        let below_root = real.strip_prefix(&self.real_root).map_err(|_| missing())?;
        let hidden = |part: Component| part.as_os_str().as_encoded_bytes().starts_with(b".");
        if below_root.components().any(hidden) || is_stale_copy(&real).await {
            return Err(missing());
        }
        Ok(real)
    }
}

/// Compressors that keep the file's time may keep it to the second (brotli -k does).
const COPY_TIME_SLACK: Duration = Duration::from_secs(1);

async fn is_stale_copy(path: &Path) -> bool {
    if !matches!(path.extension().and_then(|e| e.to_str()), Some("gz" | "br")) {
        return false;
    }
    let modified = |path: PathBuf| async move { tokio::fs::metadata(path).await.and_then(|m| m.modified()).ok() };
    match (modified(path.with_extension("")).await, modified(path.to_path_buf()).await) {
        (Some(original), Some(copy)) => copy + COPY_TIME_SLACK < original,
        _ => false,
    }
}

impl Backend for InsideRoot {
    type File = TokioFile;
    type Metadata = std::fs::Metadata;
    type OpenFuture = BoxFuture<TokioFile>;
    type MetadataFuture = BoxFuture<std::fs::Metadata>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        let this = self.clone();
        Box::pin(async move { TokioBackend.open(this.permitted(path).await?).await })
    }

    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        let this = self.clone();
        Box::pin(async move { tokio::fs::metadata(this.permitted(path).await?).await })
    }
}
