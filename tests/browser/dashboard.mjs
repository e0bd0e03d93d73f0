// Opens a running shardcast's `/dashboard` in headless Chromium and reports
// what the page rendered as one JSON object on stdout.
//
//   node tests/browser/dashboard.mjs <dashboard url> <stream name> <players> [screenshot.png]
//
// e.g. `node tests/browser/dashboard.mjs http://127.0.0.1:8079/dashboard __defaultVhost__/live/test 2`.
//
// It waits (at most WAIT_MS) until the page has refreshed REFRESHES_MIN
// times, shows a non-zero bandwidth out and shows <players> players for the
// stream, then reads the numbers from the DOM (data attributes of the text
// tables) and counts the charts uPlot drew. Exit status: 0 when every
// condition held, 1 when one did not (the JSON says which), 2 when the
// environment is missing something. The Rust test (tests/browser.rs) asserts
// on the JSON itself. Chromium is Debian's `chromium`; override with
// CHROMIUM=/path.

import fs from 'node:fs';

import { startRun } from './run.mjs';

const USAGE = 'usage: node tests/browser/dashboard.mjs <dashboard url> <stream name> <players> [screenshot.png]';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const INSTALL_HINT =
  'run scripts/test.sh (it installs them), or by hand: `apt-get install chromium` and `npm ci` in the shardcast directory';

/** Refreshes the page must have done before the numbers count. */
const REFRESHES_MIN = 3;
/** Deadlines, in ms; the whole run stays well under the Rust test's. */
const LOAD_TIMEOUT_MS = 15_000;
const WAIT_MS = 30_000;
const WATCHDOG_MS = 60_000;

const [pageUrl, streamName, playersArg, screenshot] = process.argv.slice(2);
const playersWant = Number(playersArg);
if (!pageUrl || !streamName || !Number.isInteger(playersWant)) {
  console.error(USAGE);
  process.exit(2);
}

const result = { ok: false, page: pageUrl, stream: streamName, players_want: playersWant };
const run = startRun(result, WATCHDOG_MS);
const { failures, consoleLines, userDataDir, finish } = run;

if (!fs.existsSync(CHROMIUM)) {
  failures.push(`Chromium is not installed at ${CHROMIUM}: ${INSTALL_HINT}`);
  await finish(2);
}
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  failures.push(`playwright-core is not installed (${e.message}): ${INSTALL_HINT}`);
  await finish(2);
}

/** What the page shows now, read from the DOM. */
function observe(stream) {
  const num = (v) => (v === undefined || v === null ? null : Number(v));
  const row = [...document.querySelectorAll('#stream-table tr[data-stream]')].find(
    (r) => r.dataset.stream === stream,
  );
  const shardRows = [...document.querySelectorAll('#shard-table tr[data-shard]')];
  return {
    refreshes: num(document.body.dataset.refreshes) ?? 0,
    lib_loaded: typeof window.uPlot === 'function',
    out_bps: num(document.getElementById('bw-out').dataset.bps),
    in_bps: num(document.getElementById('bw-in').dataset.bps),
    out_text: document.getElementById('bw-out').textContent,
    players: row ? num(row.dataset.players) : null,
    streams_listed: [...document.querySelectorAll('#stream-table tr[data-stream]')].map((r) => r.dataset.stream),
    http_flv_connections: num(document.querySelector('#conn-table tr[data-protocol="http_flv"]')?.dataset.count),
    shards: shardRows.length,
    p99_us: shardRows.map((r) => num(r.dataset.p99Us)),
    charts: document.querySelectorAll('.chart .uplot').length,
    chart_canvases: document.querySelectorAll('.chart .uplot canvas').length,
    error: document.getElementById('error').hidden ? null : document.getElementById('error').textContent,
  };
}

try {
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 1000 },
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  run.context = context;
  result.browser = context.browser()?.version() ?? null;
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on('response', (r) => {
    if (r.status() >= 400) consoleLines.push(`[http] ${r.status()} ${r.url()}`);
  });
  page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));

  const resp = await page.goto(pageUrl, { waitUntil: 'load', timeout: LOAD_TIMEOUT_MS });
  if (!resp || !resp.ok()) {
    failures.push(`GET ${pageUrl} answered ${resp ? resp.status() : 'nothing'}`);
    await finish(1);
  }
  const t0 = Date.now();
  try {
    await page.waitForFunction(
      ([stream, want, min]) => {
        const n = Number(document.body.dataset.refreshes || 0);
        const out = Number(document.getElementById('bw-out').dataset.bps || 0);
        const row = [...document.querySelectorAll('#stream-table tr[data-stream]')].find(
          (r) => r.dataset.stream === stream,
        );
        return n >= min && out > 0 && row && Number(row.dataset.players) === want;
      },
      [streamName, playersWant, REFRESHES_MIN],
      { timeout: WAIT_MS, polling: 200 },
    );
    result.waited_ms = Date.now() - t0;
  } catch {
    failures.push(`within ${WAIT_MS} ms the page did not show ${REFRESHES_MIN} refreshes, bandwidth out > 0 ` +
      `and ${playersWant} players for ${streamName}`);
  }
  Object.assign(result, await page.evaluate(observe, streamName));
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
  result.ok = failures.length === 0;
  await finish(result.ok ? 0 : 1);
} catch (e) {
  failures.push(`browser: ${e.message}`);
  await finish(1);
}
