// The browser suites' test server (node:http only): files with the faults the loader must
// survive, every request logged so tests can count what reached the server. Both suites use it:
//
// - tests/browser/ (e2e.test.mjs, bench.mjs) imports startServer: the site at /, the model at
//   /models/default/, one shard corruptible on demand (corruptOnce), the host gone and back
//   (goOffline, goOnline);
// - tests/web.rs runs it through tools/test_wasm.sh (`node tests/browser/server.mjs --port P
//   --model DIR [--root DIR]`) and loads the model from /<mode>-<tag>/<file>: every test uses its
//   own tag, so fault state, request logs and the browser's cache entries never mix between
//   tests. Modes:
//     plain    the files as they are
//     flaky    the first GET of each shard without a Range header, and of a GGUF's weights (the
//              open-ended `bytes=0-` its loader streams the file with), is cut off halfway (the
//              connection is closed mid-body); later requests are served normally
//     corrupt  the first GET of the first shard, and of a GGUF's weights, has one byte flipped;
//              later ones are good
//     norange  like flaky, but Range headers are ignored (200 with the whole file)
//     stall    like flaky, but the connection stays open and silent for 20 s instead of closing
//   GET /log?tag=T answers the requests made under tag T as JSON (log entries, below).
// - A GGUF of the model folder also comes as from the Hugging Face Hub behind its CDN redirect:
//   /<owner>/<name>/resolve/<revision>/<file> with no X-Linked-Etag, and the Hub API's folder
//   listing /api/models/<owner>/<name>/tree/<revision>/ giving each GGUF's sha256 as `lfs.oid`
//   (owner `wrong`, or every owner after changeHubFiles: a sha256 no file has).
//
// A GGUF file under /models/default/ is served as the Hugging Face Hub serves one, its sha256
// (quoted) in X-Linked-Etag; under the fault URLs it comes with no hash, as from any other host.
//
// Everything is sent with Cache-Control: no-store, so the browser's HTTP cache never answers in
// the server's place: a request missing from the log was served by the page's own caches. Every
// response allows any origin: tests/web.rs's page comes from wasm-bindgen-test-runner's port.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, readdir, stat } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, resolve, sep } from "node:path";
import { parseArgs } from "node:util";

const MODEL_PREFIX = "/models/default/";
const FAULT_URL = /^\/(plain|flaky|corrupt|norange|stall)-([\w.]+)\/([\w.-]+)$/;
const HUB_FILE = /^\/[\w.-]+\/[\w.-]+\/resolve\/[\w.-]+\/([\w.-]+\.gguf)$/;
const HUB_TREE = /^\/api\/models\/([\w.-]+)\/[\w.-]+\/tree\/[\w.-]+\/?$/;
// Far beyond the loader's stall timeout, which the tests set to a few seconds.
const STALL_MS = 20_000;
// How long a cut connection lives after its half body was sent: a connection destroyed at once
// was seen to reach the page with none of those bytes read (a GGUF's transfer resumed from 0).
const CUT_AFTER_MS = 250;

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".jsonl": "application/jsonl",
  ".wasm": "application/wasm",
  ".ts": "text/plain; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
};

const COMMON_HEADERS = {
  "Cache-Control": "no-store",
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Headers": "Range",
  "Access-Control-Expose-Headers": "Content-Range, Content-Length, X-Linked-Etag",
};

// `root` (the site) is optional: tests/web.rs needs the model only.
export async function startServer({ root, model, port = 0 }) {
  // Every request as { method, path, range, status }, plus for a model file its `file` name (and
  // `tag` and `mode` under a fault URL), `corrupted` and `cut` when it got those faults.
  const log = [];
  // Model file names whose next response is served corrupted.
  const corruptNext = new Set();
  // "<mode>-<tag>/<file>" of the fault URLs that already had their one fault.
  const faulted = new Set();
  const firstTime = (key) => !faulted.has(key) && Boolean(faulted.add(key));
  // The sha256 of each GGUF served with X-Linked-Etag, by path, size and modification time (a
  // file replaced is hashed again).
  const hashes = new Map();
  const sha256 = async (path, info) => {
    const key = `${path} ${info.size} ${info.mtimeMs}`;
    if (!hashes.has(key)) {
      const hash = createHash("sha256");
      for await (const chunk of createReadStream(path)) hash.update(chunk);
      hashes.set(key, hash.digest("hex"));
    }
    return hashes.get(key);
  };

  // Whether the Hub API's listing says every file changed (changeHubFiles): the hash it gives
  // is then no file's.
  let hubChanged = false;
  // The Hub API's listing of the model folder: its GGUF files, each with its sha256 as `lfs.oid`
  // (or, `wrong`, a sha256 no file has).
  const hubListing = async (wrong) => {
    const listing = [];
    for (const name of (await readdir(model)).filter((name) => name.endsWith(".gguf"))) {
      const path = join(model, name);
      const info = await stat(path);
      const oid = wrong ? "0".repeat(64) : await sha256(path, info);
      listing.push({ type: "file", path: name, size: info.size, lfs: { oid, size: info.size, pointerSize: 134 } });
    }
    return listing;
  };

  const server = createServer(async (request, response) => {
    const url = new URL(request.url, "http://localhost");
    const entry = { method: request.method, path: url.pathname, range: request.headers.range ?? null, status: 0 };
    log.push(entry);
    try {
      entry.path = decodeURIComponent(url.pathname);
      if (request.method === "OPTIONS") return send(response, entry, 204, "");
      if (!["GET", "HEAD"].includes(request.method)) return send(response, entry, 405, "only GET and HEAD\n");
      if (entry.path === "/log") {
        const tagged = log.filter((e) => e.tag === url.searchParams.get("tag"));
        return send(response, entry, 200, JSON.stringify(tagged), { "Content-Type": "application/json" });
      }
      const tree = HUB_TREE.exec(entry.path);
      if (tree) {
        const listing = JSON.stringify(await hubListing(tree[1] === "wrong" || hubChanged));
        return send(response, entry, 200, listing, { "Content-Type": "application/json" });
      }
      const target = locate(entry);
      if (!target) return send(response, entry, 404, "not found\n");
      await serveFile(request, response, entry, target);
    } catch (error) {
      const missing = ["ENOENT", "EISDIR", "ENOTDIR"].includes(error.code);
      send(response, entry, error instanceof URIError ? 400 : missing ? 404 : 500, `${error.message}\n`);
    }
  });

  // The file a request path names and its faults; null for a path that would leave the roots.
  function locate(entry) {
    const fault = FAULT_URL.exec(entry.path);
    if (fault) {
      const [, mode, tag, file] = fault;
      Object.assign(entry, { mode, tag, file });
      return { path: join(model, file), mode, key: `${mode}-${tag}/${file}` };
    }
    const hub = HUB_FILE.exec(entry.path);
    if (hub) {
      entry.file = hub[1];
      return inside(model, entry.file);
    }
    if (entry.path.startsWith(MODEL_PREFIX)) {
      entry.file = entry.path.slice(MODEL_PREFIX.length);
      const target = inside(model, entry.file);
      return target && { ...target, linked: entry.file.endsWith(".gguf") };
    }
    return root ? inside(root, entry.path.slice(1)) : null;
  }

  function inside(dir, relative) {
    const base = resolve(dir);
    const path = join(base, relative === "" || relative.endsWith("/") ? `${relative}index.html` : relative);
    return path.startsWith(base + sep) ? { path, mode: "plain" } : null;
  }

  async function serveFile(request, response, entry, { path, mode, key, linked }) {
    const info = await stat(path);
    if (!info.isFile()) return send(response, entry, 404, "not found\n");
    const linkedEtag = linked ? { "X-Linked-Etag": `"${await sha256(path, info)}"` } : {};
    const size = info.size;
    const shard = entry.file?.startsWith("weights-") ?? false;
    // A GGUF's weights: the open-ended range its loader streams the file with (the header's
    // requests, closed ranges, are left alone so that the loader gets as far as the weights).
    const ggufWeights = (entry.file?.endsWith(".gguf") ?? false) && request.headers.range === "bytes=0-";
    const range = mode === "norange" ? null : byteRange(request.headers.range, size);
    if (range && range.start > range.end) return send(response, entry, 416, "", { "Content-Range": `bytes */${size}` });
    const { start, end } = range ?? { start: 0, end: size - 1 };
    const body = await readBytes(path, start, end - start + 1);
    const firstFault = mode === "corrupt" && (entry.file.startsWith("weights-00001") || ggufWeights) && firstTime(key);
    const corrupt = firstFault || corruptNext.delete(entry.file);
    if (corrupt && body.length > 0) {
      // One flipped byte in the middle: the length is right, only the checksum can tell.
      body[body.length >> 1] ^= 0xff;
      entry.corrupted = true;
    }
    const cut = ((shard && !request.headers.range) || ggufWeights) && ["flaky", "norange", "stall"].includes(mode) && firstTime(key);
    entry.status = range ? 206 : 200;
    response.writeHead(entry.status, {
      ...COMMON_HEADERS,
      "Content-Type": TYPES[extname(path)] ?? "application/octet-stream",
      "Content-Length": body.length,
      "Accept-Ranges": mode === "norange" ? "none" : "bytes",
      ...(range ? { "Content-Range": `bytes ${start}-${end}/${size}` } : {}),
      ...linkedEtag,
    });
    if (request.method === "HEAD") return response.end();
    if (!cut) return response.end(body);
    // Half the promised body, then a dead connection (soon, or after a long silence): the
    // browser's body stream errors after delivering those bytes.
    entry.cut = true;
    response.write(body.subarray(0, body.length >> 1), () => {
      setTimeout(() => response.destroy(), mode === "stall" ? STALL_MS : CUT_AFTER_MS).unref();
    });
  }

  function send(response, entry, status, text, headers = {}) {
    entry.status = status;
    response.writeHead(status, { ...COMMON_HEADERS, "Content-Type": "text/plain; charset=utf-8", ...headers });
    response.end(text);
  }

  const listen = (at) => new Promise((done) => server.listen(at, "127.0.0.1", done));
  const close = () =>
    new Promise((done) => {
      server.closeAllConnections();
      server.close(done);
    });
  await listen(port);
  const bound = server.address().port;
  return {
    origin: `http://127.0.0.1:${bound}`,
    log,
    // Requests since `mark` (an index into the log) whose path matches.
    requests: (mark = 0, test = () => true) => log.slice(mark).filter((e) => test(e.path)),
    corruptOnce: (fileName) => corruptNext.add(fileName),
    // From now on the Hub API's listing gives every file a new sha256, as after a new upload.
    changeHubFiles: () => (hubChanged = true),
    // The host gone and back, on the same origin (the page's caches belong to the origin).
    goOffline: close,
    goOnline: () => listen(bound),
    close,
  };
}

// One `bytes=first-last` range (either end may be left out) as { start, end }, end clamped to
// the file; start > end when it cannot be satisfied; null for no header or another form.
function byteRange(header, size) {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header ?? "");
  if (!match || (match[1] === "" && match[2] === "")) return null;
  const [first, last] = [match[1], match[2]];
  if (first === "") return { start: Math.max(0, size - Number(last)), end: size - 1 };
  return { start: Number(first), end: last === "" ? size - 1 : Math.min(Number(last), size - 1) };
}

async function readBytes(path, start, length) {
  const handle = await open(path);
  try {
    const body = Buffer.alloc(length);
    await handle.read(body, 0, length, start);
    return body;
  } finally {
    await handle.close();
  }
}

// `node server.mjs --port P --model DIR [--root DIR]`: for tools/test_wasm.sh, or to look at the
// page by hand.
if (import.meta.url === `file://${process.argv[1]}`) {
  const options = { port: { type: "string" }, model: { type: "string" }, root: { type: "string" } };
  const { values } = parseArgs({ options });
  if (!values.model) throw new Error("usage: node server.mjs [--port P] --model DIR [--root DIR]");
  const server = await startServer({ root: values.root, model: values.model, port: Number(values.port ?? 0) });
  const site = values.root ? `, ${values.root} at ${server.origin}/` : "";
  console.log(`serving ${values.model} at ${server.origin}${MODEL_PREFIX} and its fault URLs${site}`);
}
