// A stand-in for the meshcast edge, for working on the page without the Go server and for the
// browser smoke test (dev/smoke.ts): it serves dist/ and zones.geojson, and streams a simulated
// fleet over the three browser transports of API.md §3 (WebSocket meshcast.v1.json, SSE, and
// gRPC-Web binary Watch) with the same event semantics: a snapshot first and after every move,
// upserts while vehicles move inside the area, removes when they leave it or turn occupied.
// It is a development tool: no auth, no limits, loopback only.
//
//   node dev/run.mjs fake-edge [--port 8080] [--vehicles 300]

import { create, fromBinary, fromJson, toBinary, toJsonString } from "@bufbuild/protobuf";
import { createHash } from "node:crypto";
import { readFileSync, existsSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { extname, join, normalize } from "node:path";
import {
  RemovalReason,
  RiderEventSchema,
  WatchRequestSchema,
  type RiderEvent,
  type Vehicle,
  type WatchRequest,
} from "../client/gen/meshcast/v1/rider_pb";
import { VehicleClass } from "../client/gen/meshcast/v1/telemetry_pb";
import { distanceM, meshCode } from "../client/mesh";

export interface FakeEdgeOptions {
  /** Directory of the built page (web/dist). */
  dist: string;
  /** The zones file (deploy/zones/tokyo.geojson). */
  zones: string;
  vehicles?: number;
  /** Mean interval between two fixes of one vehicle, ms. */
  fixEveryMs?: number;
  seed?: number;
}

interface Car {
  v: Vehicle;
  vacant: boolean;
}

const CENTRE = { lat: 35.681236, lon: 139.767125 };

function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

/** Fleet moves simulated taxis around Tokyo Station and tells subscribers what changed. */
class Fleet {
  readonly cars: Car[] = [];
  private readonly listeners = new Set<(c: Car, wasVacant: boolean) => void>();
  private timer: NodeJS.Timeout | undefined;

  constructor(n: number, private readonly fixEveryMs: number, private readonly random: () => number) {
    const classes = [VehicleClass.STANDARD, VehicleClass.STANDARD, VehicleClass.STANDARD, VehicleClass.PREMIUM, VehicleClass.VAN, VehicleClass.ACCESSIBLE];
    for (let i = 0; i < n; i++) {
      const r = 4000 * Math.sqrt(random());
      const a = random() * 2 * Math.PI;
      const fleet = i % 3 === 0 ? "kotobuki" : i % 3 === 1 ? "sakura" : "hinode";
      this.cars.push({
        vacant: random() > 0.15,
        v: {
          $typeName: "meshcast.v1.Vehicle",
          id: `${fleet}/t${String(i).padStart(4, "0")}`,
          fleet,
          lat: CENTRE.lat + (r * Math.cos(a)) / 111320,
          lon: CENTRE.lon + (r * Math.sin(a)) / (111320 * Math.cos((CENTRE.lat * Math.PI) / 180)),
          headingDeg: Math.floor(random() * 360),
          speedKmh: 10 + random() * 35,
          class: classes[Math.floor(random() * classes.length)],
          mesh: "",
          observedAtMs: BigInt(Date.now()),
          distanceM: 0,
        },
      });
    }
  }

  start(): void {
    const tick = 100;
    this.timer = setInterval(() => {
      const share = tick / this.fixEveryMs;
      for (const c of this.cars) if (this.random() < share) this.step(c);
    }, tick);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  on(fn: (c: Car, wasVacant: boolean) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private step(c: Car): void {
    const v = c.v;
    const wasVacant = c.vacant;
    if (this.random() < 0.02) c.vacant = !c.vacant;
    v.headingDeg = (v.headingDeg + (this.random() - 0.5) * 50 + 360) % 360;
    // Steer back towards the centre when far out.
    if (distanceM(v.lat, v.lon, CENTRE.lat, CENTRE.lon) > 4500) {
      const back = (Math.atan2(CENTRE.lon - v.lon, CENTRE.lat - v.lat) * 180) / Math.PI;
      v.headingDeg = (back + 360) % 360;
    }
    const dist = (v.speedKmh / 3.6) * (this.fixEveryMs / 1000);
    const h = (v.headingDeg * Math.PI) / 180;
    v.lat += (dist * Math.cos(h)) / 111320;
    v.lon += (dist * Math.sin(h)) / (111320 * Math.cos((v.lat * Math.PI) / 180));
    v.mesh = meshCode(v.lat, v.lon);
    v.observedAtMs = BigInt(Date.now() - Math.floor(40 + this.random() * 120));
    for (const fn of this.listeners) fn(c, wasVacant);
  }
}

type Send = (ev: RiderEvent) => void;

/** Session is one rider's view: the area, the ids it has, a sequence number. */
class Session {
  private seq = 0n;
  private readonly seen = new Set<string>();
  private req!: WatchRequest;
  private idle: NodeJS.Timeout;
  private readonly off: () => void;

  constructor(
    private readonly fleet: Fleet,
    req: WatchRequest,
    private readonly send: Send,
    firstSeq = 1n,
  ) {
    this.seq = firstSeq - 1n;
    this.move(req);
    this.off = fleet.on((c, wasVacant) => this.onFix(c, wasVacant));
    this.idle = setInterval(() => this.emit({ case: "heartbeat", value: { $typeName: "meshcast.v1.Heartbeat", serverTimeMs: BigInt(Date.now()) } }), 10000);
  }

  private radius(): number {
    return this.req.radiusM || 1000;
  }

  private view(v: Vehicle): Vehicle {
    return { ...v, distanceM: Math.round(distanceM(this.req.lat, this.req.lon, v.lat, v.lon)) };
  }

  private inArea(c: Car): boolean {
    if (!c.vacant) return false;
    if (this.req.classes.length > 0 && !this.req.classes.includes(c.v.class)) return false;
    return distanceM(this.req.lat, this.req.lon, c.v.lat, c.v.lon) <= this.radius();
  }

  private emit(kind: RiderEvent["kind"]): void {
    this.seq++;
    this.send(create(RiderEventSchema, { seq: this.seq, kind }));
  }

  move(req: WatchRequest): void {
    this.req = req;
    this.seen.clear();
    const vs = this.fleet.cars.filter((c) => this.inArea(c)).map((c) => this.view(c.v));
    for (const v of vs) this.seen.add(v.id);
    this.emit({ case: "snapshot", value: { $typeName: "meshcast.v1.Snapshot", vehicles: vs } });
  }

  private onFix(c: Car, wasVacant: boolean): void {
    const inside = this.inArea(c);
    const had = this.seen.has(c.v.id);
    if (inside) {
      this.seen.add(c.v.id);
      this.emit({ case: "upsert", value: this.view(c.v) });
    } else if (had) {
      this.seen.delete(c.v.id);
      const reason = wasVacant && !c.vacant ? RemovalReason.NOT_VACANT : RemovalReason.LEFT_AREA;
      this.emit({ case: "remove", value: { $typeName: "meshcast.v1.Removal", id: c.v.id, reason } });
    }
  }

  close(): void {
    this.off();
    clearInterval(this.idle);
  }
}

function requestFromQuery(q: URLSearchParams): WatchRequest {
  const classes = (q.get("classes") ?? "")
    .split(",")
    .filter(Boolean)
    .map((c) => VehicleClass[c.toUpperCase() as keyof typeof VehicleClass]);
  return create(WatchRequestSchema, {
    lat: Number(q.get("lat")),
    lon: Number(q.get("lon")),
    radiusM: Number(q.get("radius_m") ?? 0),
    classes,
    maxVehicles: Number(q.get("max_vehicles") ?? 0),
  });
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".png": "image/png",
};

// ---- WebSocket (RFC 6455, just enough: unfragmented text frames, close) ---------------------

function wsFrame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, n]) : n < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  if (n >= 126 && n < 65536) {
    head[0] = 0x80 | opcode;
    head[1] = 126;
    head.writeUInt16BE(n, 2);
  } else if (n >= 65536) {
    head[0] = 0x80 | opcode;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, payload]);
}

function serveWS(fleet: Fleet, req: IncomingMessage, socket: Duplex, q: URLSearchParams): void {
  const key = req.headers["sec-websocket-key"];
  const offered = String(req.headers["sec-websocket-protocol"] ?? "")
    .split(",")
    .map((s) => s.trim());
  if (!key || !offered.includes("meshcast.v1.json")) {
    socket.end("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\r\n" + '{"error":{"code":"invalid_argument","message":"subprotocol meshcast.v1.json required"}}');
    return;
  }
  const accept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  socket.write(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: meshcast.v1.json\r\n\r\n`,
  );
  // Batch the events of one tick into one frame, joined by "\n", as the edge does.
  let batch: string[] = [];
  let flush: NodeJS.Immediate | undefined;
  const session = new Session(fleet, requestFromQuery(q), (ev) => {
    batch.push(toJsonString(RiderEventSchema, ev));
    flush ??= setImmediate(() => {
      flush = undefined;
      socket.write(wsFrame(1, Buffer.from(batch.join("\n"))));
      batch = [];
    });
  });
  let buf = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 2) {
      const opcode = buf[0] & 0x0f;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        off = 10;
      }
      if (buf.length < off + 4 + len) return;
      const mask = buf.subarray(off, off + 4);
      const data = Buffer.from(buf.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < data.length; i++) data[i] ^= mask[i % 4];
      buf = buf.subarray(off + 4 + len);
      if (opcode === 8) {
        socket.end(wsFrame(8, Buffer.from([0x03, 0xe8])));
        return;
      }
      if (opcode === 1) {
        try {
          session.move(fromJson(WatchRequestSchema, JSON.parse(data.toString("utf8"))));
        } catch {
          const reason = Buffer.from("not a WatchRequest");
          socket.end(wsFrame(8, Buffer.concat([Buffer.from([0x03, 0xf0]), reason]))); // 1008
        }
      }
    }
  });
  socket.on("close", () => session.close());
  socket.on("error", () => session.close());
}

// ---- SSE ----------------------------------------------------------------------------------

const SSE_KIND: Record<string, string> = { snapshot: "snapshot", upsert: "upsert", remove: "remove", heartbeat: "heartbeat" };

function serveSSE(fleet: Fleet, req: IncomingMessage, res: ServerResponse, q: URLSearchParams): void {
  const last = Number(req.headers["last-event-id"] ?? q.get("lastEventId") ?? 0);
  res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", Connection: "keep-alive" });
  res.write("retry: 1000\n\n");
  const session = new Session(
    fleet,
    requestFromQuery(q),
    (ev) => res.write(`id: ${ev.seq}\nevent: ${SSE_KIND[ev.kind.case!]}\ndata: ${toJsonString(RiderEventSchema, ev)}\n\n`),
    BigInt(Number.isFinite(last) ? last + 1 : 1),
  );
  req.on("close", () => session.close());
}

// ---- gRPC-Web (binary) ---------------------------------------------------------------------

function grpcFrame(flag: number, payload: Uint8Array): Buffer {
  const h = Buffer.alloc(5);
  h[0] = flag;
  h.writeUInt32BE(payload.length, 1);
  return Buffer.concat([h, payload]);
}

function serveGrpcWeb(fleet: Fleet, req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    res.writeHead(200, { "Content-Type": "application/grpc-web+proto" });
    if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5) {
      res.end(grpcFrame(0x80, Buffer.from("grpc-status: 3\r\ngrpc-message: bad request frame\r\n")));
      return;
    }
    const watchReq = fromBinary(WatchRequestSchema, body.subarray(5));
    const session = new Session(fleet, watchReq, (ev) => res.write(grpcFrame(0, toBinary(RiderEventSchema, ev))));
    res.on("close", () => session.close());
  });
}

// ---- server -------------------------------------------------------------------------------

/** startFakeEdge listens on 127.0.0.1:port (0: any free port) and returns the server and its URL. */
export async function startFakeEdge(opts: FakeEdgeOptions, port = 0): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const fleet = new Fleet(opts.vehicles ?? 300, opts.fixEveryMs ?? 3000, rng(opts.seed ?? 7));
  fleet.start();
  const zones = JSON.parse(readFileSync(opts.zones, "utf8"));
  zones.features.forEach((f: { properties: Record<string, unknown> }, i: number) => (f.properties = { index: i, ...f.properties }));
  const zonesJSON = JSON.stringify(zones);

  const server = createServer((req, res) => {
    const u = new URL(req.url ?? "/", "http://x");
    if (u.pathname === "/v1/sse") return serveSSE(fleet, req, res, u.searchParams);
    if (u.pathname === "/meshcast.v1.RiderService/Watch" && req.method === "POST") return serveGrpcWeb(fleet, req, res);
    if (u.pathname === "/zones.geojson") {
      res.writeHead(200, { "Content-Type": "application/geo+json" });
      return res.end(zonesJSON);
    }
    const name = u.pathname === "/" ? "index.html" : normalize(u.pathname).replace(/^([/\\])+/, "");
    const file = join(opts.dist, name);
    if (!name.startsWith("..") && existsSync(file) && TYPES[extname(file)]) {
      res.writeHead(200, { "Content-Type": TYPES[extname(file)] });
      return res.end(readFileSync(file));
    }
    res.writeHead(404).end("not found");
  });
  server.on("upgrade", (req, socket) => {
    const u = new URL(req.url ?? "/", "http://x");
    if (u.pathname !== "/v1/ws") return socket.destroy();
    serveWS(fleet, req, socket, u.searchParams);
  });
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
  const addr = server.address() as { port: number };
  return {
    server,
    url: `http://127.0.0.1:${addr.port}/`,
    close: () =>
      new Promise<void>((r) => {
        fleet.stop();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
