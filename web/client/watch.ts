// watch(): one API over the three browser transports, with reconnects.

import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { backoffDelay, type BackoffOptions } from "./backoff";
import {
  EVENT_KINDS,
  fromProto,
  parseSSEData,
  parseWSFrame,
  watchQuery,
  watchRequest,
  watchRequestJSON,
  type Area,
  type MeshcastEvent,
} from "./events";
import { RiderService } from "./gen/meshcast/v1/rider_pb";
import { VehicleSet, type Change } from "./state";

/** The browser transports of the rider API (API.md §3). */
export type TransportName = "ws" | "sse" | "grpc-web";
export const TRANSPORTS: readonly TransportName[] = ["ws", "sse", "grpc-web"];

/** The WebSocket subprotocol this client speaks. */
export const WS_SUBPROTOCOL = "meshcast.v1.json";

/**
 * WebSocket close codes after which reconnecting cannot help: protocol error, unsupported data,
 * invalid payload, policy (bad request or auth). Every other close (1001 going away, 1006 network
 * error, 1011, 1013 try again later, 4008 too slow, ...) is retried with backoff.
 */
export const WS_PERMANENT_CLOSE_CODES: ReadonlySet<number> = new Set([1002, 1003, 1007, 1008]);

/** gRPC codes after which reconnecting cannot help; every other ending is retried with backoff. */
export const GRPC_PERMANENT_CODES: ReadonlySet<Code> = new Set([
  Code.InvalidArgument,
  Code.Unauthenticated,
  Code.PermissionDenied,
  Code.Unimplemented,
]);

/** Connection state of a watch. */
export type ConnState = "connecting" | "open" | "reconnecting" | "closed";

/** Status is reported through WatchOptions.onStatus on every state change. */
export interface Status {
  state: ConnState;
  transport: TransportName;
  /** Reconnect attempts since the last snapshot. */
  attempt: number;
  /** When reconnecting on our own timer: the delay before the next attempt. */
  retryInMs?: number;
  /** Why the last connection ended, if it did. */
  error?: string;
}

/** Minimal WebSocket surface the client uses (the browser's WebSocket has it). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
export type WebSocketCtor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Minimal EventSource surface the client uses (the browser's EventSource has it). */
export interface EventSourceLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  addEventListener(type: string, listener: (ev: { data: string }) => void): void;
  close(): void;
}
export type EventSourceCtor = new (url: string) => EventSourceLike;

/** Environment seams: the browser's by default; tests pass fakes. */
export interface WatchEnv {
  WebSocket: WebSocketCtor;
  EventSource: EventSourceCtor;
  setTimeout: (fn: () => void, ms: number) => unknown;
  clearTimeout: (handle: unknown) => void;
  random: () => number;
  /** The gRPC-Web transport (default: createGrpcWebTransport on baseUrl, binary format). */
  grpcTransport?: Transport;
  /** Base URL when WatchOptions.baseUrl is not set (default: the page's origin). */
  origin: string;
  /** Receives exceptions thrown by onEvent (default: the browser's reportError). */
  reportError: (e: unknown) => void;
}

export interface WatchOptions {
  /** Default "ws". */
  transport?: TransportName;
  /** Where the edge is, e.g. "https://edge.example.com" (default: the page's origin). */
  baseUrl?: string;
  /** Bearer JWT when the edge requires auth: a header for gRPC-Web, access_token for WS and SSE. */
  accessToken?: string;
  backoff?: BackoffOptions;
  onStatus?: (s: Status) => void;
  env?: Partial<WatchEnv>;
}

/** What watch() returns. */
export interface WatchHandle {
  /** move watches another area; a new snapshot replaces the set. */
  move(area: Area): void;
  /** close ends the watch for good (no reconnect). */
  close(): void;
  /** The current vehicles, kept up to date before onEvent is called. */
  readonly vehicles: VehicleSet;
  readonly area: Area;
  readonly transport: TransportName;
  readonly status: Status;
  /** The stream is open. */
  readonly connected: boolean;
}

/** Called for every event, after handle.vehicles applied it; `change` is what it changed. */
export type EventHandler = (ev: MeshcastEvent, change: Change) => void;

// A Sink receives one connection's callbacks; a Conn is one connection attempt.
interface Sink {
  open(): void;
  event(ev: MeshcastEvent): void;
  /** The transport lost the stream and retries by itself (SSE with Last-Event-ID). */
  lost(error: string): void;
  /** The connection ended; retry says whether to reconnect with backoff. */
  closed(retry: boolean, error: string): void;
}
interface Conn {
  /** move in-band; false if the connection cannot (the watcher then reconnects). */
  move(area: Area): boolean;
  close(): void;
}
interface ConnContext {
  env: WatchEnv;
  baseUrl: string;
  accessToken?: string;
}

function endpoint(base: string, path: string, query: string, websocket: boolean): string {
  const u = new URL(path, base.endsWith("/") ? base : base + "/");
  if (websocket) u.protocol = u.protocol === "https:" || u.protocol === "wss:" ? "wss:" : "ws:";
  u.search = query;
  return u.toString();
}

function connectWS(area: Area, sink: Sink, ctx: ConnContext): Conn {
  const ws = new ctx.env.WebSocket(
    endpoint(ctx.baseUrl, "v1/ws", watchQuery(area, ctx.accessToken), true),
    WS_SUBPROTOCOL,
  );
  const detach = () => {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
  };
  ws.onopen = () => sink.open();
  ws.onmessage = (m) => {
    if (typeof m.data !== "string") {
      detach();
      ws.close();
      sink.closed(true, "unexpected binary frame");
      return;
    }
    let events: MeshcastEvent[];
    try {
      events = parseWSFrame(m.data);
    } catch (e) {
      detach();
      ws.close();
      sink.closed(true, (e as Error).message);
      return;
    }
    for (const ev of events) sink.event(ev);
  };
  ws.onerror = () => {}; // a close event always follows
  ws.onclose = (e) => {
    detach();
    sink.closed(!WS_PERMANENT_CLOSE_CODES.has(e.code), `websocket closed ${e.code}${e.reason ? ": " + e.reason : ""}`);
  };
  return {
    move(a) {
      if (ws.readyState !== 1) return false;
      ws.send(watchRequestJSON(a));
      return true;
    },
    close() {
      detach();
      ws.close(1000);
    },
  };
}

function connectSSE(area: Area, sink: Sink, ctx: ConnContext): Conn {
  const es = new ctx.env.EventSource(endpoint(ctx.baseUrl, "v1/sse", watchQuery(area, ctx.accessToken), false));
  // The browser reconnects an EventSource by itself, sending Last-Event-ID (the server continues
  // the numbering and starts with a fresh snapshot). We let it do so once after a stream that was
  // open; if that attempt fails too, or the browser gave up (CLOSED: HTTP error, wrong type), we
  // take over with backoff.
  let open = false;
  es.onopen = () => {
    open = true;
    sink.open();
  };
  es.onerror = () => {
    if (es.readyState !== 2 && open) {
      open = false;
      sink.lost("event stream interrupted");
      return;
    }
    es.onopen = es.onerror = null;
    es.close();
    sink.closed(true, "event stream failed");
  };
  let dead = false;
  for (const kind of EVENT_KINDS) {
    es.addEventListener(kind, (m) => {
      if (dead) return;
      let ev: MeshcastEvent | null;
      try {
        ev = parseSSEData(kind, m.data);
      } catch (e) {
        dead = true;
        es.onopen = es.onerror = null;
        es.close();
        sink.closed(true, (e as Error).message);
        return;
      }
      if (ev) sink.event(ev);
    });
  }
  return {
    move: () => false,
    close() {
      dead = true;
      es.onopen = es.onerror = null;
      es.close();
    },
  };
}

function connectGrpcWeb(area: Area, sink: Sink, ctx: ConnContext): Conn {
  const transport =
    ctx.env.grpcTransport ??
    createGrpcWebTransport({ baseUrl: ctx.baseUrl.replace(/\/+$/, ""), useBinaryFormat: true });
  const client = createClient(RiderService, transport);
  const abort = new AbortController();
  const headers: Record<string, string> = {};
  if (ctx.accessToken) headers["authorization"] = `Bearer ${ctx.accessToken}`;
  void (async () => {
    let opened = false;
    const open = () => {
      if (!opened) {
        opened = true;
        sink.open();
      }
    };
    try {
      for await (const msg of client.watch(watchRequest(area), { signal: abort.signal, headers, onHeader: open })) {
        open();
        const ev = fromProto(msg);
        if (ev) sink.event(ev);
      }
      if (!abort.signal.aborted) sink.closed(true, "stream ended");
    } catch (e) {
      if (abort.signal.aborted) return;
      const ce = ConnectError.from(e);
      sink.closed(!GRPC_PERMANENT_CODES.has(ce.code), `grpc-web ${Code[ce.code]}: ${ce.rawMessage}`);
    }
  })();
  return {
    move: () => false,
    close: () => abort.abort(),
  };
}

const connectors: Record<TransportName, (area: Area, sink: Sink, ctx: ConnContext) => Conn> = {
  ws: connectWS,
  sse: connectSSE,
  "grpc-web": connectGrpcWeb,
};

function defaultEnv(): WatchEnv {
  const g = globalThis as unknown as Record<string, unknown>;
  const loc = g["location"] as { origin?: string } | undefined;
  return {
    WebSocket: g["WebSocket"] as WebSocketCtor,
    EventSource: g["EventSource"] as EventSourceCtor,
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
    random: Math.random,
    origin: loc?.origin ?? "http://localhost",
    reportError: (g["reportError"] as ((e: unknown) => void) | undefined) ?? ((e) => queueMicrotask(() => {
      throw e;
    })),
  };
}

class Watcher implements WatchHandle {
  readonly vehicles = new VehicleSet();
  readonly transport: TransportName;
  status: Status;
  private areaV: Area;
  private readonly env: WatchEnv;
  private readonly ctx: ConnContext;
  private gen = 0;
  private conn: Conn | null = null;
  private timer: unknown = null;
  private attempt = 0;
  private done = false;

  constructor(
    area: Area,
    private readonly onEvent: EventHandler,
    private readonly opts: WatchOptions,
  ) {
    this.areaV = { ...area };
    this.transport = opts.transport ?? "ws";
    if (!connectors[this.transport]) throw new Error(`meshcast: unknown transport "${this.transport}"`);
    this.env = { ...defaultEnv(), ...opts.env };
    this.ctx = { env: this.env, baseUrl: opts.baseUrl ?? this.env.origin, accessToken: opts.accessToken };
    this.status = { state: "connecting", transport: this.transport, attempt: 0 };
    this.connect();
  }

  get area(): Area {
    return { ...this.areaV };
  }

  get connected(): boolean {
    return this.status.state === "open";
  }

  move(area: Area): void {
    if (this.done) return;
    this.areaV = { ...area };
    if (this.conn && this.conn.move(this.areaV)) return;
    this.reconnectNow();
  }

  close(): void {
    if (this.done) return;
    this.done = true;
    this.stop();
    this.setStatus({ state: "closed" });
  }

  private setStatus(s: Partial<Status> & { state: ConnState }): void {
    this.status = { transport: this.transport, attempt: this.attempt, ...s };
    this.opts.onStatus?.(this.status);
  }

  private stop(): void {
    this.gen++; // late callbacks of the old connection are ignored
    if (this.timer !== null) {
      this.env.clearTimeout(this.timer);
      this.timer = null;
    }
    const c = this.conn;
    this.conn = null;
    c?.close();
  }

  private reconnectNow(): void {
    this.stop();
    this.connect();
  }

  private connect(): void {
    const gen = ++this.gen;
    const live = () => gen === this.gen && !this.done;
    const sink: Sink = {
      open: () => {
        if (live()) this.setStatus({ state: "open" });
      },
      event: (ev) => {
        if (!live()) return;
        if (ev.kind === "snapshot") this.attempt = 0;
        const change = this.vehicles.apply(ev);
        try {
          this.onEvent(ev, change);
        } catch (e) {
          this.env.reportError(e);
        }
      },
      lost: (error) => {
        if (live()) this.setStatus({ state: "reconnecting", error });
      },
      closed: (retry, error) => {
        if (!live()) return;
        this.conn = null;
        if (!retry) {
          this.done = true;
          this.setStatus({ state: "closed", error });
          return;
        }
        const delay = backoffDelay(this.attempt, this.opts.backoff, this.env.random);
        this.attempt++;
        this.setStatus({ state: "reconnecting", error, retryInMs: delay });
        this.timer = this.env.setTimeout(() => {
          this.timer = null;
          if (live()) this.connect();
        }, delay);
      },
    };
    this.setStatus({ state: this.attempt === 0 ? "connecting" : "reconnecting", error: this.status.error });
    this.conn = connectors[this.transport](this.areaV, sink, this.ctx);
  }
}

/**
 * watch streams the dispatchable vehicles around a point. Every event goes to onEvent after
 * handle.vehicles applied it; the first one (and the first after every move or reconnect) is a
 * snapshot replacing the set. The connection is re-established with exponential backoff and jitter
 * when it ends for a reason a retry can cure (WebSocket 1001/1006/1013/4008..., SSE errors, gRPC
 * UNAVAILABLE...); it stops for good on a bad request or failed auth (status "closed" with the
 * error). move() changes the area: in-band on an open WebSocket, by a new request on SSE and
 * gRPC-Web.
 */
export function watch(area: Area, onEvent: EventHandler, opts: WatchOptions = {}): WatchHandle {
  return new Watcher(area, onEvent, opts);
}
