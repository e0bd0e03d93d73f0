// Plays one stream of a running shardcast in headless Chromium through the
// `/` page, and reports what the <video> did as one JSON object on stdout.
// It is the one runner of every player test: hls.js (`hls`, TS or fMP4),
// shaka-player (`shaka`) and mpegts.js (`flv`).
//
//   node tests/browser/play.mjs <page url> <hls|shaka|flv> <stream path> [screenshot.png]
//
// e.g. `node tests/browser/play.mjs http://127.0.0.1:8079/ hls /live/test.m3u8`,
// or `... shaka /live/test.m3u8`, or `... hls '/live/test.m3u8?container=fmp4'`.
//
// The page lists the stream (from /api/streams, refreshed every 2 s); this
// script waits for its play button, clicks it (the page then calls
// `window.shardcast.play(<player>, url)`; a stream path with a query, which
// no button carries, is passed to that call directly), waits for the first
// frame, then samples `window.shardcast.stats()` for SAMPLE_S seconds. It
// checks that both preloaded player libraries loaded, that currentTime
// advanced by at least ADVANCE_MIN_S, that the player raised no error event
// and that the video has the expected width. Exit status: 0 on
// success, 1 when a check fails, 2 when the environment is missing something
// (Chromium, node_modules). Diagnostics go to stderr; stdout carries only the
// JSON, so the Rust test (tests/browser.rs) can parse it.
//
// Chromium is Debian's `chromium` package (no browser download: we depend on
// playwright-core, not playwright). Override its path with CHROMIUM=/path.

import fs from 'node:fs';
import path from 'node:path';

import { startRun } from './run.mjs';

const USAGE = 'usage: node tests/browser/play.mjs <page url> <hls|shaka|flv> <stream path> [screenshot.png]';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const INSTALL_HINT =
  'run scripts/test.sh (it installs them), or by hand: `apt-get install chromium` and `npm ci` in the shardcast directory';

/** Seconds of sampling once the first frame is shown. */
const SAMPLE_S = Number(process.env.SAMPLE_S || 8);
/** How far currentTime must advance over the sampling. */
const ADVANCE_MIN_S = Number(process.env.ADVANCE_MIN_S || 3);
/** Expected video width (the tests publish 1280x720). */
const WIDTH = Number(process.env.EXPECT_WIDTH || 1280);
/** Deadlines, in ms. The whole run stays well under the Rust test's. */
const LIST_TIMEOUT_MS = 15_000;
const FIRST_FRAME_TIMEOUT_MS = 20_000;
const WATCHDOG_MS = 67_000 + SAMPLE_S * 1000;
const SAMPLE_EVERY_MS = 250;

const [pageUrl, proto, streamPath, screenshot] = process.argv.slice(2);
if (!pageUrl || !['hls', 'shaka', 'flv'].includes(proto) || !streamPath) {
  console.error(USAGE);
  process.exit(2);
}

function envFail(msg) {
  console.error(`play.mjs: ${msg}`);
  console.log(JSON.stringify({ ok: false, proto, failures: [msg] }));
  process.exit(2);
}

if (!fs.existsSync(CHROMIUM)) {
  envFail(`Chromium is not installed at ${CHROMIUM}: ${INSTALL_HINT}`);
}
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  envFail(`playwright-core is not installed (${e.message}): ${INSTALL_HINT}`);
}

const median = (xs) => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const round3 = (x) => (x === null || x === undefined ? null : Math.round(x * 1000) / 1000);

const result = { ok: false, proto, page: pageUrl, stream: streamPath };
const run = startRun(result, WATCHDOG_MS);
const { failures, consoleLines, userDataDir, finish } = run;

try {
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 1100 },
    // An https:// page is served with the test's own CA, which this fresh
    // profile does not know: the certificate check is waived, TLS and the
    // browser's mixed-content rules are not.
    ignoreHTTPSErrors: pageUrl.startsWith('https:'),
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  run.context = context;
  result.browser = context.browser()?.version() ?? null;
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => {
    const line = `[${m.type()}] ${m.text()}`;
    consoleLines.push(line);
    if (m.type() === 'error' || m.type() === 'warning') console.error(`page console ${line}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) {
      consoleLines.push(`[http] ${r.status()} ${r.url()}`);
      console.error(`page request: ${r.status()} ${r.url()}`);
    }
  });
  page.on('requestfailed', (r) => {
    consoleLines.push(`[http] failed ${r.url()}: ${r.failure()?.errorText}`);
  });
  page.on('pageerror', (e) => {
    consoleLines.push(`[pageerror] ${e.message}`);
    console.error(`page error: ${e.message}`);
  });

  const t0 = Date.now();
  const resp = await page.goto(pageUrl, { waitUntil: 'load', timeout: LIST_TIMEOUT_MS });
  if (!resp || !resp.ok()) {
    failures.push(`GET ${pageUrl} answered ${resp ? resp.status() : 'nothing'}`);
    await finish(1);
  }
  await page.waitForFunction(() => window.shardcast && typeof window.shardcast.stats === 'function', null, {
    timeout: 5_000,
  });

  const libs = await page.evaluate(() => window.shardcast.stats().libsLoaded);
  result.libsLoaded = libs;
  if (!libs.hls || !libs.mpegts) {
    const banner = await page.locator('#libs-missing').innerText().catch(() => '');
    failures.push(
      `player libraries did not load (${JSON.stringify(libs)}); the page says: ${banner.trim()}; ${INSTALL_HINT}`,
    );
    await finish(2);
  }

  // The page lists the stream within a refresh or two; click its button.
  const listedPath = streamPath.split('?')[0];
  const button = page.locator(`button[data-play="${proto}"][data-url="${listedPath}"]`);
  try {
    await button.waitFor({ state: 'visible', timeout: LIST_TIMEOUT_MS });
  } catch {
    const listed = await page.locator('#streams tbody').innerText().catch(() => '');
    failures.push(`the page did not list ${streamPath} within ${LIST_TIMEOUT_MS} ms (listed: ${JSON.stringify(listed)})`);
    await finish(1);
  }
  result.listed_ms = Date.now() - t0;
  const tClick = Date.now();
  if (listedPath === streamPath) {
    await button.click();
  } else {
    await page.evaluate(([kind, url]) => window.shardcast.play(kind, url), [proto, streamPath]);
  }

  // First frame: currentTime moving and a decoded size.
  try {
    await page.waitForFunction(
      () => {
        const s = window.shardcast.stats();
        return s.currentTime > 0 && s.videoWidth > 0;
      },
      null,
      { timeout: FIRST_FRAME_TIMEOUT_MS, polling: 50 },
    );
  } catch {
    const s = await page.evaluate(() => window.shardcast.stats());
    const status = await page.locator('#status').innerText().catch(() => '');
    failures.push(
      `no video within ${FIRST_FRAME_TIMEOUT_MS} ms of clicking play (status: ${status}; stats: ${JSON.stringify(s)})`,
    );
    await finish(1);
  }
  result.first_frame_ms = Date.now() - tClick;

  const samples = [];
  const sampleStart = Date.now();
  while (Date.now() - sampleStart < SAMPLE_S * 1000) {
    const s = await page.evaluate(() => window.shardcast.stats());
    samples.push({ t: (Date.now() - sampleStart) / 1000, ...s });
    await new Promise((r) => setTimeout(r, SAMPLE_EVERY_MS));
  }
  const first = samples[0];
  const last = samples[samples.length - 1];
  const positive = (xs) => xs.filter((x) => typeof x === 'number' && x > 0);
  const latencies = positive(samples.map((s) => s.hlsLatency));
  const wall = positive(samples.map((s) => s.wallLatency));
  const summary = (xs) => ({
    median: round3(median(xs)),
    last: round3(xs.length ? xs[xs.length - 1] : null),
    min: round3(xs.length ? Math.min(...xs) : null),
    max: round3(xs.length ? Math.max(...xs) : null),
    n: xs.length,
  });
  const ahead = samples.map((s) => s.bufferedAhead);
  // The longest stretch of sampling over which currentTime stood still.
  let stalledMax = 0;
  let movedAt = first.t;
  for (let i = 1; i < samples.length; i++) {
    if (samples[i].currentTime !== samples[i - 1].currentTime) movedAt = samples[i].t;
    stalledMax = Math.max(stalledMax, samples[i].t - movedAt);
  }

  Object.assign(result, {
    kind: last.kind,
    url: last.url,
    samples: samples.length,
    wall_s: round3(last.t - first.t),
    current_time_start: round3(first.currentTime),
    current_time_end: round3(last.currentTime),
    advanced_s: round3(last.currentTime - first.currentTime),
    video_width: last.videoWidth,
    video_height: last.videoHeight,
    paused: last.paused,
    buffered_ahead_median_s: round3(median(ahead)),
    stalled_max_s: round3(stalledMax),
    // The player's own latency figure, and the wall clock less the
    // program date of the playhead (the same measure for every player).
    hls_latency_s: summary(latencies),
    wall_latency_s: summary(wall),
    player_errors: last.errors,
    player_stalls: last.stalls,
    status: await page.locator('#status').innerText().catch(() => null),
  });

  if (result.kind !== proto) failures.push(`the page plays ${result.kind}, not ${proto}`);
  if (!(result.advanced_s >= ADVANCE_MIN_S)) {
    failures.push(
      `currentTime advanced ${result.advanced_s} s over ${result.wall_s} s of sampling (want >= ${ADVANCE_MIN_S})`,
    );
  }
  if (result.video_width !== WIDTH) failures.push(`videoWidth is ${result.video_width}, want ${WIDTH}`);
  if (proto !== 'flv' && latencies.length === 0) failures.push(`the ${proto} player reported no latency`);
  if (last.errors.length > 0) failures.push(`the player raised errors: ${JSON.stringify(last.errors)}`);

  if (screenshot) {
    fs.mkdirSync(path.dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
    result.screenshot = screenshot;
  }
  result.ok = failures.length === 0;
  for (const f of failures) console.error(`play.mjs: FAIL: ${f}`);
  await finish(result.ok ? 0 : 1);
} catch (e) {
  failures.push(`unexpected: ${e.stack || e}`);
  console.error(`play.mjs: FAIL: ${e.stack || e}`);
  await finish(1);
}
