// The end-to-end tests' static server (node:http only): the site at /, one model directory at
// /models/default/, every request logged so tests can count what reached the server, and one
// shard's bytes corruptible on demand to exercise the loader's checksum.
//
// Everything is sent with Cache-Control: no-store, so the browser's HTTP cache never answers in
// the server's place: a request missing from the log was served by the page's own caches.

import { createServer } from "node:http";
import { open, stat } from "node:fs/promises";
import { extname, join, resolve, sep } from "node:path";

const MODEL_PREFIX = "/models/default/";

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

export async function startServer({ root, model }) {
  // Every request as { method, path, range, status }.
  const log = [];
  // File names (relative to the model dir) whose next response is served corrupted.
  const corruptNext = new Set();

  const server = createServer(async (request, response) => {
    const path = decodeURIComponent(new URL(request.url, "http://localhost").pathname);
    const entry = { method: request.method, path, range: request.headers.range ?? null, status: 0 };
    log.push(entry);
    try {
      const file = fileFor(path);
      if (!file || !["GET", "HEAD"].includes(request.method)) return send(response, entry, 404, "not found\n");
      await serveFile(request, response, entry, file, path);
    } catch (error) {
      send(response, entry, error.code === "ENOENT" || error.code === "EISDIR" ? 404 : 500, `${error.message}\n`);
    }
  });

  // A request path → a file under the site or the model directory; null for anything that
  // would escape them.
  function fileFor(path) {
    let base = resolve(root);
    let rest = path;
    if (path.startsWith(MODEL_PREFIX)) {
      base = resolve(model);
      rest = path.slice(MODEL_PREFIX.length);
    }
    if (rest.endsWith("/") || rest === "") rest += "index.html";
    const file = join(base, rest);
    return file.startsWith(base + sep) ? file : null;
  }

  async function serveFile(request, response, entry, file, path) {
    const info = await stat(file);
    if (!info.isFile()) return send(response, entry, 404, "not found\n");
    let start = 0;
    let end = info.size - 1;
    let status = 200;
    const range = /^bytes=(\d*)-(\d*)$/.exec(request.headers.range ?? "");
    if (range) {
      start = range[1] === "" ? Math.max(0, info.size - Number(range[2])) : Number(range[1]);
      end = range[1] !== "" && range[2] !== "" ? Math.min(Number(range[2]), end) : end;
      if (start > end) {
        response.setHeader("Content-Range", `bytes */${info.size}`);
        return send(response, entry, 416, "");
      }
      status = 206;
      response.setHeader("Content-Range", `bytes ${start}-${end}/${info.size}`);
    }
    const handle = await open(file);
    let body;
    try {
      body = Buffer.alloc(end - start + 1);
      await handle.read(body, 0, body.length, start);
    } finally {
      await handle.close();
    }
    const name = path.startsWith(MODEL_PREFIX) ? path.slice(MODEL_PREFIX.length) : null;
    if (name && corruptNext.delete(name) && body.length > 0) {
      // One flipped bit in the middle: the length is right, only the checksum can tell.
      body[body.length >> 1] ^= 0x01;
      entry.corrupted = true;
    }
    response.setHeader("Content-Type", TYPES[extname(file)] ?? "application/octet-stream");
    response.setHeader("Accept-Ranges", "bytes");
    response.setHeader("Content-Length", body.length);
    entry.status = status;
    response.writeHead(status, { "Cache-Control": "no-store" });
    response.end(request.method === "HEAD" ? undefined : body);
  }

  function send(response, entry, status, text) {
    entry.status = status;
    response.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store" });
    response.end(text);
  }

  const listen = (port) => new Promise((done) => server.listen(port, "127.0.0.1", done));
  const close = () =>
    new Promise((done) => {
      server.closeAllConnections();
      server.close(done);
    });
  await listen(0);
  const port = server.address().port;
  return {
    origin: `http://127.0.0.1:${port}`,
    log,
    // Requests since `mark` (an index into the log) whose path matches.
    requests: (mark = 0, test = () => true) => log.slice(mark).filter((e) => test(e.path)),
    corruptOnce: (fileName) => corruptNext.add(fileName),
    // The host gone and back, on the same origin (the page's caches belong to the origin).
    goOffline: close,
    goOnline: () => listen(port),
    close,
  };
}

// `node server.mjs ROOT MODEL_DIR`: the same server by hand, to look at the page.
if (import.meta.url === `file://${process.argv[1]}`) {
  const [root, model] = process.argv.slice(2);
  const server = await startServer({ root, model });
  console.log(`serving ${root} at ${server.origin}/ and ${model} at ${server.origin}${MODEL_PREFIX}`);
}
