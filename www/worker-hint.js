// What to check when the judge worker cannot start, for the repository's page (judge-client.js
// adds it to that error). The npm package ships package/worker-hint.js in its place: a bundler's
// causes instead of this repository's build.

export const WORKER_START_HINT = "Is www/pkg/, the wasm build, there? `make web` builds it.";
