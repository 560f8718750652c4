import { test } from "node:test";
import assert from "node:assert/strict";
import { VehicleSet, type Change } from "../client/state";
import type { MeshcastEvent, Vehicle } from "../client/events";

function veh(id: string, lat = 35.68): Vehicle {
  return { id, fleet: id.split("/")[0], lat, lon: 139.76, headingDeg: 0, speedKmh: 0, class: "standard", mesh: "53394611", observedAtMs: 1, distanceM: 0 };
}
const snap = (seq: number, ...ids: string[]): MeshcastEvent => ({ kind: "snapshot", seq, vehicles: ids.map((id) => veh(id)) });
const up = (seq: number, id: string, lat = 35.7): MeshcastEvent => ({ kind: "upsert", seq, vehicle: veh(id, lat) });
const rm = (seq: number, id: string): MeshcastEvent => ({ kind: "remove", seq, id, reason: "left_area" });
const hb = (seq: number): MeshcastEvent => ({ kind: "heartbeat", seq, serverTimeMs: 5 });

const ids = (c: Change) => ({ added: c.added.map((v) => v.id), updated: c.updated.map((v) => v.id), removed: c.removed });

test("VehicleSet applies events in order", () => {
  const cases: { name: string; events: MeshcastEvent[]; set: string[]; last: ReturnType<typeof ids> }[] = [
    { name: "snapshot fills", events: [snap(1, "a/1", "a/2")], set: ["a/1", "a/2"], last: { added: ["a/1", "a/2"], updated: [], removed: [] } },
    { name: "empty snapshot", events: [snap(1)], set: [], last: { added: [], updated: [], removed: [] } },
    { name: "upsert adds", events: [snap(1, "a/1"), up(2, "b/1")], set: ["a/1", "b/1"], last: { added: ["b/1"], updated: [], removed: [] } },
    { name: "upsert moves", events: [snap(1, "a/1"), up(2, "a/1")], set: ["a/1"], last: { added: [], updated: ["a/1"], removed: [] } },
    { name: "remove deletes", events: [snap(1, "a/1", "a/2"), rm(2, "a/1")], set: ["a/2"], last: { added: [], updated: [], removed: ["a/1"] } },
    { name: "remove of unknown id changes nothing", events: [snap(1, "a/1"), rm(2, "z/9")], set: ["a/1"], last: { added: [], updated: [], removed: [] } },
    { name: "heartbeat changes nothing", events: [snap(1, "a/1"), hb(2)], set: ["a/1"], last: { added: [], updated: [], removed: [] } },
    {
      name: "second snapshot replaces the set",
      events: [snap(1, "a/1", "a/2"), up(2, "a/3"), snap(3, "a/2", "b/1")],
      set: ["a/2", "b/1"],
      last: { added: ["b/1"], updated: ["a/2"], removed: ["a/1", "a/3"] },
    },
    { name: "upsert after remove re-adds", events: [snap(1, "a/1"), rm(2, "a/1"), up(3, "a/1")], set: ["a/1"], last: { added: ["a/1"], updated: [], removed: [] } },
    { name: "duplicate id in a snapshot counts once", events: [snap(1, "a/1", "a/1")], set: ["a/1"], last: { added: ["a/1"], updated: [], removed: [] } },
  ];
  for (const c of cases) {
    const s = new VehicleSet();
    let last!: Change;
    for (const ev of c.events) last = s.apply(ev);
    assert.deepEqual(s.ids(), c.set, c.name);
    assert.equal(s.size, c.set.length, c.name);
    assert.deepEqual(ids(last), c.last, c.name);
  }
});

test("VehicleSet keeps the latest position of each vehicle", () => {
  const s = new VehicleSet();
  s.apply(snap(1, "a/1"));
  s.apply(up(2, "a/1", 35.9));
  assert.equal(s.get("a/1")?.lat, 35.9);
  assert.equal(s.has("a/1"), true);
  assert.deepEqual(s.clear(), ["a/1"]);
  assert.equal(s.size, 0);
});
