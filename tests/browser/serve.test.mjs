// `webjudge serve` as Chromium sees it (tests/serve.rs checks its answers byte for byte): under
// the server's own Content-Security-Policy header the page instantiates the wasm, which arrives
// as its gzip copy, and a reload revalidates it (a 304) instead of fetching it again.
// WEBJUDGE_BIN and WEBJUDGE_MODEL as for e2e.test.mjs.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { CHROMIUM_OPTIONS } from "./chromium.mjs";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = process.env.WEBJUDGE_BIN ?? join(REPO, "target/release/webjudge");
const MODEL = process.env.WEBJUDGE_MODEL ?? join(REPO, "target/models/smollm2-135m-instruct");
const WASM = join(REPO, "www/pkg/webjudge_bg.wasm");

test("webjudge serve: the wasm arrives precompressed, instantiates under its CSP, and is revalidated", async () => {
  const server = spawn(BIN, ["serve", "--port", "0", "--root", join(REPO, "www"), "--model", MODEL], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const profile = await mkdtemp(join(tmpdir(), "webjudge-serve-"));
  // No service worker: the page's fetches meet the HTTP cache and the server directly.
  const context = await chromium.launchPersistentContext(profile, { ...CHROMIUM_OPTIONS, serviceWorkers: "block" });
  try {
    const [line] = await Promise.race([
      new Promise((done) => createInterface({ input: server.stdout }).once("line", (l) => done([l]))),
      new Promise((_, fail) => server.once("exit", (code) => fail(new Error(`${BIN} serve exited ${code}`)))),
    ]);
    const origin = /http:\/\/127\.0\.0\.1:\d+/.exec(line)[0];
    const page = context.pages()[0] ?? (await context.newPage());
    // The module's init fetches the wasm and compiles it as it streams in ('wasm-unsafe-eval').
    const loadWasm = () =>
      page.evaluate(async () => {
        const module = await import("./pkg/webjudge.js");
        await module.default();
        const entry = performance.getEntriesByType("resource").find((e) => e.name.endsWith("/pkg/webjudge_bg.wasm"));
        const { transferSize, encodedBodySize, decodedBodySize } = entry;
        return { transferSize, encodedBodySize, decodedBodySize, metrics: typeof module.pairwiseMetrics };
      });

    await page.goto(`${origin}/index.html`);
    const first = await loadWasm();
    assert.equal(first.metrics, "function");
    assert.equal(first.decodedBodySize, (await stat(WASM)).size);
    // A precompressed copy: gzip, or brotli where the browser asks for it (Chromium does on
    // localhost, a secure context, though browsers ask for it over https elsewhere).
    const copies = await Promise.all(["gz", "br"].map(async (ext) => (await stat(`${WASM}.${ext}`).catch(() => null))?.size));
    assert.ok(copies.includes(first.encodedBodySize), `served ${first.encodedBodySize} bytes, copies ${copies}`);

    await page.reload();
    const again = await loadWasm();
    // A 304 is headers only; 0 would be the cache answering without asking the server.
    assert.ok(again.transferSize > 0 && again.transferSize < 4096, `revalidated: ${JSON.stringify(again)}`);
  } finally {
    await context.close();
    server.kill();
    await rm(profile, { recursive: true, force: true });
  }
});
