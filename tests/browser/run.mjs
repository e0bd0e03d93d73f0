// What play.mjs and dashboard.mjs share: a throwaway Chromium profile, the
// failures and console lines they collect, one way to end (print the JSON
// result on stdout, close Chromium, remove the profile, exit), and a
// watchdog so a script never hangs (the Rust test also ends it by PID).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Starts a run that reports into `result`; set `run.context` once the
 *  browser is launched so `finish` closes it. */
export function startRun(result, watchdogMs) {
  const run = {
    failures: [],
    consoleLines: [],
    context: null,
    userDataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-chromium-')),
    async finish(code) {
      result.failures = run.failures;
      result.console = run.consoleLines.slice(-30);
      if (run.context) {
        await run.context.close().catch(() => {});
      }
      fs.rmSync(run.userDataDir, { recursive: true, force: true });
      console.log(JSON.stringify(result));
      process.exit(code);
    },
  };
  setTimeout(() => {
    run.failures.push(`watchdog: no result within ${watchdogMs} ms`);
    run.finish(1);
  }, watchdogMs).unref();
  return run;
}
