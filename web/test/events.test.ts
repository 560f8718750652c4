import { test } from "node:test";
import assert from "node:assert/strict";
import {
  parseEventJSON,
  parseSSEData,
  parseWSFrame,
  watchQuery,
  watchRequestJSON,
  type MeshcastEvent,
} from "../client/events";

// A vehicle as the edge writes it (protojson: lowerCamelCase, enum names, int64 as a string).
const vJSON =
  '{"id":"acme/t1","fleet":"acme","lat":35.68,"lon":139.76,"headingDeg":90,"speedKmh":12.5,' +
  '"class":"VEHICLE_CLASS_PREMIUM","mesh":"53394611","observedAtMs":"1732260000123","distanceM":42}';
const v = {
  id: "acme/t1",
  fleet: "acme",
  lat: 35.68,
  lon: 139.76,
  headingDeg: 90,
  speedKmh: 12.5,
  class: "premium",
  mesh: "53394611",
  observedAtMs: 1732260000123,
  distanceM: 42,
};
const vZero = { id: "a/b", fleet: "", lat: 0, lon: 0, headingDeg: 0, speedKmh: 0, class: "standard", mesh: "", observedAtMs: 0, distanceM: 0 };

test("parseEventJSON decodes each kind into the one event shape", () => {
  const cases: { name: string; json: string; want: MeshcastEvent | null }[] = [
    { name: "snapshot", json: `{"seq":"1","snapshot":{"vehicles":[${vJSON}]}}`, want: { kind: "snapshot", seq: 1, vehicles: [v] } as MeshcastEvent },
    { name: "empty snapshot", json: `{"seq":"1","snapshot":{}}`, want: { kind: "snapshot", seq: 1, vehicles: [] } },
    { name: "upsert", json: `{"seq":"2","upsert":${vJSON}}`, want: { kind: "upsert", seq: 2, vehicle: v } as MeshcastEvent },
    { name: "upsert with defaults omitted", json: `{"seq":"3","upsert":{"id":"a/b"}}`, want: { kind: "upsert", seq: 3, vehicle: vZero } as MeshcastEvent },
    { name: "remove", json: `{"seq":"4","remove":{"id":"acme/t1","reason":"REMOVAL_REASON_NOT_VACANT"}}`, want: { kind: "remove", seq: 4, id: "acme/t1", reason: "not_vacant" } },
    { name: "remove, enum as number", json: `{"seq":5,"remove":{"id":"x","reason":5}}`, want: { kind: "remove", seq: 5, id: "x", reason: "stale" } },
    { name: "remove, reason from a newer server", json: `{"seq":"6","remove":{"id":"x","reason":"REMOVAL_REASON_NEW"}}`, want: { kind: "remove", seq: 6, id: "x", reason: "unspecified" } },
    { name: "remove, no reason", json: `{"seq":"6","remove":{"id":"x"}}`, want: { kind: "remove", seq: 6, id: "x", reason: "unspecified" } },
    { name: "heartbeat", json: `{"seq":"7","heartbeat":{"serverTimeMs":"1732260000999"}}`, want: { kind: "heartbeat", seq: 7, serverTimeMs: 1732260000999 } },
    { name: "class numbers and unspecified", json: `{"seq":"8","upsert":{"id":"a/b","class":3}}`, want: { kind: "upsert", seq: 8, vehicle: { ...vZero, class: "van" } } as MeshcastEvent },
    { name: "unknown fields are ignored", json: `{"seq":"9","future":1,"upsert":{"id":"a/b","color":"red"}}`, want: { kind: "upsert", seq: 9, vehicle: vZero } as MeshcastEvent },
    { name: "unknown kind is null", json: `{"seq":"10","somethingNew":{}}`, want: null },
  ];
  for (const c of cases) {
    assert.deepEqual(parseEventJSON(c.json), c.want, c.name);
  }
});

test("parseEventJSON rejects what is not a RiderEvent", () => {
  for (const bad of ["", "{", "not json", '{"seq":"x"}', '{"seq":"1","upsert":{"lat":"north"}}', '[1]', 'null']) {
    assert.throws(() => parseEventJSON(bad), Error, JSON.stringify(bad));
  }
});

test("parseWSFrame splits batched events on newlines", () => {
  const frame = `{"seq":"1","snapshot":{}}\n{"seq":"2","upsert":${vJSON}}\r\n\n{"seq":"3","remove":{"id":"acme/t1","reason":"REMOVAL_REASON_LEFT_AREA"}}\n`;
  const evs = parseWSFrame(frame);
  assert.deepEqual(
    evs.map((e) => [e.kind, e.seq]),
    [
      ["snapshot", 1],
      ["upsert", 2],
      ["remove", 3],
    ],
  );
  assert.deepEqual(parseWSFrame(`{"seq":"1","heartbeat":{}}`), [{ kind: "heartbeat", seq: 1, serverTimeMs: 0 }]);
  assert.deepEqual(parseWSFrame("\n"), []);
  assert.throws(() => parseWSFrame(`{"seq":"1","snapshot":{}}\n{broken`));
});

test("parseSSEData checks the event name against the kind", () => {
  assert.deepEqual(parseSSEData("remove", '{"seq":"12","remove":{"id":"f/v","reason":"REMOVAL_REASON_STALE"}}'), {
    kind: "remove",
    seq: 12,
    id: "f/v",
    reason: "stale",
  });
  assert.throws(() => parseSSEData("upsert", '{"seq":"12","remove":{"id":"f/v"}}'), /holds a remove/);
  assert.equal(parseSSEData("future", '{"seq":"13","future":{}}'), null);
});

test("watchRequestJSON writes protojson (lowerCamelCase, prefixed enum names, defaults omitted)", () => {
  assert.deepEqual(JSON.parse(watchRequestJSON({ lat: 35.5, lon: 139.5 })), { lat: 35.5, lon: 139.5 });
  assert.deepEqual(
    JSON.parse(watchRequestJSON({ lat: 35.5, lon: 139.5, radiusM: 1500.4, classes: ["premium", "van"], maxVehicles: 20, minIntervalMs: 1000 })),
    { lat: 35.5, lon: 139.5, radiusM: 1500, classes: ["VEHICLE_CLASS_PREMIUM", "VEHICLE_CLASS_VAN"], maxVehicles: 20, minIntervalMs: 1000 },
  );
});

test("watchQuery uses the snake_case query of /v1/ws and /v1/sse", () => {
  assert.equal(watchQuery({ lat: 35.5, lon: 139.5 }), "lat=35.5&lon=139.5");
  assert.equal(
    watchQuery({ lat: 35.5, lon: 139.5, radiusM: 800, classes: ["standard", "accessible"], maxVehicles: 5, minIntervalMs: 2000 }, "t.o.k"),
    "lat=35.5&lon=139.5&radius_m=800&classes=standard%2Caccessible&max_vehicles=5&min_interval_ms=2000&access_token=t.o.k",
  );
});

// Outside input: frames cut, spliced and byte-flipped at random (seeded) either decode into
// well-formed events or throw an Error; nothing else escapes.
test("parseWSFrame on mangled frames: well-formed events or an Error", () => {
  const seeds = [
    `{"seq":"1","snapshot":{"vehicles":[${vJSON},${vJSON}]}}`,
    `{"seq":"2","upsert":${vJSON}}\n{"seq":"3","remove":{"id":"acme/t1","reason":"REMOVAL_REASON_STALE"}}`,
    `{"seq":"4","heartbeat":{"serverTimeMs":"1732260000999"}}`,
  ];
  let s = 0x9e3779b9;
  const rnd = (n: number) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
  const alphabet = '{}[]":,0123456789.-eE \\nabtrufls"';
  let decoded = 0;
  for (let i = 0; i < 3000; i++) {
    let f = seeds[rnd(seeds.length)];
    for (let k = 0, n = 1 + rnd(3); k < n; k++) {
      const at = rnd(f.length + 1);
      switch (rnd(4)) {
        case 0:
          f = f.slice(0, at) + alphabet[rnd(alphabet.length)] + f.slice(at + 1);
          break;
        case 1:
          f = f.slice(0, at) + f.slice(at + 1 + rnd(8));
          break;
        case 2:
          f = f.slice(0, at) + "\n" + f.slice(at);
          break;
        default:
          f = f.slice(0, at) + seeds[rnd(seeds.length)].slice(rnd(40)) + f.slice(at);
      }
    }
    let evs;
    try {
      evs = parseWSFrame(f);
    } catch (e) {
      assert.ok(e instanceof Error, `non-Error thrown for ${JSON.stringify(f)}`);
      continue;
    }
    decoded++;
    for (const ev of evs) {
      assert.ok(Number.isFinite(ev.seq) && ev.seq >= 0, JSON.stringify(f));
      const vs = ev.kind === "snapshot" ? ev.vehicles : ev.kind === "upsert" ? [ev.vehicle] : [];
      for (const v of vs) {
        assert.equal(typeof v.id, "string");
        assert.ok(Number.isFinite(v.lat) && Number.isFinite(v.lon) && Number.isFinite(v.observedAtMs), JSON.stringify(f));
        assert.ok(["standard", "premium", "van", "accessible"].includes(v.class));
      }
    }
  }
  assert.ok(decoded > 0, "some mangled frames still decode");
});
