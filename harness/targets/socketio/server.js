// A small Socket.IO 4 broadcast server, a third-party target for the harness.
//
//   node harness/targets/socketio/server.js --port 8000 [--ping-interval MS] [--ping-timeout MS]
//
// (a duration with an "s" suffix is in seconds: --ping-interval 1s)
//
// (or PORT in the environment). socket.io is resolved through NODE_PATH, which points at the
// node_modules that scripts/bootstrap installs into .tools/socketio.
//
// It binds 127.0.0.1 only and serves Socket.IO on its default path /socket.io/. HTTP endpoints:
//   POST /publish  JSON body: one event or a list of events; each goes to every connected client
//                  with io.emit("event", ev), in order; answers 200 {"emitted": n}.
//   GET  /health   200 {"clients": n}
//   GET  /metrics  Prometheus text: socketio_clients, the Engine.IO clients connected now
// Logs are JSON lines on stdout. SIGTERM or SIGINT closes every client and the server, then exits 0.
"use strict";

const http = require("node:http");
const { parseArgs } = require("node:util");
const { Server } = require("socket.io");

const MAX_BODY = 16 * 1024 * 1024;

function log(level, msg, fields = {}) {
  process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), level, msg, ...fields }) + "\n");
}

function options() {
  const { values } = parseArgs({
    options: {
      port: { type: "string", default: process.env.PORT },
      "ping-interval": { type: "string", default: "25000" },
      "ping-timeout": { type: "string", default: "20000" },
    },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new Error("give the port with --port N or PORT=N");
  }
  return { port, pingInterval: millis(values["ping-interval"]), pingTimeout: millis(values["ping-timeout"]) };
}

function millis(text) {
  const ms = text.endsWith("s") && !text.endsWith("ms") ? Number(text.slice(0, -1)) * 1000 : Number(text.replace(/ms$/, ""));
  if (!Number.isFinite(ms) || ms <= 0) throw new Error(`not a duration: ${text}`);
  return Math.round(ms);
}

function reply(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function readJson(req, done) {
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) {
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on("end", () => {
    try {
      done(null, JSON.parse(Buffer.concat(chunks).toString("utf8")));
    } catch (err) {
      done(err);
    }
  });
}

function publish(io, req, res) {
  readJson(req, (err, body) => {
    if (err) {
      log("WARNING", "bad publish body", { error: err.message });
      reply(res, 400, { error: "the body must be JSON: an event or a list of events" });
      return;
    }
    const events = Array.isArray(body) ? body : [body];
    for (const ev of events) io.emit("event", ev);
    reply(res, 200, { emitted: events.length });
  });
}

function metrics(io, res) {
  res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
  res.end(`# HELP socketio_clients Engine.IO clients connected now\n# TYPE socketio_clients gauge\nsocketio_clients ${io.engine.clientsCount}\n`);
}

function main() {
  const opts = options();
  const server = http.createServer();
  const io = new Server(server, { pingInterval: opts.pingInterval, pingTimeout: opts.pingTimeout });
  // Socket.IO answers its own path first; every other request lands here.
  server.on("request", (req, res) => {
    if (req.url.startsWith("/socket.io/")) return;
    if (req.method === "POST" && req.url === "/publish") return publish(io, req, res);
    if (req.method === "GET" && req.url === "/health") return reply(res, 200, { clients: io.engine.clientsCount });
    if (req.method === "GET" && req.url === "/metrics") return metrics(io, res);
    reply(res, 404, { error: "not found" });
  });
  io.on("connection", (socket) => {
    log("INFO", "client connected", { sid: socket.id, clients: io.engine.clientsCount });
    socket.on("disconnect", (reason) => log("INFO", "client disconnected", { sid: socket.id, reason }));
  });
  const stop = (signal) => {
    log("INFO", "stopping", { signal });
    io.close(() => {
      log("INFO", "stopped");
      process.exit(0);
    });
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  server.listen(opts.port, "127.0.0.1", () => log("INFO", "listening", { host: "127.0.0.1", port: opts.port }));
}

main();
