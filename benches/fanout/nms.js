// node-media-server for the fan-out comparison, started by run.sh as
//
//   taskset -c 0 node nms.js RTMP_PORT HTTP_PORT DATA_DIR
//
// RTMP on 127.0.0.1:RTMP_PORT (rtmp://.../live/bench), HTTP-FLV on
// 127.0.0.1:HTTP_PORT (http://.../live/bench.flv). Its own defaults
// otherwise (GOP cache on, out chunk size 65535), with no authentication,
// no RTMPS/HTTPS, no admin console or API, no recording, and warnings-only
// logging (its constructor sets "debug": a line per session). The config is
// built here rather than read from a file because the package's CLI writes
// generated secrets back into its config file. SIGTERM or SIGINT stops it
// with its own stop().
"use strict";

const NodeMediaServer = require("node-media-server");
const logger = require("node-media-server/src/core/logger.js");

function port(arg, what) {
  const p = Number(arg);
  if (!Number.isInteger(p) || p < 1 || p > 65535) {
    console.error(`nms.js: ${what} port '${arg}' is not a port number`);
    process.exit(2);
  }
  return p;
}

const [rtmpArg, httpArg, dataDir] = process.argv.slice(2);
if (dataDir === undefined) {
  console.error("usage: node nms.js RTMP_PORT HTTP_PORT DATA_DIR");
  process.exit(2);
}

const config = {
  bind: "127.0.0.1",
  rtmp: { port: port(rtmpArg, "RTMP") },
  http: { port: port(httpArg, "HTTP") },
  // Its session history store, kept out of the repository.
  store: { path: dataDir },
  notify: { url: "" },
  auth: { play: false, publish: false, secret: "" },
  webadmin: { enable: false },
};

const nms = new NodeMediaServer(config, "");
logger.level = "warn";
nms.run();

let stopping = false;
function stop() {
  if (stopping) {
    return;
  }
  stopping = true;
  nms.stop().then(
    () => process.exit(0),
    (e) => {
      console.error(`nms.js: stop failed: ${e}`);
      process.exit(1);
    },
  );
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
