// The official socket.io-client under Node as the load of bench/gateway_connect_cost.py.
//
// node bench/connect_cost_client.cjs <url> <transport: websocket | polling | upgrading> <operations> <concurrency> [path]
//
// One operation: a new client (its own Manager, no reconnection) connects with auth.auctionId (the
// join), waits for its first viewerCountUpdate and, with the default transports ("upgrading":
// polling, then the upgrade), for the upgrade to WebSocket too, then disconnects. `concurrency`
// operations run at a time, on the Socket.IO `path` (default /socket.io/). Prints one JSON line at
// the end: {"done", "failed", "seconds"}.
"use strict";

const { io } = require("socket.io-client");

const [url, transport, operationsText, concurrencyText, path] = process.argv.slice(2);
const operations = Number(operationsText);
const concurrency = Number(concurrencyText);
const OPTIONS = {
  websocket: { transports: ["websocket"], upgrade: false },
  polling: { transports: ["polling"], upgrade: false },
  upgrading: { transports: ["polling", "websocket"], upgrade: true },
}[transport];
// Every operation is bounded: a stalled one counts as failed instead of hanging the run.
const OPERATION_TIMEOUT_MS = 10000;

let started = 0;
let done = 0;
let failed = 0;
const begin = process.hrtime.bigint();

function operation(index) {
  return new Promise((resolve) => {
    const socket = io(url, {
      ...OPTIONS,
      forceNew: true,
      reconnection: false,
      path: path || "/socket.io/",
      auth: { auctionId: `cost-${index % 50}` },
    });
    let counted = false;
    let upgraded = !OPTIONS.upgrade;
    let finished = false;
    const finish = (ok) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.disconnect();
      if (ok) done++;
      else failed++;
      resolve();
    };
    const timer = setTimeout(() => finish(false), OPERATION_TIMEOUT_MS);
    const check = () => {
      if (counted && upgraded) finish(true);
    };
    socket.on("viewerCountUpdate", () => {
      counted = true;
      check();
    });
    socket.io.on("open", () => {
      socket.io.engine.on("upgrade", () => {
        upgraded = true;
        check();
      });
    });
    socket.on("connect_error", () => finish(false));
  });
}

async function worker() {
  while (started < operations) {
    const index = started++;
    await operation(index);
  }
}

Promise.all(Array.from({ length: concurrency }, worker)).then(() => {
  const seconds = Number(process.hrtime.bigint() - begin) / 1e9;
  process.stdout.write(JSON.stringify({ done, failed, seconds }) + "\n");
});
