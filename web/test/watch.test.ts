import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { RiderEventSchema, RiderService, type RiderEvent, type WatchRequest } from "../client/gen/meshcast/v1/rider_pb";
import { VehicleClass } from "../client/gen/meshcast/v1/telemetry_pb";
import { watch, type Status } from "../client/watch";
import type { MeshcastEvent } from "../client/events";
import { FakeEventSource, FakeTimers, FakeWebSocket, V, fakeEnv } from "./fakes";

const area = { lat: 35.68, lon: 139.76, radiusM: 800, classes: ["premium" as const] };
const snapshot = (seq: number, ...ids: string[]) => `{"seq":"${seq}","snapshot":{"vehicles":[${ids.map((id) => V(id)).join(",")}]}}`;

function collect() {
  const events: MeshcastEvent[] = [];
  const statuses: Status[] = [];
  return { events, statuses, onEvent: (ev: MeshcastEvent) => events.push(ev), onStatus: (s: Status) => statuses.push(s) };
}

test("ws: connects with the query and subprotocol, applies batched frames, moves in-band, closes", () => {
  const timers = new FakeTimers();
  const c = collect();
  const h = watch(area, c.onEvent, { transport: "ws", env: fakeEnv(timers), onStatus: c.onStatus });
  assert.equal(FakeWebSocket.all.length, 1);
  const ws = FakeWebSocket.all[0];
  assert.equal(ws.url, "ws://edge.test:8080/v1/ws?lat=35.68&lon=139.76&radius_m=800&classes=premium");
  assert.equal(ws.protocols, "meshcast.v1.json");
  assert.equal(h.connected, false);
  ws.serverOpen();
  assert.equal(h.connected, true);
  ws.serverSend(`${snapshot(1, "a/1", "a/2")}\n{"seq":"2","upsert":${V("b/1")}}\n{"seq":"3","remove":{"id":"a/1","reason":"REMOVAL_REASON_NOT_VACANT"}}`);
  assert.deepEqual(c.events.map((e) => e.kind), ["snapshot", "upsert", "remove"]);
  assert.deepEqual(h.vehicles.ids(), ["a/2", "b/1"]);

  h.move({ lat: 35.69, lon: 139.7, radiusM: 1200 });
  assert.equal(FakeWebSocket.all.length, 1, "an open WebSocket moves in-band");
  assert.deepEqual(ws.sent.map((s) => JSON.parse(s)), [{ lat: 35.69, lon: 139.7, radiusM: 1200 }]);
  assert.deepEqual(h.area, { lat: 35.69, lon: 139.7, radiusM: 1200 });
  ws.serverSend(snapshot(4, "c/1"));
  assert.deepEqual(h.vehicles.ids(), ["c/1"], "the move's snapshot replaces the set");

  h.close();
  assert.equal(ws.closedWith, 1000);
  assert.equal(h.status.state, "closed");
  assert.equal(timers.pending.size, 0);
  ws.serverSend(snapshot(5, "late/1"));
  assert.equal(c.events.length, 4, "no events after close");
  assert.deepEqual(c.statuses.map((s) => s.state), ["connecting", "open", "closed"]);
});

test("ws: retryable closes reconnect with exponential backoff, reset by a snapshot", () => {
  for (const code of [1001, 1006, 1011, 1013, 4008]) {
    const timers = new FakeTimers();
    const h = watch(area, () => {}, { transport: "ws", env: fakeEnv(timers) });
    FakeWebSocket.all[0].serverOpen();
    FakeWebSocket.all[0].serverSend(snapshot(1, "a/1"));
    FakeWebSocket.all[0].serverClose(code, "bye");
    assert.equal(h.status.state, "reconnecting", `code ${code}`);
    assert.match(h.status.error ?? "", new RegExp(`${code}: bye`));
    assert.deepEqual(timers.delays, [500], `code ${code}`);
    assert.deepEqual(h.vehicles.ids(), ["a/1"], "the set is kept until the next snapshot");
    timers.runAll();
    assert.equal(FakeWebSocket.all.length, 2, `code ${code}`);
    FakeWebSocket.all[1].serverClose(1006); // failed again before any snapshot
    timers.runAll();
    FakeWebSocket.all[2].serverClose(1006);
    timers.runAll();
    assert.deepEqual(timers.delays, [500, 1000, 2000], `code ${code}`);
    FakeWebSocket.all[3].serverOpen();
    FakeWebSocket.all[3].serverSend(snapshot(1, "b/1"));
    assert.deepEqual(h.vehicles.ids(), ["b/1"]);
    FakeWebSocket.all[3].serverClose(1001);
    assert.deepEqual(timers.delays, [500, 1000, 2000, 500], `code ${code}: a snapshot resets the backoff`);
    assert.equal(FakeWebSocket.all[3].url, FakeWebSocket.all[0].url);
    h.close();
    assert.equal(timers.pending.size, 0, "close cancels a pending reconnect");
  }
});

test("ws: permanent closes (policy, protocol) stop without reconnecting", () => {
  for (const code of [1002, 1003, 1007, 1008]) {
    const timers = new FakeTimers();
    const h = watch(area, () => {}, { transport: "ws", env: fakeEnv(timers) });
    FakeWebSocket.all[0].serverClose(code, "bad radius_m");
    assert.equal(h.status.state, "closed", `code ${code}`);
    assert.match(h.status.error ?? "", /bad radius_m/);
    assert.equal(timers.pending.size, 0);
    h.move({ lat: 1, lon: 2 });
    assert.equal(FakeWebSocket.all.length, 1, "a closed watch does not move");
  }
});

test("ws: a move before the socket is open reconnects with the new area", () => {
  const timers = new FakeTimers();
  const h = watch(area, () => {}, { transport: "ws", env: fakeEnv(timers), baseUrl: "https://example.com/rides", accessToken: "tok" });
  assert.equal(FakeWebSocket.all[0].url, "wss://example.com/rides/v1/ws?lat=35.68&lon=139.76&radius_m=800&classes=premium&access_token=tok");
  h.move({ lat: 35.7, lon: 139.8 });
  assert.equal(FakeWebSocket.all[0].closedWith, 1000);
  assert.equal(FakeWebSocket.all.length, 2);
  assert.equal(FakeWebSocket.all[1].url, "wss://example.com/rides/v1/ws?lat=35.7&lon=139.8&access_token=tok");
  FakeWebSocket.all[0].serverClose(1006); // the old socket's late close is ignored
  assert.equal(timers.pending.size, 0);
  h.close();
});

test("ws: a frame that does not decode drops the connection and retries", () => {
  for (const bad of ["{nope", new Uint8Array([1, 2])]) {
    const timers = new FakeTimers();
    const h = watch(area, () => {}, { transport: "ws", env: fakeEnv(timers) });
    FakeWebSocket.all[0].serverOpen();
    FakeWebSocket.all[0].serverSend(bad);
    assert.equal(FakeWebSocket.all[0].readyState, 3);
    assert.equal(h.status.state, "reconnecting");
    assert.deepEqual(timers.delays, [500]);
    h.close();
  }
});

test("ws: an exception in onEvent is reported and does not break the stream", () => {
  const timers = new FakeTimers();
  const seen: number[] = [];
  const reported: unknown[] = [];
  const h = watch(
    area,
    (ev) => {
      seen.push(ev.seq);
      if (ev.seq === 1) throw new Error("page bug");
    },
    { transport: "ws", env: { ...fakeEnv(timers), reportError: (e) => reported.push(e) } },
  );
  FakeWebSocket.all[0].serverOpen();
  FakeWebSocket.all[0].serverSend(`${snapshot(1, "a/1")}\n{"seq":"2","upsert":${V("a/2")}}`);
  assert.deepEqual(seen, [1, 2]);
  assert.deepEqual(h.vehicles.ids(), ["a/1", "a/2"]);
  assert.equal((reported[0] as Error)?.message, "page bug");
  assert.equal(h.connected, true);
  h.close();
});

test("sse: named events, the browser's own retry once, then backoff", () => {
  const timers = new FakeTimers();
  const c = collect();
  const h = watch(area, c.onEvent, { transport: "sse", env: fakeEnv(timers), onStatus: c.onStatus, accessToken: "tok" });
  const es = FakeEventSource.all[0];
  assert.equal(es.url, "http://edge.test:8080/v1/sse?lat=35.68&lon=139.76&radius_m=800&classes=premium&access_token=tok");
  es.serverOpen();
  es.serverEvent("snapshot", snapshot(1, "a/1", "a/2"));
  es.serverEvent("upsert", `{"seq":"2","upsert":${V("a/3")}}`);
  es.serverEvent("remove", `{"seq":"3","remove":{"id":"a/2","reason":"REMOVAL_REASON_LEFT_AREA"}}`);
  es.serverEvent("heartbeat", `{"seq":"4","heartbeat":{"serverTimeMs":"5"}}`);
  assert.deepEqual(c.events.map((e) => `${e.kind}:${e.seq}`), ["snapshot:1", "upsert:2", "remove:3", "heartbeat:4"]);
  assert.deepEqual(h.vehicles.ids(), ["a/1", "a/3"]);

  es.lose(); // stream interrupted: the browser retries with Last-Event-ID
  assert.equal(h.status.state, "reconnecting");
  assert.equal(FakeEventSource.all.length, 1);
  assert.equal(es.closed, false);
  assert.equal(timers.pending.size, 0);
  es.serverOpen();
  es.serverEvent("snapshot", snapshot(5, "a/3"));
  assert.equal(h.status.state, "open");
  assert.deepEqual(h.vehicles.ids(), ["a/3"]);

  es.lose();
  es.lose(); // the browser's retry failed too: we take over
  assert.equal(es.closed, true);
  assert.deepEqual(timers.delays, [500]);
  timers.runAll();
  assert.equal(FakeEventSource.all.length, 2);
  FakeEventSource.all[1].fail(); // e.g. HTTP 503
  assert.deepEqual(timers.delays, [500, 1000]);
  timers.runAll();
  assert.equal(FakeEventSource.all.length, 3);
  h.close();
  assert.equal(FakeEventSource.all[2].closed, true);
  assert.deepEqual(c.statuses.map((s) => s.state), ["connecting", "open", "reconnecting", "open", "reconnecting", "reconnecting", "reconnecting", "reconnecting", "reconnecting", "closed"]);
});

test("sse: move opens a new stream with the new query; bad data retries", () => {
  const timers = new FakeTimers();
  const h = watch(area, () => {}, { transport: "sse", env: fakeEnv(timers) });
  FakeEventSource.all[0].serverOpen();
  h.move({ lat: 35.6, lon: 139.9, maxVehicles: 10 });
  assert.equal(FakeEventSource.all[0].closed, true);
  assert.equal(FakeEventSource.all[1].url, "http://edge.test:8080/v1/sse?lat=35.6&lon=139.9&max_vehicles=10");
  FakeEventSource.all[0].serverEvent("snapshot", snapshot(1, "old/1"));
  assert.equal(h.vehicles.size, 0, "events of the old stream are ignored");
  FakeEventSource.all[1].serverOpen();
  FakeEventSource.all[1].serverEvent("upsert", snapshot(1, "x/1")); // name and kind disagree
  assert.equal(FakeEventSource.all[1].closed, true);
  assert.deepEqual(timers.delays, [500]);
  h.close();
});

// A scripted gRPC-Web server: each call runs the next script with the request.
type Script = (req: WatchRequest, ctx: { signal: AbortSignal; auth: string | null }) => AsyncIterable<RiderEvent>;
function grpcServer(scripts: Script[]) {
  const calls: { req: WatchRequest; signal: AbortSignal; auth: string | null }[] = [];
  const transport = createRouterTransport(({ service }) => {
    service(RiderService, {
      watch(req, ctx) {
        const call = { req, signal: ctx.signal, auth: ctx.requestHeader.get("authorization") };
        calls.push(call);
        const s = scripts.shift();
        if (!s) throw new ConnectError("no more scripts", Code.Internal);
        return s(req, call);
      },
    });
  });
  return { transport, calls };
}
const ev = (seq: number, kind: RiderEvent["kind"]) => create(RiderEventSchema, { seq: BigInt(seq), kind });
const pbSnapshot = (seq: number, ...ids: string[]) =>
  ev(seq, { case: "snapshot", value: { vehicles: ids.map((id) => ({ id, lat: 35.68, lon: 139.76, class: VehicleClass.VAN })) } as never });
const aborted = (signal: AbortSignal) => new Promise<void>((r) => signal.addEventListener("abort", () => r()));

async function until(cond: () => boolean, what: string) {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test("grpc-web: streams Watch, sends the bearer token, reconnects on UNAVAILABLE and a clean end", async () => {
  const timers = new FakeTimers();
  const c = collect();
  const srv = grpcServer([
    async function* (req) {
      yield pbSnapshot(1, "a/1", "a/2");
      yield ev(2, { case: "upsert", value: { id: "a/3", class: VehicleClass.PREMIUM } as never });
      yield ev(3, { case: "remove", value: { id: "a/1" } as never });
      void req;
      throw new ConnectError("draining", Code.Unavailable);
    },
    async function* () {
      yield pbSnapshot(1, "b/1");
    },
    async function* (_req, ctx) {
      yield pbSnapshot(1, "c/1");
      await aborted(ctx.signal);
    },
  ]);
  const h = watch(area, c.onEvent, { transport: "grpc-web", env: { ...fakeEnv(timers), grpcTransport: srv.transport }, accessToken: "tok", onStatus: c.onStatus });
  await until(() => h.status.state === "reconnecting", "the first stream to end");
  assert.equal(srv.calls[0].req.radiusM, 800);
  assert.deepEqual(srv.calls[0].req.classes, [VehicleClass.PREMIUM]);
  assert.equal(srv.calls[0].auth, "Bearer tok");
  assert.deepEqual(c.events.map((e) => `${e.kind}:${e.seq}`), ["snapshot:1", "upsert:2", "remove:3"]);
  assert.deepEqual(h.vehicles.ids(), ["a/2", "a/3"]);
  assert.equal(h.vehicles.get("a/3")?.class, "premium");
  assert.match(h.status.error ?? "", /Unavailable: draining/);
  assert.deepEqual(timers.delays, [500]);

  timers.runAll();
  await until(() => timers.delays.length === 2, "the second stream to end");
  assert.match(h.status.error ?? "", /stream ended/);
  assert.deepEqual(h.vehicles.ids(), ["b/1"]);
  assert.deepEqual(timers.delays, [500, 500], "the snapshot reset the backoff");

  timers.runAll();
  await until(() => h.vehicles.has("c/1"), "the third stream's snapshot");
  assert.equal(h.connected, true);
  h.close();
  await until(() => srv.calls[2].signal.aborted, "close to cancel the call");
  assert.equal(h.status.state, "closed");
  assert.equal(timers.pending.size, 0);
});

test("grpc-web: move cancels the call and calls again; INVALID_ARGUMENT stops", async () => {
  const timers = new FakeTimers();
  const srv = grpcServer([
    async function* (_req, ctx) {
      yield pbSnapshot(1, "a/1");
      await aborted(ctx.signal);
    },
    async function* () {
      yield pbSnapshot(1, "b/1");
      throw new ConnectError("radius_m 9000 over 3000", Code.InvalidArgument);
    },
  ]);
  const h = watch(area, () => {}, { transport: "grpc-web", env: { ...fakeEnv(timers), grpcTransport: srv.transport } });
  await until(() => h.vehicles.has("a/1"), "the first snapshot");
  h.move({ lat: 35.7, lon: 139.7, radiusM: 9000 });
  await until(() => h.status.state === "closed", "the second call to fail");
  assert.equal(srv.calls[0].signal.aborted, true, "move cancels the first call");
  assert.equal(srv.calls[1].req.lat, 35.7);
  assert.equal(srv.calls[1].req.radiusM, 9000);
  assert.match(h.status.error ?? "", /InvalidArgument: radius_m 9000 over 3000/);
  assert.equal(timers.pending.size, 0, "no retry after INVALID_ARGUMENT");
  assert.equal(srv.calls.length, 2);
});
