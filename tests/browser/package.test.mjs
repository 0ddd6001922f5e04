// The npm package as another project uses it (issues 14 §5 and 28): `make package`'s tarball
// (tools/build_package.mjs) installed into an empty project folder, a page importing both entry
// points (`webjudge` and `webjudge/web-judge`) bundled there with esbuild (deployed as the
// package's README says), with Vite 7 and with Vite 8 (`vite build`, no config), each run in one
// headless Chromium (WebGPU on SwiftShader) with the test model; Vite's dev servers; the
// declarations checked by tsc; and the single-script build on a page of its own, generating a
// few tokens. Every page has the demo's strict CSP. Only the Vite 8 page judges (with
// <web-judge>): a judgement's prefill costs minutes on SwiftShader, where loading and a token
// cost seconds. Both Vite pages hold the worker client to the API's callback contract (a
// throwing onToken or onJudged cancels the call and rejects it with what it threw, a throwing
// onProgress is logged). The test model is no judge: a critique of a few tokens names no
// rating, which is fine here. Settings: WEBJUDGE_MODEL, CHROMIUM (as in e2e.test.mjs).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { CHROMIUM_OPTIONS } from "./chromium.mjs";
import { startServer } from "./server.mjs";
import { buildPackage } from "../../tools/build_package.mjs";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const MODEL = process.env.WEBJUDGE_MODEL ?? join(REPO, "target/models/smollm2-135m-instruct");
// SwiftShader decodes about a token every 2 s on two cores: a few are enough to see streaming.
const CRITIQUE_TOKENS = 4;
// One model load plus a single-response prompt's prefill on SwiftShader takes a minute or two.
const SLOW = 6 * 60_000;

const CSP =
  "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; " +
  "style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'";

// testdata_critique.jsonl line 84 of Auto-J's test set, as on the demo's docs page.
const ITEM = {
  query: "What weighs more, two pounds of feathers or one pound of bricks?",
  response: "One pound of bricks.",
};

const page = (script) => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${CSP}">
<link rel="icon" href="data:,">
<script type="module" src="${script}"></script>
</head>
<body>
<web-judge mode="single" model="/models/default/" max-new-tokens="${CRITIQUE_TOKENS}"
  query="${ITEM.query}" response="${ITEM.response}"></web-judge>
</body>
</html>
`;

// The bundled page's own script: both entry points, the Judge class exposed for the test.
const PAGE_SCRIPT = `import { Judge } from "webjudge";
import "webjudge/web-judge";
window.Judge = Judge;
`;

// A TypeScript user of the whole API, checked against the installed declarations.
const TYPED_USE = `import { Judge, builtInRubrics, defaults, pairwiseMetrics, parseRows, protocols } from "webjudge";
import type { BatchRecord, GenerateResult, KeptModel, PairwiseResult, ScoreResult } from "webjudge";
import "webjudge/web-judge";
import init, { Judge as WasmJudge } from "webjudge/wasm";

const judge = await Judge.load("/models/default/", { onProgress: (loaded, total) => console.log(loaded / total) });
const pair: PairwiseResult = await judge.pairwise({ query: "q", response1: "a", response2: "b" }, { onToken: (text, order) => console.log(text, order) });
const score: ScoreResult = await judge.rubric({ instruction: "q", response: "a", rubric: "helpfulness" });
const generated: GenerateResult = await judge.generate("Hello", { maxNewTokens: 2, signal: new AbortController().signal });
const records: BatchRecord[] = [];
await judge.judgeBatch(await parseRows(""), { onJudged: (position, record) => (records[position] = record) });
console.log(pair.winner, score.score, generated.ids, await pairwiseMetrics(records), (await defaults()).maxNewTokens);
console.log((await protocols())[0]?.method, (await builtInRubrics("prometheus"))[0]?.name, (await judge.info()).judge);
const kept: KeptModel[] = await Judge.keptModels();
console.log(kept[0]?.url, kept[0]?.bytes, (await judge.info()).sha256Verified);
const element = document.querySelector("web-judge");
element?.addEventListener("judged", (event) => console.log(event.detail.protocol));
await element?.load();
await init();
const wasm = await WasmJudge.load("/models/default/");
console.log(wasm.info().modelUrl, (await WasmJudge.keptModels())[0]?.sha256);
wasm.free();
`;

// The compiler options the declarations must check under, each with skipLibCheck off and
// strict on: TypeScript's defaults (no target, no lib: [Symbol.dispose]() needs the package's
// own declaration there) but for a bundler's module resolution, and those of create-vite's
// vanilla-ts template (create-vite 9.3.0; its `types: ["vite/client"]` left out, as Vite is no
// dependency of this project).
const TSCONFIGS = {
  defaults: { module: "esnext", moduleResolution: "bundler" },
  "create-vite": {
    target: "es2023", module: "esnext", lib: ["ES2023", "DOM"], allowArbitraryExtensions: true,
    moduleResolution: "bundler", allowImportingTsExtensions: true, verbatimModuleSyntax: true,
    moduleDetection: "force", noUnusedLocals: true, noUnusedParameters: true, erasableSyntaxOnly: true,
    noFallthroughCasesInSwitch: true,
  },
};

let folder;
let packed;
let server;
let context;
const pageErrors = [];

before(async () => {
  packed = await buildPackage();
  folder = await mkdtemp(join(tmpdir(), "webjudge-package-"));
  // A project as `npm create vite` makes one (an ES module package); no registry needed: the
  // package has no dependencies.
  await writeFile(join(folder, "package.json"), JSON.stringify({ name: "site", private: true, type: "module" }));
  execFileSync("npm", ["install", "--offline", "--no-audit", "--no-fund", packed.tarball], { cwd: folder });
  await writeFile(join(folder, "main.js"), PAGE_SCRIPT);
  // Vite's entry: the page at the project's root, its script by absolute path.
  await writeFile(join(folder, "index.html"), page("/main.js"));

  // esbuild: the worker and the wasm build go beside the bundle.
  const bundled = join(folder, "site/bundled");
  await build({ absWorkingDir: folder, entryPoints: ["main.js"], outdir: bundled, bundle: true, format: "esm", logLevel: "warning" });
  const installed = join(folder, "node_modules/webjudge");
  await cp(join(installed, "worker.js"), join(bundled, "worker.js"));
  await cp(join(installed, "pkg"), join(bundled, "pkg"), { recursive: true });
  await writeFile(join(bundled, "index.html"), page("main.js"));

  // The single-script build with only the wasm beside it.
  const standalone = join(folder, "site/standalone");
  await mkdir(standalone);
  for (const file of ["webjudge-standalone.js", "webjudge_bg.wasm"]) await cp(join(installed, "pkg", file), join(standalone, file));
  await writeFile(join(standalone, "index.html"), page("webjudge-standalone.js"));

  server = await startServer({ root: join(folder, "site"), model: MODEL });
  context = await chromium.launchPersistentContext(join(folder, "profile"), CHROMIUM_OPTIONS);
  context.on("weberror", (error) => pageErrors.push(error.error().message));
});

after(async () => {
  await context?.close();
  await server?.close();
  if (folder) await rm(folder, { recursive: true, force: true });
});

async function open(path) {
  const tab = await context.newPage();
  tab.setDefaultTimeout(SLOW);
  tab.on("console", (message) => {
    if (message.type() === "error") pageErrors.push(message.text());
  });
  await tab.goto(`${server.origin}${path}`);
  return tab;
}

// Removes the page errors that start with `prefix` (the ones a test caused on purpose) and
// returns how many there were.
function expectedErrors(prefix) {
  const others = pageErrors.filter((error) => !error.startsWith(prefix));
  const count = pageErrors.length - others.length;
  pageErrors.splice(0, pageErrors.length, ...others);
  return count;
}

// `vite build` of the project with Vite `major` (7 or 8), as the package README says: no
// config, the page served from /vite<major>/ of the test server.
async function viteBuild(major) {
  const { build: viteBuild } = await import(`vite${major}`);
  await viteBuild({
    root: folder,
    base: `/vite${major}/`,
    configFile: false,
    logLevel: "warn",
    build: { outDir: join(folder, `site/vite${major}`) },
  });
}

// Clicks the element's Judge button; resolves with the `judged` event's result. A second
// listener of `judged` throws: the DOM reports that as the page's error and the element goes on.
function judgeWithElement(tab) {
  return tab.evaluate(() => {
    const element = document.querySelector("web-judge");
    return new Promise((done, fail) => {
      element.addEventListener("judged", (event) => done(event.detail), { once: true });
      element.addEventListener("judged", () => {
        throw new Error("a judged listener threw");
      }, { once: true });
      element.addEventListener("judge-error", (event) => fail(new Error(`${event.detail.name}: ${event.detail.message}`)), { once: true });
      element.shadowRoot.querySelector("button").click();
    });
  });
}

// The worker client keeps the API's callback contract (docs/web-api.md) on a loaded page:
// a throwing onToken stops generating (the cancel reaches the worker: the call settles in a
// token or two, not the 200 asked for, which take minutes on SwiftShader) and rejects with the
// very error thrown; a throwing onJudged rejects judgeBatch the same way; a throwing onProgress
// is logged and loading goes on (the first load only: later loads of the model join it).
// Returns what happened in the page. (That the model serves the next call is <web-judge>'s
// judgement after it on the Vite 8 page.)
function callbackContract(tab) {
  return tab.evaluate(async () => {
    const judge = await window.Judge.load("/models/default/", {
      onProgress: () => {
        throw new Error("onProgress threw");
      },
    });
    const outcome = {};
    const thrown = new Error("onToken threw");
    let tokens = 0;
    let threwAt = 0;
    try {
      await judge.generate("Hello", {
        maxNewTokens: 200,
        onToken: () => {
          tokens += 1;
          threwAt = performance.now();
          throw thrown;
        },
      });
      outcome.generate = "resolved";
    } catch (error) {
      outcome.generate = error === thrown ? "rejected with the thrown error" : `rejected with ${error}`;
      outcome.secondsToSettle = (performance.now() - threwAt) / 1000;
    }
    outcome.tokens = tokens;
    // Items too long for the test model's context (8192) are reported at once, with no prefill.
    const long = { query: "word ".repeat(9000), response: "One pound of bricks." };
    const judged = new Error("onJudged threw");
    let calls = 0;
    try {
      await judge.judgeBatch([long, long], {
        onJudged: () => {
          calls += 1;
          throw judged;
        },
      });
      outcome.judgeBatch = "resolved";
    } catch (error) {
      outcome.judgeBatch = error === judged ? "rejected with the thrown error" : `rejected with ${error}`;
    }
    outcome.judgedCalls = calls;
    return outcome;
  });
}

// What callbackContract should report; `secondsToSettle` is checked on its own and reported.
function assertContractKept(t, { secondsToSettle, ...outcome }) {
  assert.deepEqual(outcome, {
    generate: "rejected with the thrown error",
    tokens: 1,
    judgeBatch: "rejected with the thrown error",
    judgedCalls: 1,
  });
  assert.ok(secondsToSettle < 60, `the throwing onToken's call settled ${secondsToSettle} s after the throw`);
  t.diagnostic(`the throwing onToken's call settled ${secondsToSettle.toFixed(1)} s after the throw`);
  assert.ok(expectedErrors("webjudge: onProgress threw") >= 1, "a throwing onProgress was not logged");
}

// Every relative link of a packaged markdown file names a file in the package.
function assertLinksInside(markdown, file) {
  for (const [, target] of markdown.matchAll(/\]\(([^)#]+)(#[^)]*)?\)/g)) {
    if (/^[a-z]+:/.test(target)) continue;
    assert.ok(packed.files.includes(target), `${file} links ${target}, which is not in the package`);
  }
}

test("the tarball holds both entry points, the worker, the wasm, their declarations and the API reference", async () => {
  for (const file of ["package.json", "README.md", "API.md", "judge-client.js", "judge-client.d.ts", "web-judge.js",
    "web-judge.d.ts", "worker.js", "worker-hint.js", "pkg/webjudge.js", "pkg/webjudge.d.ts", "pkg/webjudge_bg.wasm",
    "pkg/webjudge-standalone.js"]) {
    assert.ok(packed.files.includes(file), `${file} is not in the tarball (${packed.files.join(", ")})`);
  }
  const installed = join(folder, "node_modules/webjudge");
  for (const file of ["README.md", "API.md"]) assertLinksInside(await readFile(join(installed, file), "utf8"), file);
  // A worker that cannot start names a bundler's causes, not this repository's build.
  assert.match(await readFile(join(installed, "worker-hint.js"), "utf8"), /optimizeDeps/);
});

test("the declarations check with tsc under TypeScript's defaults and create-vite's, skipLibCheck off", async () => {
  await writeFile(join(folder, "use.ts"), TYPED_USE);
  const tsc = join(dirname(fileURLToPath(import.meta.url)), "node_modules/.bin/tsc");
  for (const [name, options] of Object.entries(TSCONFIGS)) {
    const config = join(folder, `tsconfig.${name}.json`);
    const compilerOptions = { ...options, strict: true, skipLibCheck: false, noEmit: true };
    await writeFile(config, JSON.stringify({ compilerOptions, files: ["use.ts"] }));
    try {
      execFileSync(tsc, ["-p", config], { encoding: "utf8" });
    } catch (error) {
      assert.fail(`tsc under ${name}: ${error.stdout}${error.stderr}`);
    }
  }
});

test("a page bundled with esbuild from the installed package loads the model in Chromium", { timeout: SLOW }, async () => {
  const mark = server.log.length;
  const tab = await open("/bundled/index.html");
  // The element loads the model; the main entry's Judge joins it: one worker, one manifest
  // download.
  await tab.evaluate(async () => void (await document.querySelector("web-judge").load()));
  const info = await tab.evaluate(async () => (await window.Judge.load("/models/default/")).info());
  assert.equal(info.modelUrl, `${server.origin}/models/default/`);
  const fetched = (path) => server.requests(mark, (p) => p === path).length;
  assert.equal(fetched("/models/default/manifest.json"), 1);
  // The worker and the wasm were found beside the bundle, where the README puts them.
  assert.equal(fetched("/bundled/worker.js"), 1);
  assert.equal(fetched("/bundled/pkg/webjudge_bg.wasm"), 1);
  assert.deepEqual(pageErrors, []);
  await tab.close();
});

test("a page built with Vite 7 keeps the API's callback contract in Chromium", { timeout: SLOW }, async (t) => {
  await viteBuild(7);
  const tab = await open("/vite7/index.html");
  assertContractKept(t, await callbackContract(tab));
  assert.deepEqual(pageErrors, []);
  await tab.close();
});

test("a page built with Vite 8 judges with <web-judge> and keeps the callback contract", { timeout: SLOW }, async (t) => {
  await viteBuild(8);
  const mark = server.log.length;
  const tab = await open("/vite8/index.html");
  assertContractKept(t, await callbackContract(tab));
  const result = await judgeWithElement(tab);
  assert.ok("rating" in result);
  assert.ok(result.generated_tokens >= 1 && result.generated_tokens <= CRITIQUE_TOKENS);
  assert.equal(await tab.locator("web-judge >> .critique").textContent(), result.critique);
  assert.equal(expectedErrors("a judged listener threw"), 1);
  assert.equal(await tab.locator("web-judge >> button").first().isDisabled(), false);
  // Vite bundled the worker and emitted the wasm as assets of its own.
  const assets = server.requests(mark, (p) => p.startsWith("/vite8/assets/")).map((entry) => entry.path);
  assert.ok(assets.some((path) => /\/worker-[\w-]+\.js$/.test(path)), assets.join(", "));
  assert.ok(assets.some((path) => /\/webjudge_bg-[\w-]+\.wasm$/.test(path)), assets.join(", "));
  assert.deepEqual(pageErrors, []);
  await tab.close();
});

// Vite's dev servers as the package README says: Vite 8's starts the worker as it is, Vite 7's
// once the package is left out of dependency pre-bundling; without that, Vite 7's answers 404
// for the worker and the call rejects with the error that names the cause. No model needed: a
// call that needs none starts a worker of its own.
test("Vite's dev servers start the worker as the package README says", async () => {
  const outcomes = {};
  for (const [name, major, optimizeDeps] of [
    ["Vite 7", 7, {}],
    ["Vite 7, webjudge excluded", 7, { exclude: ["webjudge"] }],
    ["Vite 8", 8, {}],
  ]) {
    const { createServer } = await import(`vite${major}`);
    await rm(join(folder, "node_modules/.vite"), { recursive: true, force: true });
    const dev = await createServer({ root: folder, configFile: false, logLevel: "silent", optimizeDeps, server: { host: "127.0.0.1" } });
    await dev.listen();
    const tab = await context.newPage();
    await tab.goto(dev.resolvedUrls.local[0]);
    outcomes[name] = await tab.evaluate(() =>
      window.Judge.clearCache().then(() => "started", (error) => `${error.name}: ${error.message}`),
    );
    await tab.close();
    await dev.close();
  }
  const { "Vite 7": failed, ...started } = outcomes;
  assert.deepEqual(started, { "Vite 7, webjudge excluded": "started", "Vite 8": "started" });
  assert.match(failed, /^ModelError: the judge worker failed: it could not start\. .*optimizeDeps: \{ exclude: \["webjudge"\] \}/);
  assert.deepEqual(pageErrors, []);
});

test("the single-script build runs from one module file with the wasm beside it", { timeout: SLOW }, async () => {
  const mark = server.log.length;
  const tab = await open("/standalone/index.html");
  // The element is the bundled test's; here a short generation is enough to show that the
  // script started itself as the worker and found the wasm.
  const outcome = await tab.evaluate(async () => {
    const { Judge } = await import("./webjudge-standalone.js");
    const judge = await Judge.load("/models/default/");
    const generated = await judge.generate("Hello", { maxNewTokens: 2 });
    return { element: customElements.get("web-judge") !== undefined, generatedTokens: generated.ids.length };
  });
  assert.deepEqual(outcome, { element: true, generatedTokens: 2 });
  // The page and its worker load the same script; nothing else of the package is asked for.
  const site = server.requests(mark, (p) => p.startsWith("/standalone/")).map((entry) => entry.path);
  assert.deepEqual(site.sort(), [
    "/standalone/index.html",
    "/standalone/webjudge-standalone.js",
    "/standalone/webjudge-standalone.js",
    "/standalone/webjudge_bg.wasm",
  ]);
  assert.deepEqual(pageErrors, []);
  await tab.close();
});
