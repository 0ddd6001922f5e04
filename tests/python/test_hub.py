"""GGUF files by URL (webjudge.hub): the test model's GGUF served by `webjudge serve` as the Hub
serves it loads as its directory does, from the cache once the host is gone; a file host in
this process (byte ranges, the Hub's redirect with X-Linked-Etag, faults on order) shows a
broken download resumed where it stopped, a wrong sha256 refused with nothing kept, a changed
host file downloaded again, and a split model's parts side by side."""

import hashlib
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import webjudge
from conftest import REPO, cli, json_lines, run_cli
from webjudge import hub

# A warning no test expects (a download not verified, say) fails it.
pytestmark = pytest.mark.filterwarnings("error::UserWarning")

ROW = {"prompt": "What is 2 + 2?", "response 1": "4", "response 2": "5"}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Each test downloads into a cache of its own."""
    monkeypatch.setenv("WEBJUDGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "hub"


def test_a_gguf_url_loads_as_its_directory_and_from_the_cache_once_the_host_is_gone(model_dir):
    gguf = Path(os.environ["WEBJUDGE_TEST_GGUF"])
    serve = [cli(), "serve", "--port", "0", "--model", gguf]
    server = subprocess.Popen(serve, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        # "serving http://127.0.0.1:PORT/ (GGUF FILE at /models/default/NAME, sha256 HASH)"
        line = server.stdout.readline()
        origin = line.split()[1].rstrip("/")
        url = f"{origin}/models/default/{gguf.name}"
        progress = []
        judge = webjudge.Judge.load(url, on_progress=lambda done, total: progress.append((done, total)))
    finally:
        server.terminate()
        server.wait()
    ids = json_lines(run_cli("prompt", "--protocol", "pairwise_tie", "--model", model_dir, "--ids",
                             stdin=json.dumps(ROW) + "\n"))[0]  # fmt: skip
    assert judge.prompt(ROW, protocol="pairwise_tie") == (ids["input"], ids["ids"])
    size = gguf.stat().st_size
    assert progress[-1] == (size, size)
    cached = hub.cache_path(url)
    assert cached.read_bytes() == gguf.read_bytes()
    assert line.split("sha256 ")[1].rstrip(")\n") in cached.with_name(cached.name + ".json").read_text()
    del judge
    with pytest.warns(UserWarning, match="cannot be reached"):
        offline = webjudge.Judge.load(url)
    assert offline.prompt(ROW, protocol="pairwise_tie") == (ids["input"], ids["ids"])


class Host:
    """A file host in this process: files by name under /files/ (and /cdn/), byte ranges; under
    /resolve/ the Hub's answer, a redirect to /cdn/ carrying X-Linked-Etag and X-Linked-Size;
    under /moved/ a redirect to /files/. It logs each request's method, path and Range, and
    breaks a transfer on order."""

    def __init__(self):
        self.files = {}  # name: (bytes, extra headers of a direct answer)
        self.linked = {}  # name: the X-Linked-Etag /resolve/ answers with, where not the file's
        self.requests = []
        self.break_after = None  # the next GET's body stops after these bytes
        self.down_after_break = False  # and every request after it is answered 503
        self.down = False
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                host.answer(self, body=False)

            def do_GET(self):
                host.answer(self, body=True)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def url(self, name, folder="files"):
        return f"http://127.0.0.1:{self.server.server_port}/{folder}/{name}"

    def ranges(self):
        """The Range of each GET answered with bytes (redirects left out)."""
        answered = ("/files/", "/cdn/")
        return [asked for method, path, asked in self.requests if method == "GET" and path.startswith(answered)]

    def answer(self, handler, body):
        self.requests.append((handler.command, handler.path, handler.headers.get("Range")))
        folder, name = handler.path.strip("/").split("/", 1)
        if self.down or name not in self.files:
            handler.send_error(503 if self.down else 404)
            return
        data, headers = self.files[name]
        if folder in ("resolve", "moved"):
            # An absolute Location, as the Hub's to its CDN: HEAD requests stop there.
            handler.send_response(302)
            handler.send_header("Location", self.url(name, "cdn" if folder == "resolve" else "files"))
            if folder == "resolve":
                handler.send_header("X-Linked-Etag", self.linked.get(name, f'"{hashlib.sha256(data).hexdigest()}"'))
                handler.send_header("X-Linked-Size", str(len(data)))
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        asked = handler.headers.get("Range")
        first, _, last = asked[len("bytes=") :].partition("-") if asked else ("0", "", "")
        start, end = int(first), int(last) + 1 if last else len(data)
        handler.send_response(206 if asked else 200)
        if asked:
            handler.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        handler.send_header("Content-Length", str(end - start))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        sent = data[start:end]
        if body and self.break_after is not None:
            sent, self.break_after = sent[: self.break_after], None
            self.down = self.down_after_break
        if body:
            handler.wfile.write(sent)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def host():
    running = Host()
    yield running
    running.stop()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


DATA = os.urandom(3 << 20)


def test_a_broken_download_resumes_where_it_stopped_in_the_same_run_and_the_next(host, cache):
    host.files["model.gguf"] = (DATA, {})
    url = host.url("model.gguf", "resolve")
    # Broken once: the same run asks for the rest.
    host.break_after = 1 << 20
    assert hub.download(url).read_bytes() == DATA
    assert host.ranges() == [None, f"bytes={1 << 20}-"]
    # Broken, and the host down after: the bytes that came wait for the next run.
    host.files["other.gguf"] = (DATA[::-1], {})
    other = host.url("other.gguf", "resolve")
    host.break_after, host.down_after_break = 1 << 20, True
    with pytest.raises(webjudge.DownloadError, match="the next load resumes"):
        hub.download(other)
    incomplete = hub.cache_path(other).with_name("other.gguf.incomplete")
    assert incomplete.read_bytes() == DATA[::-1][: 1 << 20]
    host.down = False
    host.requests.clear()
    progress = []
    path = hub.download(other, on_progress=lambda done, total: progress.append((done, total)))
    assert host.ranges() == [f"bytes={1 << 20}-"]
    assert path.read_bytes() == DATA[::-1] and not incomplete.exists()
    assert progress[0] == (1 << 20, len(DATA)) and progress[-1] == (len(DATA), len(DATA))
    record = json.loads(path.with_name("other.gguf.json").read_text())
    assert (record["sha256"], record["size"], record["verified"]) == (sha256(DATA[::-1]), len(DATA), True)


def test_a_wrong_sha256_is_refused_keeping_nothing_new_and_the_verified_copy(host, cache):
    host.files["model.gguf"] = (DATA, {})
    url = host.url("model.gguf", "resolve")
    verified = hub.download(url)
    record = verified.with_name("model.gguf.json").read_text()
    wrong = "0" * 64
    # The host's X-Linked-Etag says so before a byte is fetched.
    with pytest.raises(webjudge.HashMismatch, match=f"{sha256(DATA)}.*not {wrong}") as refused:
        hub.download(url, sha256=wrong)
    assert (refused.value.expected, refused.value.found) == (wrong, sha256(DATA))
    # A host that says no hash: the downloaded bytes do.
    plain = host.url("model.gguf")
    with pytest.raises(webjudge.HashMismatch, match=f"{sha256(DATA)} \\(the downloaded bytes\\) is not {wrong}"):
        hub.download(plain, sha256=wrong)
    # The host's hash changes, its bytes do not: downloaded again, refused, the verified copy kept.
    host.linked["model.gguf"] = f'W/"{wrong}"'
    downloaded_and_refused = f"{sha256(DATA)} \\(the downloaded bytes\\) is not {wrong} \\(the host's X-Linked-Etag\\)"
    with pytest.raises(webjudge.HashMismatch, match=downloaded_and_refused):
        hub.download(url)
    assert verified.read_bytes() == DATA and verified.with_name("model.gguf.json").read_text() == record
    assert sorted(path.name for path in cache.rglob("*") if path.is_file()) == ["model.gguf", "model.gguf.json"]
    # The right sha256 is the cached copy, host or not.
    host.down = True
    assert hub.download(url, sha256=sha256(DATA).upper()) == verified


def test_an_unverified_download_warns_and_a_changed_host_file_is_fetched_again(host):
    host.files["model.gguf"] = (DATA, {"ETag": '"v1"'})
    # Redirected without X-Linked-*: the size and ETag come from where the redirect ends.
    url = host.url("model.gguf", "moved")
    with pytest.warns(UserWarning, match="not verified"):
        path = hub.download(url)
    assert f'"sha256": "{sha256(DATA)}"' in path.with_name("model.gguf.json").read_text()
    host.requests.clear()
    assert hub.download(url) == path
    assert host.ranges() == ["bytes=0-0"]
    changed = DATA[::-1]
    host.files["model.gguf"] = (changed, {"ETag": '"v2"'})
    with pytest.warns(UserWarning, match="not verified"):
        assert hub.download(url).read_bytes() == changed
    host.stop()
    with pytest.warns(UserWarning, match="cannot be reached"):
        assert hub.download(url).read_bytes() == changed
    with pytest.raises(webjudge.DownloadError, match="no copy is cached"):
        hub.download(host.url("never.gguf"))


def test_a_split_models_parts_are_downloaded_side_by_side(host):
    parts = [DATA[: 1 << 20], DATA[1 << 20 :]]
    for number, data in enumerate(parts, 1):
        host.files[f"model-{number:05}-of-00002.gguf"] = (data, {})
    progress = []
    url = host.url("model-00002-of-00002.gguf", "resolve")
    path = hub.download(url, on_progress=lambda done, total: progress.append((done, total)))
    assert path.name == "model-00002-of-00002.gguf"
    assert [path.with_name(f"model-{n:05}-of-00002.gguf").read_bytes() for n in (1, 2)] == parts
    assert progress[-1] == (len(DATA), len(DATA))
    with pytest.raises(ValueError, match="split model"):
        hub.download(url, sha256=sha256(DATA))
    with pytest.raises(webjudge.DownloadError, match="the host answered 404"):
        hub.download(host.url("absent.gguf"))
    with pytest.raises(webjudge.DownloadError, match="only a GGUF file"):
        webjudge.Judge.load(host.url("model/"))
