// How the page's tests and the browser benchmark (tools/bench_browser.sh) start Chromium:
// headless, WebGPU on SwiftShader (without --enable-unsafe-webgpu requestAdapter() is null).

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

// For playwright-core's chromium.launchPersistentContext(userDataDir, CHROMIUM_OPTIONS).
export const CHROMIUM_OPTIONS = {
  executablePath: CHROMIUM,
  headless: false, // --headless=new below; Playwright's own flag would pick the old mode
  args: [
    "--headless=new",
    "--no-sandbox",
    "--enable-unsafe-webgpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // No host but the test server resolves: a request off the origin could not succeed
    // even if the page tried one.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
  ],
};
