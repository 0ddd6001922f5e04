// Offline support for the app shell: requests for the files listed below go to the network first
// (so a new deploy shows up at once) and fall back to the copy kept here. Everything else, model
// files above all, is left to the browser: the wasm loader verifies and caches shards itself, and
// a second copy here would double the disk used by a multi-gigabyte model.

const CACHE = "webjudge-shell-v1";
const SHELL = [
  "./",
  "./index.html",
  "./style.css",
  "./app.js",
  "./item.js",
  "./batch.js",
  "./batch-data.js",
  "./messages.js",
  "./dom.js",
  "./examples.js",
  "./catalog.js",
  "./catalog.json",
  "./judge-client.js",
  "./start-worker.js",
  "./worker-hint.js",
  "./worker.js",
  "./web-judge.js",
  "./docs-example.html",
  "./pkg/webjudge.js",
  "./pkg/webjudge_bg.wasm",
];

const SHELL_URLS = new Set(SHELL.map((path) => new URL(path, self.registration.scope).href));

self.addEventListener("install", (event) => {
  // Best effort: a missing file (pkg/ not built yet) must not stop the rest from being kept.
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => Promise.all(SHELL.map((path) => cache.add(path).catch(() => {}))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((n) => n.startsWith("webjudge-shell-") && n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  url.search = "";
  url.hash = "";
  // Anything else returns without responding: the browser fetches it as if there were no
  // service worker.
  if (request.method === "GET" && SHELL_URLS.has(url.href)) event.respondWith(networkFirst(request));
});

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok && response.type === "basic") await cache.put(request, response.clone());
    return response;
  } catch (error) {
    const cached = await cache.match(request, { ignoreSearch: true });
    if (cached) return cached;
    throw error;
  }
}
