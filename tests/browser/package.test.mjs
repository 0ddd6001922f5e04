// The npm package as another project uses it (issue 14 §5): `make package`'s tarball
// (tools/build_package.mjs) installed into an empty folder, a page importing both entry points
// (`webjudge` and `webjudge/web-judge`) bundled there with esbuild and deployed as the package's
// README says, then judged in headless Chromium (WebGPU on SwiftShader) with the test model;
// and the single-script build on a page of its own, generating a few tokens. Both pages have
// the demo's strict CSP. The test model is no judge: a critique of a few tokens names no
// rating, which is fine here. Settings: WEBJUDGE_MODEL, CHROMIUM (as in e2e.test.mjs).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
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

let folder;
let packed;
let server;
let context;
const pageErrors = [];

before(async () => {
  packed = await buildPackage();
  folder = await mkdtemp(join(tmpdir(), "webjudge-package-"));
  // No registry needed: the package has no dependencies.
  execFileSync("npm", ["install", "--offline", "--no-audit", "--no-fund", packed.tarball], { cwd: folder });

  // A project bundling both entry points; the worker and the wasm build go beside the bundle.
  const bundled = join(folder, "site/bundled");
  await writeFile(join(folder, "main.js"), PAGE_SCRIPT);
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

// Clicks the element's Judge button; resolves with the `judged` event's result.
function judgeWithElement(tab) {
  return tab.evaluate(() => {
    const element = document.querySelector("web-judge");
    return new Promise((done, fail) => {
      element.addEventListener("judged", (event) => done(event.detail), { once: true });
      element.addEventListener("judge-error", (event) => fail(new Error(`${event.detail.name}: ${event.detail.message}`)), { once: true });
      element.shadowRoot.querySelector("button").click();
    });
  });
}

test("the tarball holds both entry points, the worker, the wasm and their declarations", () => {
  for (const file of ["package.json", "README.md", "judge-client.js", "judge-client.d.ts", "web-judge.js",
    "web-judge.d.ts", "worker.js", "pkg/webjudge.js", "pkg/webjudge.d.ts", "pkg/webjudge_bg.wasm",
    "pkg/webjudge-standalone.js"]) {
    assert.ok(packed.files.includes(file), `${file} is not in the tarball (${packed.files.join(", ")})`);
  }
});

test("a page bundled with esbuild from the installed package judges in Chromium", { timeout: SLOW }, async () => {
  const mark = server.log.length;
  const tab = await open("/bundled/index.html");
  const result = await judgeWithElement(tab);
  assert.ok("rating" in result);
  assert.ok(result.generated_tokens >= 1 && result.generated_tokens <= CRITIQUE_TOKENS);
  assert.equal(await tab.locator("web-judge >> .critique").textContent(), result.critique);
  // The main entry's Judge joins the element's model: one worker, one manifest download.
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
