//! `webjudge serve`: the static page (www/) and one model directory over HTTP on
//! 127.0.0.1, with what a browser needs from a model host: the wasm MIME type,
//! byte ranges (the loader resumes interrupted shards), CORS on the model, and cache
//! headers that let content-addressed shards be kept forever.
//!
//! Only files whose real path (symlinks resolved) lies inside their root are served,
//! never a dotfile, and no client holds a connection beyond the limits below: any web
//! page the browser opens can reach 127.0.0.1.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::{outln, CliResult};

/// Where the model directory appears on the server.
const MODEL_PREFIX: &str = "/models/default/";

/// The page may talk to its own origin only; wasm needs 'wasm-unsafe-eval'. Sent with
/// every site file: a worker script takes its policy from its own response.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     worker-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'self'";

/// Longest request head accepted; requests are a line and a few headers.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Time from accept to the end of the request head, however the bytes trickle in. A
/// browser on the same machine sends its head at once; ten seconds forgive a loaded one.
const HEAD_DEADLINE: Duration = Duration::from_secs(10);

/// How long a response may wait for the client to take any byte before the connection
/// is dropped. No total limit: a multi-GiB shard takes long, but it keeps moving.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections served at once, each on its own thread. A page loads a few files at a
/// time (browsers open at most six connections per host); the cap bounds the threads
/// that idle or slow clients can pin, for up to the two timeouts above.
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

/// What every connection shares: the served roots as real paths (symlinks resolved),
/// which every served file must lie under, and the write stall timeout.
struct Site {
    root: PathBuf,
    model: Option<PathBuf>,
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
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    let port = listener.local_addr()?.port();
    let model_note = match &args.model {
        Some(model) => format!(" (model {} at {MODEL_PREFIX})", model.display()),
        None => String::new(),
    };
    outln!("serving http://127.0.0.1:{port}/{model_note}")?;
    io::stdout().flush()?;
    let site = Arc::new(Site {
        root: real_root(&args.root)?,
        model: args.model.as_deref().map(real_root).transpose()?,
        write_stall_timeout: Duration::from_secs(args.write_stall_secs),
    });
    let open_connections = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let head_deadline = Instant::now() + HEAD_DEADLINE;
        let Some(slot) = ConnectionSlot::claim(&open_connections) else {
            refuse_busy(&mut stream);
            continue;
        };
        let site = Arc::clone(&site);
        let spawned = std::thread::Builder::new().spawn(move || {
            let _slot = slot;
            // A client that goes away, stalls or times out is not the server's problem.
            let _ = handle(&site, stream, head_deadline);
        });
        if let Err(e) = spawned {
            // The closure, with the stream and the slot, is dropped: the client sees a close.
            eprintln!("warning: cannot start a connection thread: {e}");
        }
    }
    Ok(())
}

fn real_root(root: &Path) -> Result<PathBuf, String> {
    root.canonicalize().map_err(|e| format!("cannot resolve {}: {e}", root.display()))
}

/// One of the `MAX_CONNECTIONS` places, held while a connection is served.
struct ConnectionSlot(Arc<AtomicUsize>);

impl ConnectionSlot {
    fn claim(open_connections: &Arc<AtomicUsize>) -> Option<Self> {
        open_connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| (open < MAX_CONNECTIONS).then_some(open + 1))
            .ok()?;
        Some(Self(Arc::clone(open_connections)))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers 503 without reading the request, never blocking the accept loop: a new
/// socket's send buffer takes the few bytes, and if it does not they are dropped.
fn refuse_busy(stream: &mut TcpStream) {
    // By then every connection still waiting for its request head is gone.
    let retry_after = [("Retry-After", HEAD_DEADLINE.as_secs().to_string())];
    let _ = stream
        .set_nonblocking(true)
        .and_then(|()| respond_text(stream, 503, "Service Unavailable", &retry_after, "busy, retry\n", false));
}

struct Request {
    method: String,
    path: String,
    range: Option<String>,
    if_none_match: Option<String>,
}

fn handle(site: &Site, mut stream: TcpStream, head_deadline: Instant) -> io::Result<()> {
    stream.set_write_timeout(Some(site.write_stall_timeout))?;
    let request = match read_request(&stream, head_deadline)? {
        Some(request) => request,
        None => return respond_text(&mut stream, 400, "Bad Request", &[], "malformed request\n", true),
    };
    let head_only = request.method == "HEAD";
    match request.method.as_str() {
        "GET" | "HEAD" => {}
        "OPTIONS" => {
            let headers = [
                ("Access-Control-Allow-Origin", "*".to_string()),
                ("Access-Control-Allow-Methods", "GET, HEAD".into()),
                ("Access-Control-Allow-Headers", "Range".into()),
                ("Access-Control-Max-Age", "86400".into()),
            ];
            return respond_text(&mut stream, 204, "No Content", &headers, "", true);
        }
        _ => {
            let allow = [("Allow", "GET, HEAD, OPTIONS".to_string())];
            return respond_text(&mut stream, 405, "Method Not Allowed", &allow, "only GET and HEAD\n", head_only);
        }
    }
    let Some(file) = resolve(site, &request.path) else {
        return respond_text(&mut stream, 404, "Not Found", &[], "not found\n", head_only);
    };
    serve_file(&mut stream, &request, &file, head_only)
}

/// Reads from a socket until a deadline, however the bytes trickle in: each read may
/// wait only for the time left.
struct DeadlineReader<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request head deadline passed"));
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// Reads the request line and the headers we use by `deadline`; `None` for anything
/// malformed.
fn read_request(stream: &TcpStream, deadline: Instant) -> io::Result<Option<Request>> {
    let mut reader = BufReader::new(DeadlineReader { stream, deadline }.take(MAX_HEAD_BYTES as u64));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(None);
    };
    if !version.starts_with("HTTP/1.") {
        return Ok(None);
    }
    let mut request =
        Request { method: method.to_string(), path: target.to_string(), range: None, if_none_match: None };
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Ok(None);
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else { return Ok(None) };
        let value = value.trim().to_string();
        match name.trim().to_ascii_lowercase().as_str() {
            "range" => request.range = Some(value),
            "if-none-match" => request.if_none_match = Some(value),
            _ => {}
        }
    }
    Ok(Some(request))
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// The page, its scripts and the wasm build.
    Site,
    /// manifest.json and tokenizer.json: their names stay when a model is re-converted.
    ModelIndex,
    /// Weight shards, named by their content hash.
    Shard,
}

/// A file to serve: `real` to open, `requested` (the name in the URL) for its type.
struct Resolved {
    real: PathBuf,
    requested: PathBuf,
    kind: Kind,
}

/// Maps a request target to a file under the site or model root; `None` when there
/// is none, the path names a dotfile, or its real path leaves its root.
fn resolve(site: &Site, target: &str) -> Option<Resolved> {
    let path = target.split(['?', '#']).next()?;
    let path = percent_decode(path)?;
    if !path.starts_with('/') {
        return None;
    }
    let (root, relative, in_model) = match path.strip_prefix(MODEL_PREFIX) {
        Some(rest) => (site.model.as_deref()?, rest, true),
        None if path.starts_with("/models/") => return None,
        None => (site.root.as_path(), &path[1..], false),
    };
    let mut requested = root.to_path_buf();
    for segment in relative.split('/').filter(|s| !s.is_empty()) {
        // A leading dot also covers `.` and `..`, and dotfiles such as .git or .env.
        if segment.starts_with('.') || segment.contains('\\') || segment.contains('\0') {
            return None;
        }
        requested.push(segment);
    }
    let mut real = real_path_inside(root, &requested)?;
    if real.is_dir() {
        requested.push("index.html");
        real = real_path_inside(root, &real.join("index.html"))?;
    }
    if !real.is_file() {
        return None;
    }
    let kind = match (in_model, requested.extension().and_then(|e| e.to_str())) {
        (false, _) => Kind::Site,
        (true, Some("bin")) => Kind::Shard,
        (true, _) => Kind::ModelIndex,
    };
    Some(Resolved { real, requested, kind })
}

/// The real path of `path` if it exists, lies under `real_root` and passes through no
/// dot-directory or dotfile there (a symlink inside the root may point at one).
fn real_path_inside(real_root: &Path, path: &Path) -> Option<PathBuf> {
    let real = path.canonicalize().ok()?;
    let below_root = real.strip_prefix(real_root).ok()?;
    let hidden = |part: Component| part.as_os_str().as_encoded_bytes().starts_with(b".");
    if below_root.components().any(hidden) {
        return None;
    }
    Some(real)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
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

/// A byte range of a `len`-byte file from a `Range` header (one range only; a
/// multi-range request is answered with the whole file, as the RFC allows).
enum RangeRequest {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

fn parse_range(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return RangeRequest::Whole };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((start, end)) = spec.split_once('-') else { return RangeRequest::Whole };
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        // The last `end` bytes.
        match end.parse::<u64>() {
            Ok(0) | Err(_) => None,
            Ok(suffix) => Some((len.saturating_sub(suffix), len.saturating_sub(1))),
        }
    } else {
        match (start.parse::<u64>(), end.parse::<u64>()) {
            (Ok(first), _) if end.is_empty() => Some((first, len.saturating_sub(1))),
            (Ok(first), Ok(last)) if first <= last => Some((first, last.min(len.saturating_sub(1)))),
            _ => return RangeRequest::Whole,
        }
    };
    match range {
        Some((first, last)) if first < len => RangeRequest::Part(first, last),
        _ => RangeRequest::Unsatisfiable,
    }
}

fn serve_file(stream: &mut TcpStream, request: &Request, resolved: &Resolved, head_only: bool) -> io::Result<()> {
    let kind = resolved.kind;
    let mut file = File::open(&resolved.real)?;
    let metadata = file.metadata()?;
    let len = metadata.len();
    let modified = metadata.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
    let etag = format!("\"{len:x}-{:x}\"", modified.as_nanos());
    let mut headers = vec![
        ("Content-Type", content_type(&resolved.requested).to_string()),
        ("ETag", etag.clone()),
        ("X-Content-Type-Options", "nosniff".into()),
    ];
    match kind {
        Kind::Site => {
            headers.push(("Cache-Control", "no-cache".into()));
            headers.push(("Content-Security-Policy", CONTENT_SECURITY_POLICY.into()));
        }
        Kind::ModelIndex | Kind::Shard => {
            let cache = if kind == Kind::Shard { "public, max-age=31536000, immutable" } else { "no-cache" };
            headers.push(("Cache-Control", cache.into()));
            headers.push(("Accept-Ranges", "bytes".into()));
            // Models are public files; a page on another origin (or port) may load them.
            headers.push(("Access-Control-Allow-Origin", "*".into()));
            headers.push(("Access-Control-Expose-Headers", "Content-Length, Content-Range, ETag".into()));
        }
    }
    if request.if_none_match.as_deref() == Some(etag.as_str()) {
        return respond_text(stream, 304, "Not Modified", &headers, "", true);
    }
    let range = if kind == Kind::Site { RangeRequest::Whole } else { parse_range(request.range.as_deref(), len) };
    let (status, reason, first, count) = match range {
        RangeRequest::Whole => (200, "OK", 0, len),
        RangeRequest::Part(first, last) => {
            headers.push(("Content-Range", format!("bytes {first}-{last}/{len}")));
            (206, "Partial Content", first, last - first + 1)
        }
        RangeRequest::Unsatisfiable => {
            headers.push(("Content-Range", format!("bytes */{len}")));
            return respond_text(stream, 416, "Range Not Satisfiable", &headers, "", head_only);
        }
    };
    write_head(stream, status, reason, &headers, count)?;
    if !head_only {
        file.seek(SeekFrom::Start(first))?;
        io::copy(&mut file.take(count), stream)?;
    }
    stream.flush()
}

fn write_head(
    stream: &mut TcpStream,
    status: u16,
    reason: &str,
    headers: &[(&str, String)],
    length: u64,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: {length}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())
}

fn respond_text(
    stream: &mut TcpStream,
    status: u16,
    reason: &str,
    headers: &[(&str, String)],
    body: &str,
    head_only: bool,
) -> io::Result<()> {
    let mut all = headers.to_vec();
    if !body.is_empty() {
        all.push(("Content-Type", "text/plain; charset=utf-8".into()));
    }
    write_head(stream, status, reason, &all, body.len() as u64)?;
    if !head_only {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}
