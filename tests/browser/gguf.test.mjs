// A GGUF loaded by URL in headless Chromium (issue 25): the test model's GGUF served by
// `webjudge serve --model FILE.gguf` as the Hugging Face Hub serves one (ranges, CORS, its sha256
// in X-Linked-Etag), loaded by Judge.load with no conversion step: the header by range requests,
// the file streamed and repacked in the wasm, verified against the linked hash; it generates the
// reference's first greedy ids (tests/golden/smollm2_generate.json, transformers', which its
// converted directory generates too); loaded again, it comes from the Origin Private File System
// with no weight request (one byte, to see that the file is unchanged) and generates the same, and
// so does <web-judge model="….gguf" sha256="…"> (judge-client.js and its worker), and
// clearCache(url) removes it. Refusals (a truncated file, a header promising more tensors, a
// server without ranges, a wrong sha256) on a tiny fixture, with nothing of them kept and a copy
// verified before a refusal still kept; its transfer cut off, stalled, corrupted and cancelled;
// and the fixture split into llama.cpp's split files, loaded as one model.
// One Chromium, one page, one download of the 92 MB file over the loopback.
//   WEBJUDGE_BIN        native CLI (serves the file), default target/release/webjudge
//   WEBJUDGE_TEST_GGUF  the test model's GGUF, default: tools/fetch_test_model.sh's
//   WEBJUDGE_WWW        the site, default www/

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { CHROMIUM_OPTIONS } from "./chromium.mjs";
import { startServer } from "./server.mjs";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = process.env.WEBJUDGE_BIN ?? join(REPO, "target/release/webjudge");
const ROOT = process.env.WEBJUDGE_WWW ?? join(REPO, "www");
const GGUF =
  process.env.WEBJUDGE_TEST_GGUF ??
  execFileSync("bash", [join(REPO, "tools/fetch_test_model.sh")], { encoding: "utf8" }).trim().split("\n").at(-1);
// Greedy steps compared: each takes seconds on SwiftShader.
const STEPS = 4;

let server;
let browser;

before(async () => {
  server = spawn(BIN, ["serve", "--port", "0", "--root", ROOT, "--model", GGUF], { stdio: ["ignore", "pipe", "inherit"] });
  const [line] = await createInterface({ input: server.stdout })[Symbol.asyncIterator]().next().then((r) => [r.value]);
  server.origin = line.match(/http:\/\/127\.0\.0\.1:\d+/)[0];
  browser = await chromium.launch(CHROMIUM_OPTIONS);
});

after(async () => {
  await browser?.close();
  server?.kill();
});

test("a GGUF URL loads, verified by its linked sha256, generates the reference's ids, and loads again from the OPFS", { timeout: 10 * 60_000 }, async () => {
  const golden = JSON.parse(await readFile(join(REPO, "tests/golden/smollm2_generate.json"), "utf8")).cases[0];
  const page = await browser.newPage();
  const warnings = [];
  page.on("console", (message) => message.type() === "warning" && warnings.push(message.text()));
  // The GGUF's requests, by the load they belong to, with their ranges.
  const ranges = [];
  page.on("request", (request) => request.url().endsWith(".gguf") && ranges.push(request.headers()["range"]));
  await page.goto(`${server.origin}/index.html`);
  const url = `/models/default/${basename(GGUF)}`;
  const sha256 = createHash("sha256").update(await readFile(GGUF)).digest("hex");
  const started = Date.now();
  const result = await page.evaluate(
    async ({ url, prompt, steps, sha256 }) => {
      const wasm = await import("/pkg/webjudge.js");
      await wasm.default();
      const progress = [];
      const judge = await wasm.Judge.load(url, { contextLength: 256, onProgress: (done, total) => progress.push([done, total]) });
      const generated = await judge.generate(prompt, { maxNewTokens: steps });
      const info = judge.info();
      await judge.unload();
      const again = await wasm.Judge.load(url, { contextLength: 256 });
      const regenerated = await again.generate(prompt, { maxNewTokens: steps });
      const reloaded = again.info();
      await again.unload();
      const listKept = async () => {
        const names = [];
        const root = await (await navigator.storage.getDirectory()).getDirectoryHandle("webjudge-gguf", { create: true });
        for await (const name of root.keys()) names.push(name);
        return names;
      };
      const keptBeforeClear = await listKept();
      const listedBeforeClear = await wasm.Judge.keptModels();
      // <web-judge model="….gguf" sha256="…">, through judge-client.js and its worker: the kept model.
      await import("/web-judge.js");
      const element = document.createElement("web-judge");
      element.setAttribute("model", url);
      element.setAttribute("sha256", sha256);
      document.body.append(element);
      const elementInfo = await (await element.load()).info();
      await wasm.Judge.clearCache(url);
      const keptAfterClear = await listKept();
      const listedAfterClear = await wasm.Judge.keptModels();
      return {
        ids: generated.ids, info, progress: progress.at(-1), again: regenerated.ids, reloaded,
        keptBeforeClear, keptAfterClear, listedBeforeClear, listedAfterClear, elementInfo,
      };
    },
    { url, prompt: golden.prompt, steps: STEPS, sha256 },
  );
  console.log(`GGUF: three loads and 2 × ${STEPS} greedy steps in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  assert.deepEqual(result.ids, golden.ids.slice(0, STEPS));
  const size = (await import("node:fs")).statSync(GGUF).size;
  assert.deepEqual(result.progress, [size, size]);
  assert.equal(result.info.downloadedBytes, size);
  assert.deepEqual(warnings.filter((w) => w.includes("not verified")), [], "the linked sha256 was read");
  assert.equal(result.keptBeforeClear.length, 1, "the verified model was kept");
  assert.deepEqual(result.keptAfterClear, [], "clearCache(url) removes the kept model");
  assert.deepEqual(result.listedBeforeClear.map(({ url, sha256, sha256Verified }) => ({ url, sha256, sha256Verified })), [
    { url: `${server.origin}${url}`, sha256, sha256Verified: true },
  ]);
  assert.ok(result.listedBeforeClear[0].bytes > 0);
  assert.deepEqual(result.listedAfterClear, [], "keptModels() lists nothing once cleared");
  assert.equal(result.info.sha256, sha256);
  assert.equal(result.info.sha256Verified, true, "verified by the linked sha256");
  assert.equal(result.reloaded.sha256, sha256);
  assert.equal(result.reloaded.sha256Verified, true);
  // The second load: the kept model, the same ids, and of the file only its first byte.
  assert.deepEqual(result.again, result.ids);
  assert.equal(result.reloaded.fromCache, true);
  assert.equal(result.reloaded.downloadedBytes, 0);
  assert.equal(result.elementInfo.fromCache, true, "<web-judge> loaded the kept model");
  // Every request is a range: the header (a 4 MiB prefix), one byte for each load of the kept
  // model (the page's second and the element's, from its worker) and the one download from byte
  // 0, not resumed on the loopback.
  console.log(`GGUF requests (ranges): ${JSON.stringify(ranges)}`);
  assert.ok(ranges.every((range) => /^bytes=\d+-\d*$/.test(range ?? "")), "only range requests");
  assert.deepEqual(ranges.filter((range) => range === "bytes=0-0"), ["bytes=0-0", "bytes=0-0"]);
  assert.deepEqual(ranges.filter((range) => /^bytes=\d+-$/.test(range)), ["bytes=0-"]);
});

// Files that are no GGUF the header promises, refused from the header's range requests alone
// (no weight fetched), each with a message that says what is wrong: a file cut short, a header
// promising one tensor more than it describes, and a server that ignores ranges; and a whole file
// whose sha256 is not the one expected, refused once streamed. Nothing of a refused file is kept,
// and a refused download of a URL whose model is kept leaves that copy as it was: the whole file
// loaded verified (the right sha256) is kept, loaded again with a wrong sha256 it is downloaded and
// refused, and loaded with no sha256 it still comes from the OPFS. Then the page: its menu of
// known judges (www/catalog.json) fills in the URL, and it loads the whole file by its field,
// lists the kept model and deletes it. A tiny fixture (qwen2_tiny.gguf) from the suites' test
// server, which logs requests.
test("a truncated GGUF, a header promising more tensors, a server without ranges and a wrong sha256 are refused with nothing kept", { timeout: 5 * 60_000 }, async () => {
  const promising = (bytes) => {
    const copy = Buffer.from(bytes);
    copy.writeBigUInt64LE(copy.readBigUInt64LE(8) + 1n, 8);
    return copy;
  };
  const files = (bytes) => ({ "truncated.gguf": bytes.subarray(0, bytes.length - 1000), "promising.gguf": promising(bytes) });
  await withTinyFixture(files, async ({ page, faults, sha256 }) => {
    const wrongHash = "0".repeat(64);
    const load = (url, hash) => loadTiny(page, faults, url, { sha256: hash });
    const truncated = await load("/models/default/truncated.gguf");
    const promised = await load("/models/default/promising.gguf");
    const norange = await load("/norange-t1/whole.gguf");
    const wrong = await load("/models/default/whole.gguf", wrongHash);
    const verified = await load("/models/default/whole.gguf", sha256);
    const refusedAgain = await load("/models/default/whole.gguf", wrongHash);
    const reloaded = await load("/models/default/whole.gguf");
    const loads = { truncated, promised, norange, wrong, verified, refusedAgain, reloaded };
    for (const [name, { outcome }] of Object.entries(loads)) console.log(`${name}: ${outcome}`);
    assert.match(truncated.outcome, /^ModelError: .*truncated\.gguf: .*outside the file/);
    assert.match(promised.outcome, /^ModelError: .*promising\.gguf: /);
    assert.match(norange.outcome, /^NetworkError: .*HTTP 200 to a range request; a GGUF is loaded from a server that serves byte ranges/);
    const mismatch = new RegExp(`^CorruptShard: .*whole\\.gguf: the file's sha256 is ${sha256}, not the 0{64} expected`);
    assert.match(wrong.outcome, mismatch);
    for (const refused of [truncated, promised, norange, wrong]) assert.deepEqual(refused.kept, [], "nothing of a refused file is kept");
    assert.equal(verified.outcome, "loaded");
    assert.equal(verified.info.fromCache, false);
    assert.equal(verified.info.sha256, sha256);
    assert.equal(verified.info.sha256Verified, true);
    assert.equal(verified.kept.length, 1, "the verified file is kept");
    const url = `${faults.origin}/models/default/whole.gguf`;
    const keptBytes = verified.keptBytes[verified.kept[0]];
    assert.deepEqual(verified.models, [{ url, bytes: keptBytes, sha256, sha256Verified: true }], "keptModels() lists it");
    // Refused again, with a verified copy kept: that copy stays, and the next load reads it.
    assert.match(refusedAgain.outcome, mismatch);
    assert.deepEqual(refusedAgain.kept, verified.kept, "a refused download leaves the copy kept before it");
    assert.deepEqual(refusedAgain.models, verified.models);
    assert.equal(reloaded.outcome, "loaded");
    assert.equal(reloaded.info.fromCache, true, "the copy kept before the refusal loads");
    assert.equal(reloaded.info.sha256, sha256);
    assert.equal(reloaded.info.sha256Verified, true, "what the kept copy was verified against");
    assert.deepEqual(reloaded.kept, verified.kept);
    assert.deepEqual(reloaded.ranges, ["bytes=0-0"], "no weight request for the kept copy");
    const weights = faults.log.filter((entry) => entry.path.endsWith(".gguf") && /^bytes=0-$/.test(entry.range ?? ""));
    assert.deepEqual(
      weights.map((entry) => entry.path),
      ["/models/default/whole.gguf", "/models/default/whole.gguf", "/models/default/whole.gguf"],
      "weights fetched only for the whole file, and not for its kept copy",
    );
    // The page's menu of known judges (www/catalog.json): each with its download size, and
    // choosing one fills in its URL.
    await page.goto(`${faults.origin}/index.html`);
    const catalog = JSON.parse(await readFile(join(ROOT, "catalog.json"), "utf8")).models;
    await page.locator(`#catalog option[value="${catalog.at(-1).url}"]`).waitFor({ state: "attached" });
    const menu = await page.$$eval("#catalog option", (options) => options.map((o) => [o.value, o.textContent]));
    assert.deepEqual(menu.slice(1).map(([url]) => url), catalog.map((model) => model.url));
    menu.slice(1).forEach(([, text], i) => assert.ok(text.includes(`${(catalog[i].bytes / 1e9).toFixed(2)} GB download`), text));
    await page.selectOption("#catalog", catalog[0].url);
    assert.equal(await page.inputValue("#model-url"), catalog[0].url);
    // The page (in its worker) loads it too, and says what the file was verified against.
    await page.fill("#model-url", "/models/default/whole.gguf");
    await page.click("#load");
    const fileRow = page.locator("#model-info dt", { hasText: "File" }).locator("xpath=following-sibling::dd[1]");
    await fileRow.waitFor();
    assert.equal(await fileRow.textContent(), `verified sha256 ${sha256}`);
    // The page lists the kept model with its size, and its Delete button removes it.
    const listed = page.locator("#kept-models li");
    await listed.waitFor();
    assert.equal(await listed.count(), 1);
    assert.equal(await listed.textContent(), `${url}: ${(keptBytes / 1e6).toFixed(1)} MB, sha256 verified Delete`);
    await listed.getByRole("button", { name: "Delete" }).click();
    await page.locator("#kept").waitFor({ state: "hidden" });
    assert.deepEqual(await keptModels(page), [], "the page's Delete removed the kept model");
  });
});

// A GGUF's weights transfer broken by the test server's faults (tests/browser/server.mjs): cut off
// halfway (flaky) and gone silent halfway (stall, noticed after `stallMs`), each resumed with a
// Range request from the bytes received and loaded verified against the sha256 given; loaded with
// no hash to check, it is kept with the sha256 computed, said to be unverified; one byte flipped in
// it (corrupt) is refused by the sha256 given once streamed, and nothing of it is kept.
test("a GGUF transfer cut off or stalled resumes and loads verified; a corrupted one is refused with nothing kept", { timeout: 2 * 60_000 }, async () => {
  await withTinyFixture(() => ({}), async ({ page, faults, sha256 }) => {
    const options = { sha256, stallMs: 1500 };
    let kept;
    for (const mode of ["flaky", "stall"]) {
      const load = await loadTiny(page, faults, `/${mode}-t1/whole.gguf`, options);
      console.log(`${mode}: ${load.outcome}, ranges ${JSON.stringify(load.ranges)}`);
      assert.equal(load.outcome, "loaded", mode);
      assert.equal(load.info.fromCache, false);
      const weights = load.ranges.filter((range) => /^bytes=\d+-$/.test(range));
      assert.equal(weights[0], "bytes=0-", mode);
      assert.ok(weights.slice(1).some((range) => /^bytes=[1-9]\d*-$/.test(range)), `${mode}: resumed from the bytes received`);
      assert.ok(faults.log.some((entry) => entry.tag === "t1" && entry.mode === mode && entry.cut), `${mode}: the transfer was cut`);
      kept = load.kept;
    }
    assert.equal(kept.length, 2, "both resumed loads were kept");
    // With no hash to check against (the test server sends X-Linked-Etag only under
    // /models/default/), the one computed.
    const unverified = await loadTiny(page, faults, "/plain-t1/whole.gguf", {});
    assert.equal(unverified.outcome, "loaded");
    assert.deepEqual([unverified.info.sha256, unverified.info.sha256Verified], [sha256, false]);
    const listed = unverified.models.find((model) => model.url.endsWith("/plain-t1/whole.gguf"));
    assert.deepEqual([listed.sha256, listed.sha256Verified], [sha256, false]);
    kept = unverified.kept;
    const corrupt = await loadTiny(page, faults, "/corrupt-t1/whole.gguf", options);
    console.log(`corrupt: ${corrupt.outcome}`);
    assert.match(corrupt.outcome, new RegExp(`^CorruptShard: .*whole\\.gguf: the file's sha256 is [0-9a-f]{64}, not the ${sha256} expected`));
    assert.ok(faults.log.some((entry) => entry.mode === "corrupt" && entry.corrupted), "a byte was flipped");
    assert.deepEqual(corrupt.kept, kept, "nothing of the corrupted file is kept");
  });
});

// A GGUF's load cancelled by its signal: aborted while its transfer hangs silent halfway (the
// stall fault, with a stall timeout far longer than the wait), it rejects at once with AbortError
// saying how far it got, and nothing of it is kept; a signal aborted before the call fetches
// nothing; a model directory's load refuses the option. The same through judge-client.js's
// worker, and by the page's Cancel button.
test("a GGUF load is cancelled by its signal, with nothing kept", { timeout: 2 * 60_000 }, async () => {
  await withTinyFixture(() => ({}), async ({ page, faults, bytes, sha256 }) => {
    const mark = faults.log.length;
    const outcome = await page.evaluate(async ({ sha256 }) => {
      const wasm = await import("/pkg/webjudge.js");
      await wasm.default();
      const attempt = async (url, options) => {
        const started = performance.now();
        try {
          await wasm.Judge.load(url, { contextLength: 64, ...options });
          return { outcome: "loaded" };
        } catch (error) {
          return { outcome: `${error.name}: ${error.message}`, seconds: (performance.now() - started) / 1000 };
        }
      };
      // Aborted half a second after the download starts (its first onProgress), while the
      // server holds the connection silent for 20 s.
      const controller = new AbortController();
      let timer;
      const onProgress = () => (timer ??= setTimeout(() => controller.abort(), 500));
      const midway = await attempt("/stall-t3/whole.gguf", { sha256, stallMs: 60_000, signal: controller.signal, onProgress });
      const early = await attempt("/plain-t3/whole.gguf", { signal: AbortSignal.abort() });
      const directory = await attempt("/models/default/", { signal: new AbortController().signal });
      const root = await (await navigator.storage.getDirectory()).getDirectoryHandle("webjudge-gguf", { create: true });
      const kept = [];
      for await (const name of root.keys()) kept.push(name);
      return { midway, early, directory, kept };
    }, { sha256 });
    console.log(JSON.stringify(outcome, null, 1));
    assert.match(outcome.midway.outcome, new RegExp(`^AbortError: .*/stall-t3/whole\\.gguf: the load was cancelled \\(its signal was aborted\\) at byte \\d+ of ${bytes.length}; nothing of the download was kept$`));
    assert.ok(outcome.midway.seconds < 15, `cancelled after ${outcome.midway.seconds} s, not when the server gave up`);
    assert.match(outcome.early.outcome, /^AbortError: .*\/plain-t3\/whole\.gguf: the load was cancelled \(its signal was aborted\) before anything was fetched$/);
    assert.match(outcome.directory.outcome, /^InvalidInput: signal: only a GGUF file's load can be cancelled yet/);
    assert.deepEqual(outcome.kept, [], "nothing of a cancelled load is kept");
    const requests = faults.log.slice(mark).filter((entry) => entry.tag === "t3").map((entry) => `${entry.mode} ${entry.range}`);
    assert.deepEqual(requests, ["stall bytes=0-4194303", "stall bytes=0-"], "no request after the abort, none for the early one");

    // Through judge-client.js and its worker, and the page's Cancel button (which it uses).
    const client = await page.evaluate(async ({ sha256 }) => {
      const { Judge } = await import("/judge-client.js");
      const controller = new AbortController();
      let timer;
      const onProgress = () => (timer ??= setTimeout(() => controller.abort(), 500));
      try {
        await Judge.load("/stall-t4/whole.gguf", { sha256, stallMs: 60_000, signal: controller.signal, onProgress });
        return "loaded";
      } catch (error) {
        return `${error.name}: ${error.message}`;
      }
    }, { sha256 });
    assert.match(client, /^AbortError: .*\/stall-t4\/whole\.gguf: the load was cancelled \(its signal was aborted\) at byte \d+/);
    await page.fill("#model-url", "/stall-t5/whole.gguf");
    await page.click("#load");
    await page.waitForFunction(() => /\d/.test(document.getElementById("progress-text").textContent));
    await page.click("#load-cancel");
    await page.waitForFunction(() => !document.getElementById("error").hidden);
    assert.match(await page.textContent("#error"), /^AbortError: .*\/stall-t5\/whole\.gguf: the load was cancelled/);
    assert.equal(await page.textContent("#model-status"), "No model loaded.");
    assert.deepEqual(await keptModels(page), [], "nothing of the cancelled loads is kept");
  });
});

// A Hub `resolve` link whose file comes without X-Linked-Etag (as a page sees it behind the Hub's
// CDN redirect): verified by the sha256 the Hub API's folder listing gives as `lfs.oid`; a file
// that is not what the listing says is refused with nothing kept; a reload reads the kept copy
// while the listing still gives its hash, and fetches the file again once it gives another.
test("a Hub link is verified by the Hub API's lfs.oid, and refused when the file is not that", { timeout: 2 * 60_000 }, async () => {
  await withTinyFixture(() => ({}), async ({ page, faults, sha256 }) => {
    const listed = await loadTiny(page, faults, "/owner/judge-GGUF/resolve/main/whole.gguf", {});
    assert.equal(listed.outcome, "loaded");
    assert.deepEqual([listed.info.sha256, listed.info.sha256Verified], [sha256, true]);
    assert.ok(faults.log.some((entry) => entry.path === "/api/models/owner/judge-GGUF/tree/main/"), "the API was asked");
    const wrong = await loadTiny(page, faults, "/wrong/judge-GGUF/resolve/main/whole.gguf", {});
    assert.match(wrong.outcome, new RegExp(`^CorruptShard: .*whole\\.gguf: the file's sha256 is ${sha256}, not the 0{64} expected`));
    assert.deepEqual(wrong.kept, listed.kept, "nothing of the refused file is kept");
    // Loaded again: the kept copy, once the listing still gives its hash; once the listing gives
    // another (a new upload), the file is fetched again and checked against the new hash (the
    // bytes here did not change, so it is refused and the kept copy stays).
    const url = "/owner/judge-GGUF/resolve/main/whole.gguf";
    const again = await loadTiny(page, faults, url, {});
    assert.deepEqual([again.outcome, again.info.fromCache, again.ranges], ["loaded", true, ["bytes=0-0"]]);
    faults.changeHubFiles();
    const changed = await loadTiny(page, faults, url, {});
    assert.match(changed.outcome, new RegExp(`^CorruptShard: .*whole\\.gguf: the file's sha256 is ${sha256}, not the 0{64} expected`));
    assert.deepEqual(changed.kept, listed.kept, "the copy kept before stays");
  });
});

// llama.cpp's split files (tiny-00001-of-00002.gguf and -00002-of-00002.gguf, made from the tiny
// fixture as gguf-split makes them: splitGguf below), served as the Hub serves them (each with its
// own X-Linked-Etag): Judge.load of the first part's URL loads the model the whole file makes (its
// info, its first greedy ids), each part verified by its own hash; it is kept as one model under
// the first part's URL, and loading it again (by any part's URL) reads it from the OPFS with a
// one-byte probe per part. A transfer cut off in each part resumes within that part; the sha256
// option takes the parts' hashes in order (a wrong first one is refused before the second part's
// weights are fetched); a missing part is refused, naming its URL, with nothing kept.
test("split GGUF files load as the whole file, verified part by part and kept as one model; a missing part is refused", { timeout: 2 * 60_000 }, async () => {
  const split = (bytes) => {
    const [first, second] = splitGguf(bytes);
    return { "tiny-00001-of-00002.gguf": first, "tiny-00002-of-00002.gguf": second, "gone-00001-of-00002.gguf": first };
  };
  await withTinyFixture(split, async ({ page, faults, sha256, files }) => {
    const hashes = ["tiny-00001-of-00002.gguf", "tiny-00002-of-00002.gguf"].map((name) => createHash("sha256").update(files[name]).digest("hex"));
    const steps = 2;
    const whole = await loadTiny(page, faults, "/models/default/whole.gguf", {}, steps);
    const first = `${faults.origin}/models/default/tiny-00001-of-00002.gguf`;
    const loaded = await loadTiny(page, faults, "/models/default/tiny-00001-of-00002.gguf", {}, steps);
    const again = await loadTiny(page, faults, "/models/default/tiny-00002-of-00002.gguf", {}, steps);
    const oneHash = await loadTiny(page, faults, "/models/default/tiny-00001-of-00002.gguf", { sha256: hashes[0] });
    const resumed = await loadTiny(page, faults, "/flaky-t5/tiny-00001-of-00002.gguf", { sha256: hashes.join(",") }, steps);
    const wrongFirst = await loadTiny(page, faults, "/plain-t5/tiny-00001-of-00002.gguf", { sha256: `${"0".repeat(64)},${hashes[1]}` });
    const missing = await loadTiny(page, faults, "/models/default/gone-00001-of-00002.gguf", {});
    const loads = { whole, loaded, again, oneHash, resumed, wrongFirst, missing };
    for (const [name, { outcome, ranges, seconds }] of Object.entries(loads)) console.log(`${name} (${seconds} s): ${outcome}, ranges ${JSON.stringify(ranges)}`);
    assert.equal(whole.outcome, "loaded");
    assert.equal(loaded.outcome, "loaded");
    const modelOnly = ({ modelUrl, sha256, fromCache, downloadedBytes, ...rest }) => rest;
    assert.deepEqual(modelOnly(loaded.info), modelOnly(whole.info), "the split model is the whole file's");
    assert.deepEqual(loaded.ids, whole.ids, "the same greedy ids");
    assert.equal(loaded.ids.length, steps);
    assert.deepEqual([loaded.info.modelUrl, loaded.info.sha256, loaded.info.sha256Verified], [first, hashes.join(","), true]);
    assert.equal(loaded.info.downloadedBytes, files["tiny-00001-of-00002.gguf"].length + files["tiny-00002-of-00002.gguf"].length);
    assert.equal(loaded.kept.length, 2, "kept as one model, beside the whole file");
    assert.deepEqual(
      loaded.models.map(({ url, sha256, sha256Verified }) => ({ url, sha256, sha256Verified })),
      [
        { url: `${faults.origin}/models/default/tiny-00001-of-00002.gguf`, sha256: hashes.join(","), sha256Verified: true },
        { url: `${faults.origin}/models/default/whole.gguf`, sha256, sha256Verified: true },
      ],
    );
    // Each part's weights from its first byte; the second part's paths after the first's.
    const weightPaths = (load) => load.log.filter((entry) => entry.range === "bytes=0-").map((entry) => entry.path);
    assert.deepEqual(weightPaths(loaded), ["/models/default/tiny-00001-of-00002.gguf", "/models/default/tiny-00002-of-00002.gguf"]);
    // Loaded again by its second part's URL: the kept model, one byte of each part.
    assert.equal(again.outcome, "loaded");
    assert.equal(again.info.fromCache, true);
    assert.equal(again.info.modelUrl, first);
    assert.deepEqual(again.ids, whole.ids);
    assert.deepEqual(again.ranges, ["bytes=0-0", "bytes=0-0"], "a one-byte probe per part, no weights");
    assert.match(oneHash.outcome, new RegExp(`^InvalidInput: ${first} is a split model of 2 parts: sha256 takes their 2 hashes in order, separated by commas; 1 given`));
    // Cut off halfway in each part, resumed within it, verified by the hashes given.
    assert.equal(resumed.outcome, "loaded");
    assert.deepEqual(resumed.ids, whole.ids);
    assert.equal(resumed.info.sha256Verified, true);
    const cut = faults.log.filter((entry) => entry.tag === "t5" && entry.cut).map((entry) => entry.file);
    assert.deepEqual(cut, ["tiny-00001-of-00002.gguf", "tiny-00002-of-00002.gguf"], "each part's transfer was cut");
    const resumedFrom = (file) => resumed.log.filter((e) => e.file === file && /^bytes=[1-9]\d*-$/.test(e.range ?? "")).length;
    assert.deepEqual([resumedFrom("tiny-00001-of-00002.gguf"), resumedFrom("tiny-00002-of-00002.gguf")], [1, 1], "resumed within each part");
    assert.equal(resumed.kept.length, 3);
    // A wrong hash for the first part: refused naming it, the second part's weights never fetched.
    assert.match(wrongFirst.outcome, new RegExp(`^CorruptShard: .*/plain-t5/tiny-00001-of-00002\\.gguf: the file's sha256 is ${hashes[0]}, not the 0{64} expected`));
    assert.deepEqual(weightPaths(wrongFirst), ["/plain-t5/tiny-00001-of-00002.gguf"]);
    assert.deepEqual(wrongFirst.kept, resumed.kept, "nothing of the refused load kept");
    const gone = `${faults.origin}/models/default/gone-00002-of-00002.gguf`;
    assert.equal(
      missing.outcome,
      `NetworkError: ${faults.origin}/models/default/gone-00001-of-00002.gguf: split part 2 of 2: GET ${gone}: HTTP 404: no such file`,
    );
    assert.deepEqual(weightPaths(missing), [], "no weights fetched");
    assert.deepEqual(missing.kept, resumed.kept, "nothing of the missing part's model kept");
  });
});

// The tiny GGUF `bytes` as llama.cpp's gguf-split writes it in two parts: the first with the
// metadata and the first half of the tensors (in file order), the second with the rest, each
// saying which part it is (split.no, split.count) and the first how many tensors they hold
// (split.tensors.count); each tensor's data (with the padding after it) copied at its new offset.
function splitGguf(bytes) {
  let at = 0;
  const u32 = () => ((at += 4), bytes.readUInt32LE(at - 4));
  const u64 = () => ((at += 8), Number(bytes.readBigUInt64LE(at - 8)));
  const string = () => {
    const length = u64();
    return ((at += length), bytes.toString("utf8", at - length, at));
  };
  const SIZES = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const skipValue = (type) => {
    if (type === 8) return void string();
    if (type !== 9) return void (at += SIZES[type]);
    const [itemType, count] = [u32(), u64()];
    for (let i = 0; i < count; i++) skipValue(itemType);
  };
  assert.equal(bytes.toString("latin1", 0, 4), "GGUF");
  at = 4;
  const version = u32();
  const [tensorCount, kvCount] = [u64(), u64()];
  const kvStart = at;
  let alignment = 32;
  for (let i = 0; i < kvCount; i++) {
    const key = string();
    const type = u32();
    if (key === "general.alignment") alignment = type === 4 ? bytes.readUInt32LE(at) : Number(bytes.readBigUInt64LE(at));
    skipValue(type);
  }
  const kvs = bytes.subarray(kvStart, at);
  const tensors = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = string();
    const dims = Array.from({ length: u32() }, u64);
    tensors.push({ name, dims, type: u32(), offset: u64() });
  }
  const dataStart = Math.ceil(at / alignment) * alignment;
  tensors.sort((a, b) => a.offset - b.offset);
  tensors.forEach((t, i) => (t.data = bytes.subarray(dataStart + t.offset, dataStart + (tensors[i + 1]?.offset ?? bytes.length - dataStart))));
  const buffer = (size, write) => {
    const b = Buffer.alloc(size);
    write(b);
    return b;
  };
  const str = (s) => Buffer.concat([buffer(8, (b) => b.writeBigUInt64LE(BigInt(Buffer.byteLength(s)))), Buffer.from(s)]);
  const kv = (key, type, value) => Buffer.concat([str(key), buffer(4, (b) => b.writeUInt32LE(type)), value]);
  const u16kv = (key, value) => kv(key, 2, buffer(2, (b) => b.writeUInt16LE(value)));
  const part = (no, own, metadata) => {
    let offset = 0;
    const infos = own.map((t) => {
      const info = Buffer.concat([
        str(t.name),
        buffer(4 + 8 * t.dims.length + 12, (b) => {
          b.writeUInt32LE(t.dims.length);
          t.dims.forEach((d, i) => b.writeBigUInt64LE(BigInt(d), 4 + 8 * i));
          b.writeUInt32LE(t.type, 4 + 8 * t.dims.length);
          b.writeBigUInt64LE(BigInt(offset), 8 + 8 * t.dims.length);
        }),
      ]);
      offset += t.data.length;
      return info;
    });
    const split = [u16kv("split.no", no), u16kv("split.count", 2)];
    const counts = buffer(20, (b) => {
      b.writeUInt32LE(version);
      b.writeBigUInt64LE(BigInt(own.length), 4);
      b.writeBigUInt64LE(BigInt(metadata.count + split.length), 12);
    });
    const header = Buffer.concat([Buffer.from("GGUF"), counts, metadata.bytes, ...split, ...infos]);
    const padding = Buffer.alloc(Math.ceil(header.length / alignment) * alignment - header.length);
    return Buffer.concat([header, padding, ...own.map((t) => t.data)]);
  };
  const half = tensors.length >> 1;
  const promised = kv("split.tensors.count", 5, buffer(4, (b) => b.writeInt32LE(tensors.length)));
  const alignmentKv = alignment === 32 ? [] : [kv("general.alignment", 4, buffer(4, (b) => b.writeUInt32LE(alignment)))];
  return [
    part(0, tensors.slice(0, half), { bytes: Buffer.concat([kvs, promised]), count: Number(kvCount) + 1 }),
    part(1, tensors.slice(half), { bytes: Buffer.concat(alignmentKv), count: alignmentKv.length }),
  ];
}

// Judge.keptModels() in `page`.
function keptModels(page) {
  return page.evaluate(async () => {
    const wasm = await import("/pkg/webjudge.js");
    await wasm.default();
    return wasm.Judge.keptModels();
  });
}

// The tiny fixture (qwen2_tiny.gguf) as whole.gguf, beside the `files(bytes)` made from it (name →
// bytes), in a folder the suites' test server serves, and a page of that server:
// `use({ page, faults, bytes, sha256, files })` runs with them, and the server and folder go after.
async function withTinyFixture(files, use) {
  const dir = await mkdtemp(join(tmpdir(), "webjudge-gguf-"));
  const bytes = await readFile(join(REPO, "tests/fixtures/qwen2_tiny.gguf"));
  const made = files(bytes);
  for (const [name, content] of Object.entries({ "whole.gguf": bytes, ...made })) await writeFile(join(dir, name), content);
  const faults = await startServer({ root: ROOT, model: dir });
  try {
    const page = await browser.newPage();
    await page.goto(`${faults.origin}/index.html`);
    await use({ page, faults, bytes, sha256: createHash("sha256").update(bytes).digest("hex"), files: made });
  } finally {
    await faults.close();
    await rm(dir, { recursive: true, force: true });
  }
}

// One Judge.load of a tiny fixture in `page` with `options`, `steps` greedy steps generated, the
// judge unloaded again: its outcome ("loaded", or the error's name and message), its info() and
// ids when loaded, the OPFS's kept-model folders (and the bytes of each one's files) and
// Judge.keptModels() afterwards, and the GGUF requests the load made (the test server's log
// entries) and their ranges.
async function loadTiny(page, server, url, options, steps = 0) {
  const mark = server.log.length;
  const started = Date.now();
  const result = await page.evaluate(
    async ({ url, options, steps }) => {
      const wasm = await import("/pkg/webjudge.js");
      await wasm.default();
      let outcome = "loaded";
      let info = null;
      let ids = null;
      try {
        const judge = await wasm.Judge.load(url, { contextLength: 64, ...options });
        info = judge.info();
        if (steps > 0) ids = (await judge.generate("Hello", { maxNewTokens: steps })).ids;
        await judge.unload();
      } catch (error) {
        outcome = `${error.name}: ${error.message}`;
      }
      const root = await (await navigator.storage.getDirectory()).getDirectoryHandle("webjudge-gguf", { create: true });
      const kept = [];
      const keptBytes = {};
      for await (const [name, folder] of root.entries()) {
        kept.push(name);
        keptBytes[name] = 0;
        for await (const file of folder.values()) keptBytes[name] += (await file.getFile()).size;
      }
      return { outcome, info, ids, kept: kept.sort(), keptBytes, models: await wasm.Judge.keptModels() };
    },
    { url, options, steps },
  );
  const log = server.log.slice(mark).filter((entry) => entry.path.endsWith(".gguf"));
  return { ...result, log, ranges: log.map((entry) => entry.range), seconds: (Date.now() - started) / 1000 };
}
