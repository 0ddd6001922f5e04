//! `webjudge serve` over real sockets: MIME types, cache and CORS headers, byte
//! ranges, conditional requests, precompressed copies, paths that try to leave the served
//! roots (by `..`, symlinks or dotfiles), and clients that try to hold a connection forever.

mod test_model;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Response {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

fn scratch(name: &str) -> PathBuf {
    test_model::scratch("serve", name)
}

const SHARD: &str = "weights-00001-0123456789abcdef.bin";

/// A site and a model directory with recognisable bytes.
fn fixture(name: &str) -> (PathBuf, PathBuf) {
    let base = scratch(name);
    let site = base.join("www");
    let model = base.join("model");
    std::fs::create_dir_all(site.join("pkg")).unwrap();
    std::fs::create_dir_all(site.join("docs")).unwrap();
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(site.join("index.html"), "<!doctype html><title>page</title>").unwrap();
    std::fs::write(site.join("docs/index.html"), "docs").unwrap();
    std::fs::write(site.join("pkg/webjudge_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(site.join("app.js"), "export {}").unwrap();
    std::fs::write(site.join("with space.txt"), "spaced").unwrap();
    std::fs::write(model.join("manifest.json"), "{}").unwrap();
    std::fs::write(model.join("tokenizer.json"), "{}").unwrap();
    std::fs::write(model.join(SHARD), (0..=255u8).collect::<Vec<_>>()).unwrap();
    std::fs::write(base.join("secret.txt"), "outside the roots").unwrap();
    (site, model)
}

fn start(site: &Path, model: &Path) -> Server {
    start_with(site, model, &[])
}

fn start_with(site: &Path, model: &Path, extra_args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_webjudge"))
        .args(["serve", "--port", "0", "--root"])
        .arg(site)
        .arg("--model")
        .arg(model)
        .args(extra_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("webjudge serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    Server { child, port }
}

fn request(server: &Server, method: &str, target: &str, extra: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response { status, headers, body: raw[split + 4..].to_vec() }
}

fn get(server: &Server, target: &str) -> Response {
    request(server, "GET", target, &[])
}

/// Each target gets the same bare 404: nothing about what is there, no CORS.
fn assert_not_found(server: &Server, targets: &[&str]) {
    for target in targets {
        let response = get(server, target);
        assert_eq!(response.status, 404, "{target}");
        assert_eq!(response.body, b"not found\n", "{target}");
        assert_eq!(response.header("access-control-allow-origin"), None, "{target}");
    }
}

#[test]
fn serves_the_site_with_types_and_a_content_security_policy() {
    let (site, model) = fixture("site");
    let server = start(&site, &model);

    let page = get(&server, "/");
    assert_eq!(page.status, 200);
    assert_eq!(page.body, b"<!doctype html><title>page</title>");
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let policy = page.header("content-security-policy").expect("a CSP on the page");
    // The page's own policy (www/index.html's meta tag, which cannot carry frame-ancestors).
    let index = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("www/index.html")).unwrap();
    let meta = index.split("http-equiv=\"Content-Security-Policy\" content=\"").nth(1).expect("a CSP meta tag");
    let page_policy = meta.split('"').next().unwrap();
    assert_eq!(policy, format!("{page_policy}; frame-ancestors 'self'"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert_eq!(page.header("access-control-allow-origin"), None, "the page is not a public resource");

    let wasm = get(&server, "/pkg/webjudge_bg.wasm");
    assert_eq!((wasm.status, wasm.header("content-type")), (200, Some("application/wasm")));
    assert_eq!(get(&server, "/app.js").header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(get(&server, "/docs/").body, b"docs", "a directory serves its index.html");
    assert_eq!(get(&server, "/docs").header("location"), Some("/docs/"), "relative links resolve in it");
    assert_eq!(get(&server, "/with%20space.txt").body, b"spaced");
    assert_eq!(get(&server, "/app.js?v=2").status, 200, "the query string is ignored");

    let head = request(&server, "HEAD", "/", &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("34"));
    assert!(head.body.is_empty());

    let etag = page.header("etag").unwrap().to_string();
    let revalidated = request(&server, "GET", "/", &[("If-None-Match", &etag)]);
    assert_eq!(revalidated.status, 304);
    assert!(revalidated.body.is_empty());
}

#[test]
fn serves_the_model_with_cors_ranges_and_immutable_shards() {
    let (site, model) = fixture("model");
    let server = start(&site, &model);
    let all: Vec<u8> = (0..=255u8).collect();
    let shard_url = format!("/models/default/{SHARD}");

    let shard = get(&server, &shard_url);
    assert_eq!(shard.status, 200);
    assert_eq!(shard.body, all);
    assert_eq!(shard.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(shard.header("access-control-allow-origin"), Some("*"));
    assert_eq!(shard.header("accept-ranges"), Some("bytes"));
    assert!(shard.header("access-control-expose-headers").unwrap().contains("Content-Range"));
    let revalidated = request(&server, "GET", &shard_url, &[("If-None-Match", shard.header("etag").unwrap())]);
    assert_eq!((revalidated.status, revalidated.header("access-control-allow-origin")), (304, Some("*")));

    let manifest = get(&server, "/models/default/manifest.json");
    assert_eq!(manifest.header("cache-control"), Some("no-cache"), "a re-converted model keeps this name");
    assert_eq!(manifest.header("content-type"), Some("application/json"));

    let cases: [(&str, u16, &[u8], Option<&str>); 6] = [
        ("bytes=10-19", 206, &all[10..20], Some("bytes 10-19/256")),
        ("bytes=250-", 206, &all[250..], Some("bytes 250-255/256")),
        ("bytes=-6", 206, &all[250..], Some("bytes 250-255/256")),
        ("bytes=200-999", 206, &all[200..], Some("bytes 200-255/256")),
        ("bytes=256-", 416, b"", Some("bytes */256")),
        ("bytes=0-1,5-6", 200, &all, None),
    ];
    for (range, status, body, content_range) in cases {
        let part = request(&server, "GET", &shard_url, &[("Range", range)]);
        assert_eq!(part.status, status, "{range}");
        assert_eq!(part.body, body, "{range}");
        assert_eq!(part.header("content-range"), content_range, "{range}");
    }

    let preflight = request(&server, "OPTIONS", &shard_url, &[("Access-Control-Request-Headers", "range")]);
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert_eq!(preflight.header("access-control-allow-headers"), Some("Range"));
}

/// A GGUF file is served as the Hub serves one: alone (nothing else of its folder), with
/// ranges, CORS and its sha256 in `X-Linked-Etag`, which a page may read.
#[test]
fn serves_a_gguf_file_alone_with_its_sha256_as_the_hub_does() {
    use sha2::{Digest, Sha256};
    let (site, _) = fixture("gguf");
    let folder = site.with_file_name("ggufs");
    std::fs::create_dir_all(&folder).unwrap();
    let gguf = folder.join("judge.Q8_0.gguf");
    std::fs::copy(Path::new(test_model::REPO).join("tests/fixtures/qwen2_tiny.gguf"), &gguf).unwrap();
    std::fs::write(folder.join("other.gguf"), b"GGUF").unwrap();
    let bytes = std::fs::read(&gguf).unwrap();
    let sha256: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    let server = start(&site, &gguf);

    let part = request(&server, "GET", "/models/default/judge.Q8_0.gguf", &[("Range", "bytes=4-99")]);
    assert_eq!((part.status, &part.body[..]), (206, &bytes[4..100]));
    assert_eq!(part.header("x-linked-etag"), Some(format!("\"{sha256}\"").as_str()));
    assert_eq!(part.header("access-control-allow-origin"), Some("*"));
    assert!(part.header("access-control-expose-headers").unwrap().contains("X-Linked-Etag"));
    assert_eq!(get(&server, "/models/default/judge.Q8_0.gguf").body, bytes);
    assert_not_found(&server, &["/models/default/other.gguf", "/models/default/", "/models/default/manifest.json"]);
}

#[test]
fn serves_a_file_of_many_reads_whole_and_by_ranges() {
    let (site, model) = fixture("large");
    // Several of the server's reads (512 KiB each), and not a whole number of them.
    let bytes: Vec<u8> = (0..3_000_017u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(model.join("large.bin"), &bytes).unwrap();
    let server = start(&site, &model);
    let url = "/models/default/large.bin";
    assert!(get(&server, url).body == bytes, "the whole file");
    for (first, last) in [(524_000, 1_049_000), (1, 2_999_999), (2_621_440, 3_000_016)] {
        let part = request(&server, "GET", url, &[("Range", &format!("bytes={first}-{last}"))]);
        assert_eq!(part.status, 206);
        assert!(part.body == bytes[first..=last], "bytes {first}-{last}");
    }
}

#[test]
fn serves_the_wasm_precompressed_with_a_validator_per_encoding() {
    let (site, model) = fixture("encoding");
    let wasm = site.join("pkg/webjudge_bg.wasm");
    let plain_bytes = std::fs::read(&wasm).unwrap();
    // Copies as the web build leaves them (here any bytes: the server never decodes them),
    // the brotli one with the wasm's time cut to the second, as `brotli -k` keeps it.
    std::fs::write(site.join("pkg/webjudge_bg.wasm.gz"), "gzip copy").unwrap();
    std::fs::write(site.join("pkg/webjudge_bg.wasm.br"), "brotli copy").unwrap();
    let built = std::fs::metadata(&wasm).unwrap().modified().unwrap();
    let seconds = built.duration_since(UNIX_EPOCH).unwrap().as_secs();
    set_modified(&site.join("pkg/webjudge_bg.wasm.br"), UNIX_EPOCH + Duration::from_secs(seconds));
    let server = start(&site, &model);
    let url = "/pkg/webjudge_bg.wasm";

    let gzip = request(&server, "GET", url, &[("Accept-Encoding", "gzip")]);
    assert_eq!((gzip.status, gzip.body.as_slice()), (200, b"gzip copy".as_slice()));
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert_eq!(gzip.header("content-type"), Some("application/wasm"));
    assert_eq!(gzip.header("vary"), Some("accept-encoding"));
    assert!(gzip.header("content-security-policy").is_some());
    // What browsers send: brotli is preferred at equal weight.
    let brotli = request(&server, "GET", url, &[("Accept-Encoding", "gzip, deflate, br, zstd")]);
    assert_eq!((brotli.body.as_slice(), brotli.header("content-encoding")), (b"brotli copy".as_slice(), Some("br")));
    let plain = get(&server, url);
    assert_eq!((&plain.body, plain.header("content-encoding")), (&plain_bytes, None));

    // Each encoding has its own ETag; a client revalidates the one it holds.
    let gzip_etag = gzip.header("etag").unwrap();
    assert_ne!(plain.header("etag"), Some(gzip_etag));
    let revalidated = request(&server, "GET", url, &[("Accept-Encoding", "gzip"), ("If-None-Match", gzip_etag)]);
    assert_eq!((revalidated.status, revalidated.body.len()), (304, 0));
    assert_eq!(request(&server, "GET", url, &[("If-None-Match", gzip_etag)]).status, 200, "another encoding");
    let since = plain.header("last-modified").expect("a Last-Modified date");
    assert_eq!(request(&server, "GET", url, &[("If-Modified-Since", since)]).status, 304);

    // A wasm rebuilt without its copies is served as it is, never from a stale copy.
    set_modified(&wasm, SystemTime::now() + Duration::from_secs(60));
    let fresh = request(&server, "GET", url, &[("Accept-Encoding", "gzip, br")]);
    assert_eq!((&fresh.body, fresh.header("content-encoding")), (&plain_bytes, None));
}

fn set_modified(path: &Path, time: SystemTime) {
    std::fs::File::options().write(true).open(path).unwrap().set_modified(time).unwrap();
}

#[test]
fn refuses_paths_outside_the_roots_and_other_methods() {
    let (site, model) = fixture("paths");
    let server = start(&site, &model);
    let escapes = [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/docs/../../secret.txt",
        "/models/default/../secret.txt",
        "/models/default/%2E%2E/secret.txt",
        "/models/other/manifest.json",
        "/models/",
        "/missing.js",
        "/..%5csecret.txt",
        "/%zz",
    ];
    assert_not_found(&server, &escapes);
    assert_eq!(request(&server, "POST", "/", &[]).status, 405);
    assert_eq!(request(&server, "DELETE", "/models/default/manifest.json", &[]).status, 405);

    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.write_all(b"garbage\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
}

#[test]
fn refuses_to_start_without_a_site_or_a_model() {
    let (site, model) = fixture("refuse");
    let empty = scratch("empty");
    let run = |root: &Path, model: &Path| {
        Command::new(env!("CARGO_BIN_EXE_webjudge"))
            .args(["serve", "--port", "0", "--root"])
            .arg(root)
            .arg("--model")
            .arg(model)
            .output()
            .unwrap()
    };
    let no_site = run(&empty, &model);
    assert!(!no_site.status.success());
    assert!(String::from_utf8_lossy(&no_site.stderr).contains("has no index.html"));
    let no_model = run(&site, &empty);
    assert!(!no_model.status.success());
    assert!(String::from_utf8_lossy(&no_model.stderr).contains("has no manifest.json"));
}

#[cfg(unix)]
#[test]
fn refuses_symlinks_that_leave_the_roots_and_dotfiles() {
    use std::os::unix::fs::symlink;
    let (site, model) = fixture("symlinks");
    let outside = site.parent().unwrap().join("secret.txt");
    symlink("/", site.join("root")).unwrap();
    symlink("/", model.join("root")).unwrap();
    symlink(&outside, site.join("leak.txt")).unwrap();
    symlink(&outside, model.join("leak.json")).unwrap();
    symlink(&site, model.join("site")).unwrap();
    symlink("app.js", site.join("alias.js")).unwrap();
    symlink("docs", site.join("manual")).unwrap();
    symlink(".git", site.join("git")).unwrap();
    std::fs::write(site.join(".hidden"), "hidden").unwrap();
    std::fs::create_dir_all(site.join("docs/.git")).unwrap();
    std::fs::write(site.join("docs/.git/config"), "hidden").unwrap();
    std::fs::create_dir_all(site.join(".git")).unwrap();
    std::fs::write(site.join(".git/config"), "hidden").unwrap();
    std::fs::write(model.join(".env"), "hidden").unwrap();
    let server = start(&site, &model);

    let escapes = [
        "/root/etc/passwd",
        "/root/etc/hostname",
        "/models/default/root/etc/passwd",
        "/leak.txt",
        "/models/default/leak.json",
        "/models/default/site/index.html",
        "/.hidden",
        "/%2ehidden",
        "/.git/config",
        "/docs/.git/config",
        "/git/config",
        "/models/default/.env",
    ];
    assert_not_found(&server, &escapes);
    assert_eq!(get(&server, "/alias.js").body, b"export {}", "a symlink inside the root is followed");
    assert_eq!(get(&server, "/manual/").body, b"docs", "a symlinked directory inside the root too");
    assert_eq!(get(&server, "/models/default/manifest.json").status, 200);
}

/// Whether the server has closed `stream`, waiting at most `wait` for it to do so.
/// How the server ended the connection within `wait`, if it did: end of stream or the
/// error a read got. A read interrupted by a signal is retried, not taken for a close.
fn closed_within(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    stream.set_read_timeout(Some(wait)).unwrap();
    loop {
        match stream.read(&mut [0; 1]) {
            Ok(read) => {
                assert_eq!(read, 0, "the server answered a request it cannot have read");
                return Some("end of stream".into());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
            Err(e) => return Some(e.to_string()),
        }
    }
}

/// The server's limit on reading a request head, and what a loaded machine may add.
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
const SLACK: Duration = Duration::from_secs(15);

#[test]
fn cuts_off_a_client_that_trickles_or_never_sends_its_request() {
    let (site, model) = fixture("trickle");
    let server = start(&site, &model);
    let mut silent = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let mut trickler = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let connected = Instant::now();
    let request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ".iter().chain(std::iter::repeat(&b'a'));
    let mut how = None;
    for byte in request {
        // The server drops the trickler by closing: a write or the wait for a reply fails.
        how = match trickler.write_all(&[*byte]) {
            Err(e) => Some(format!("write: {e}")),
            Ok(()) => closed_within(&mut trickler, Duration::from_secs(2)),
        };
        if how.is_some() {
            break;
        }
        assert!(connected.elapsed() < HEAD_DEADLINE + SLACK, "a client sending a byte every 2 s is never cut off");
    }
    let cut_off = connected.elapsed();
    eprintln!("trickling client cut off after {cut_off:?} ({how:?})");
    assert!(cut_off >= HEAD_DEADLINE - Duration::from_secs(1), "cut off early, after {cut_off:?} ({how:?})");
    assert!(closed_within(&mut silent, Duration::from_secs(5)).is_some(), "a client that never sends is cut off too");
    assert_eq!(get(&server, "/").status, 200);
}

#[test]
fn stops_writing_to_a_client_that_never_reads() {
    const STALL_SECS: u64 = 2;
    let (site, model) = fixture("stall");
    // More than the loopback socket buffers of both ends can hold.
    let size = 32 << 20;
    std::fs::write(model.join("big.bin"), vec![7u8; size]).unwrap();
    let server = start_with(&site, &model, &["--write-stall-secs", &STALL_SECS.to_string()]);
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.write_all(b"GET /models/default/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    // Not reading: the server's writes stall until it gives up and closes.
    std::thread::sleep(Duration::from_secs(STALL_SECS) + Duration::from_secs(8));
    stream.set_read_timeout(Some(SLACK)).unwrap();
    let mut received = Vec::new();
    stream.read_to_end(&mut received).expect("the server closed the stalled connection");
    eprintln!("a client that never read got {} of {size} bytes before the server gave up", received.len());
    assert!(received.len() < size, "the whole response was sent: the server waited for the client");
    std::fs::remove_file(model.join("big.bin")).unwrap();
}

/// Must match the server's `MAX_CONNECTIONS`.
const MAX_CONNECTIONS: usize = 64;

#[test]
fn answers_503_over_the_connection_cap_and_recovers() {
    let (site, model) = fixture("cap");
    let server = start(&site, &model);
    let idle: Vec<TcpStream> =
        (0..MAX_CONNECTIONS).map(|_| TcpStream::connect(("127.0.0.1", server.port)).unwrap()).collect();
    for _ in 0..4 {
        let mut extra = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        extra.set_read_timeout(Some(SLACK)).unwrap();
        let mut reply = String::new();
        extra.read_to_string(&mut reply).expect("an immediate answer and close over the cap");
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
        assert!(reply.contains("Retry-After: "), "{reply}");
    }
    drop(idle);
    // The server frees the slots when it notices the closes, well before its head deadline.
    let started = Instant::now();
    while status_line(&server, "/").as_deref() != Some("HTTP/1.1 200 OK") {
        assert!(started.elapsed() < HEAD_DEADLINE, "the dropped connections still count");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The first line of the answer to a GET, `None` when the connection fails (a server over
/// its cap closes without reading the request, which may reset the connection).
fn status_line(server: &Server, target: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).ok()?;
    stream.write_all(format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).ok()?;
    BufReader::new(stream).lines().next()?.ok()
}

/// The status of the answer to a request, which must come within the slack: a request the
/// server never answers fails the test instead of hanging it.
fn status_within_slack(server: &Server, method: &str, target: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_read_timeout(Some(SLACK)).unwrap();
    stream.write_all(format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).unwrap();
    let mut line = String::new();
    let read = BufReader::new(stream).read_line(&mut line);
    assert!(matches!(read, Ok(n) if n > 0), "no answer to {method} {target} within {SLACK:?}: {read:?}");
    line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a status line: {line:?}"))
}

/// Clients requesting the FIFOs at once, each in turn: in all more requests than tokio's
/// blocking pool has threads (512), which an open waiting for a writer would each pin.
const FIFO_CLIENTS: usize = 32;
const FIFO_REQUESTS_EACH: usize = 20;

#[cfg(unix)]
#[test]
fn a_fifo_in_a_root_is_not_found_and_holds_nothing() {
    let (site, model) = fixture("fifo");
    for fifo in [model.join("pipe.bin"), site.join("pipe.js")] {
        let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0, "mkfifo {}", fifo.display());
    }
    let server = start(&site, &model);
    // (method, target, status): the FIFOs by GET and HEAD, and the page between them.
    let requests = [
        ("GET", "/models/default/pipe.bin", 404),
        ("HEAD", "/models/default/pipe.bin", 404),
        ("GET", "/pipe.js", 404),
        ("HEAD", "/pipe.js", 404),
        ("GET", "/", 200),
    ];
    std::thread::scope(|scope| {
        for client in 0..FIFO_CLIENTS {
            let server = &server;
            scope.spawn(move || {
                for n in 0..FIFO_REQUESTS_EACH {
                    let (method, target, status) = requests[(client + n) % requests.len()];
                    assert_eq!(status_within_slack(server, method, target), status, "{method} {target}");
                }
            });
        }
    });
    assert_not_found(&server, &["/models/default/pipe.bin", "/pipe.js"]);
    assert_eq!(status_within_slack(&server, "GET", "/models/default/manifest.json"), 200);
}
