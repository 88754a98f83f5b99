// The official socket.io-client under Node, for tests that need a browser's Socket.IO client.
//
// node socketio_js_clients.cjs <url> <auctionId> <websocket-clients> <polling-clients> <upgrading-clients> [path]
//
// Opens the clients (WebSocket only, long-polling only, and socket.io-client's default: polling,
// then upgraded to WebSocket), reconnecting after 100-500 ms as a browser would (sooner than the
// default 1-5 s, so tests stay short), and prints one JSON line per event on
// stdout (path: the Socket.IO path, default /socket.io/): {"client", "transport", "event": "connect" | "upgrade" | "disconnect" | "update" | "connect_error",
// "reason"?, "viewerCount"?}. Closing stdin disconnects every client and exits.
"use strict";

const { io } = require("socket.io-client");

const [url, auctionId, websocketClients, pollingClients, upgradingClients, path] = process.argv.slice(2);
const TRANSPORTS = {
  websocket: { transports: ["websocket"], upgrade: false },
  polling: { transports: ["polling"], upgrade: false },
  upgrading: { transports: ["polling", "websocket"], upgrade: true },
};

function report(entry) {
  process.stdout.write(JSON.stringify(entry) + "\n");
}

const sockets = [];
function open(transport, count) {
  for (let i = 0; i < count; i++) {
    const client = `${transport}-${i}`;
    const socket = io(url, {
      ...TRANSPORTS[transport],
      forceNew: true,
      path: path || "/socket.io/",
      auth: { auctionId },
      reconnectionDelay: 100,
      reconnectionDelayMax: 500,
    });
    socket.on("connect", () => report({ client, transport, event: "connect" }));
    // Each new Engine.IO connection (the first and every reconnection) may upgrade.
    socket.io.on("open", () =>
      socket.io.engine.once("upgrade", () => report({ client, transport, event: "upgrade" })),
    );
    socket.on("disconnect", (reason) => report({ client, transport, event: "disconnect", reason }));
    socket.on("connect_error", (error) =>
      report({ client, transport, event: "connect_error", reason: String(error && error.message) }),
    );
    socket.on("viewerCountUpdate", (counts) =>
      report({ client, transport, event: "update", viewerCount: counts.viewerCount }),
    );
    sockets.push(socket);
  }
}

open("websocket", Number(websocketClients));
open("polling", Number(pollingClients));
open("upgrading", Number(upgradingClients));

process.stdin.resume();
process.stdin.on("end", () => {
  for (const socket of sockets) socket.disconnect();
  setTimeout(() => process.exit(0), 50);
});
