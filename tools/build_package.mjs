#!/usr/bin/env node
// Builds the npm package `webjudge` (`make package`; nothing is published): stages www/'s
// client, worker, <web-judge> and the wasm build (www/pkg/, `make web`) with package/'s
// manifest, README and worker-hint.js, and docs/web-api.md as API.md, in
// target/package/webjudge/, bundles the single-script build
// (pkg/webjudge-standalone.js, entry package/standalone.js) with esbuild, and packs
// target/package/webjudge-<version>.tgz with `npm pack`. The version is Cargo.toml's.
// esbuild comes from tests/browser/ (its package-lock pins it): `npm ci` there installs it.
// Prints the tarball's path last.

import { execFileSync } from "node:child_process";
import { cp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const OUT = join(REPO, "target/package");
const STAGE = join(OUT, "webjudge");

// Copied from www/ as they are, so the package's modules find each other exactly as the page's do.
const WWW_FILES = [
  "judge-client.js",
  "judge-client.d.ts",
  "start-worker.js",
  "worker.js",
  "web-judge.js",
  "web-judge.d.ts",
  "dom.js",
  "messages.js",
  "pkg/webjudge.js",
  "pkg/webjudge.d.ts",
  "pkg/webjudge_bg.wasm",
  "pkg/webjudge_bg.wasm.d.ts",
];

// The package's own worker-hint.js (a bundler's causes of a worker that does not start) takes
// the place of www/'s (this repository's build) in the staged package and the single-script build.
const WORKER_HINT = join(REPO, "package/worker-hint.js");

async function cargoVersion() {
  const manifest = await readFile(join(REPO, "Cargo.toml"), "utf8");
  return /^\[package\][^[]*?^version = "([^"]+)"/m.exec(manifest)[1];
}

// The single-script build: standalone.js with everything it imports, the wasm glue included, in
// one ES module. start-worker.js becomes start-self.js there, so the bundle starts itself as the
// worker.
async function bundleStandalone(outfile) {
  const require = createRequire(join(REPO, "tests/browser/package.json"));
  const esbuild = require("esbuild");
  const startSelf = join(REPO, "package/start-self.js");
  await esbuild.build({
    entryPoints: [join(REPO, "package/standalone.js")],
    outfile,
    bundle: true,
    format: "esm",
    target: "es2022",
    minify: true,
    legalComments: "none",
    logLevel: "warning",
    plugins: [
      {
        name: "package-modules",
        setup(build) {
          build.onResolve({ filter: /\/start-worker\.js$/ }, () => ({ path: startSelf }));
          build.onResolve({ filter: /\/worker-hint\.js$/ }, () => ({ path: WORKER_HINT }));
        },
      },
    ],
  });
}

// docs/web-api.md as the package's API.md: its link to the package README made relative to the
// package, links to the repository's other pages left as their text (the note says where).
function apiReference(markdown) {
  const note =
    "> The webjudge repository's docs/web-api.md, as packaged. The other pages it names (cli.md, " +
    "judges.md) are in that repository's docs/.\n\n";
  const body = markdown.replace(/\[([^\]]+)\]\(([^)#][^)]*)\)/g, (link, text, target) => {
    if (/^[a-z]+:/.test(target)) return link;
    return target === "../package/README.md" ? `[${text}](README.md)` : text;
  });
  const [title, ...rest] = body.split("\n");
  return [title, "", note.trimEnd(), ...rest].join("\n");
}

export async function buildPackage() {
  await rm(OUT, { recursive: true, force: true });
  await mkdir(join(STAGE, "pkg"), { recursive: true });
  for (const file of WWW_FILES) {
    await cp(join(REPO, "www", file), join(STAGE, file)).catch((error) => {
      if (error.code !== "ENOENT") throw error;
      throw new Error(`www/${file} is missing: build www/pkg/ first (make web)`);
    });
  }
  await cp(join(REPO, "package/README.md"), join(STAGE, "README.md"));
  await cp(WORKER_HINT, join(STAGE, "worker-hint.js"));
  await writeFile(join(STAGE, "API.md"), apiReference(await readFile(join(REPO, "docs/web-api.md"), "utf8")));
  const manifest = JSON.parse(await readFile(join(REPO, "package/package.json"), "utf8"));
  const packageJson = { name: manifest.name, version: await cargoVersion(), ...manifest };
  await writeFile(join(STAGE, "package.json"), `${JSON.stringify(packageJson, null, 2)}\n`);
  await bundleStandalone(join(STAGE, "pkg/webjudge-standalone.js"));
  const [packed] = JSON.parse(
    execFileSync("npm", ["pack", "--json", "--pack-destination", OUT], { cwd: STAGE, encoding: "utf8" }),
  );
  return { tarball: join(OUT, packed.filename), size: packed.size, files: packed.files.map((file) => file.path) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { tarball, size, files } = await buildPackage();
  console.error(`${files.length} files: ${files.join(", ")}`);
  console.error(`${(size / 1e6).toFixed(2)} MB packed`);
  console.log(tarball);
}
