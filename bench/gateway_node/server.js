// Benchmark baseline only (not part of the product): a minimal socket.io 4 server that keeps the
// gateway's rooms and broadcasts the same viewerCountUpdate payload on every join and leave (the
// seed's design), compression off. Prints {"port": N} once listening on 127.0.0.1.
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const httpServer = http.createServer();
const io = new Server(httpServer, {
  perMessageDeflate: false,
  httpCompression: false,
  cors: { origin: "*" },
  pingInterval: 600000,
  pingTimeout: 600000,
});

function broadcast(room) {
  const members = io.sockets.adapter.rooms.get(room);
  const count = members ? members.size : 0;
  io.to(room).emit("viewerCountUpdate", { auctionId: room, viewerCount: count, uniqueViewers: count });
}

function leave(socket) {
  const room = socket.data.room;
  if (room) {
    socket.leave(room);
    socket.data.room = undefined;
    broadcast(room);
  }
  return room;
}

function join(socket, room, announce = true) {
  if (socket.data.room === room) return;
  leave(socket);
  socket.join(room);
  socket.data.room = room;
  if (announce) broadcast(room);
}

// The fan-out benchmark fills the room before measuring; announcing each of those joins to the
// whole room (the seed's design) would flood the load client with N^2/2 messages first.
const announceConnectJoins = process.env.SILENT_CONNECT_JOINS !== "1";

io.on("connection", (socket) => {
  const auth = socket.handshake.auth || {};
  if (typeof auth.auctionId === "string") join(socket, auth.auctionId, announceConnectJoins);
  socket.on("joinAuction", (payload, ack) => {
    join(socket, payload.auctionId);
    if (typeof ack === "function") ack({ ok: true });
  });
  socket.on("leaveAuction", (...args) => {
    const room = leave(socket);
    const ack = args[args.length - 1];
    if (typeof ack === "function") ack({ ok: true, auctionId: room || null });
  });
  socket.on("disconnect", () => leave(socket));
});

httpServer.listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ port: httpServer.address().port }));
});
process.on("SIGTERM", () => process.exit(0));
