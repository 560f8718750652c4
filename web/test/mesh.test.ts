import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { cellBounds, cellCode, cellOf, cellsInBounds, distanceM, gridAround, meshCode, parseMeshCode } from "../client/mesh";

interface Case {
  name: string;
  lat: number;
  lon: number;
  radiusM: number;
  code: string;
  cover: string[];
}
// Written by web_test.go (TestMeshFixture) from core/mesh, the server's implementation.
declare const __WEB_DIR__: string; // defined by test.mjs
const fixture: Case[] = JSON.parse(readFileSync(`${__WEB_DIR__}/test/testdata/mesh.json`, "utf8"));

test("meshCode gives known third-order codes", () => {
  assert.equal(meshCode(35.681236, 139.767125), "53394611"); // Tokyo Station
  const cases: [number, number, string][] = [
    [35.675, 139.7625, "53394611"], // the south-west corner belongs to the cell
    [35.675 - 1e-7, 139.7625, "53394601"],
    [35 + 41 / 60, 139.775, "53394622"], // on an edge up to float rounding: snapped like the server
    [20 / 3, 100, "10000000"],
    [35.681236, 99.5, ""],
    [70, 139, ""],
    [NaN, 139, ""],
  ];
  for (const [lat, lon, want] of cases) assert.equal(meshCode(lat, lon), want, `${lat},${lon}`);
  for (const c of fixture) assert.equal(meshCode(c.lat, c.lon), c.code, c.name);
});

test("parseMeshCode inverts meshCode and cellBounds holds the point", () => {
  for (const c of fixture) {
    const cell = parseMeshCode(c.code);
    assert.deepEqual(cell, cellOf(c.lat, c.lon), c.name);
    const b = cellBounds(cell!);
    assert.ok(b.south <= c.lat && c.lat < b.north && b.west <= c.lon && c.lon < b.east, c.name);
    assert.ok(Math.abs(b.north - b.south - 30 / 3600) < 1e-12 && Math.abs(b.east - b.west - 45 / 3600) < 1e-12, c.name);
  }
  for (const bad of ["5339461", "533946111", "5339461x", "53398611", "53394811", "09394611", "53804611"]) {
    assert.equal(parseMeshCode(bad), null, bad);
  }
});

test("gridAround covers the same meshes as the server (core/mesh.Cover)", () => {
  for (const c of fixture) {
    const covered = gridAround(c.lat, c.lon, c.radiusM)
      .filter((g) => g.covered)
      .map((g) => g.code);
    assert.deepEqual(covered, c.cover, c.name);
  }
});

test("gridAround marks the centre cell and adds a margin of uncovered cells", () => {
  const g = gridAround(35.681236, 139.767125, 1000, 1500);
  assert.deepEqual(
    g.filter((c) => c.centre).map((c) => c.code),
    ["53394611"],
  );
  assert.ok(g.length > 9 && g.some((c) => !c.covered));
  for (const c of g) {
    const nearest = distanceM(35.681236, 139.767125, Math.min(Math.max(35.681236, c.south), c.north), Math.min(Math.max(139.767125, c.west), c.east));
    assert.equal(c.covered, nearest <= 1000, c.code);
    assert.ok(nearest <= 2500, c.code);
  }
  assert.deepEqual(gridAround(10, 10, 1000), []);
});

test("distanceM matches known distances", () => {
  assert.equal(distanceM(35.681236, 139.767125, 35.681236, 139.767125), 0);
  const tokyoShinjuku = distanceM(35.681236, 139.767125, 35.690921, 139.700258);
  assert.ok(Math.abs(tokyoShinjuku - 6120) < 30, String(tokyoShinjuku));
});

test("cellsInBounds lists the cells of a rectangle, or null over the cap", () => {
  const b = cellBounds(parseMeshCode("53394611")!);
  const inner = { south: b.south + 1e-4, west: b.west + 1e-4, north: b.north - 1e-4, east: b.east - 1e-4 };
  assert.deepEqual(cellsInBounds(inner)!.map(cellCode), ["53394611"]);
  const wide = { south: b.south - 1e-4, west: b.west - 1e-4, north: b.north + 1e-4, east: b.east + 1e-4 };
  assert.deepEqual(cellsInBounds(wide)!.map(cellCode), ["53394600", "53394601", "53394602", "53394610", "53394611", "53394612", "53394620", "53394621", "53394622"]);
  assert.equal(cellsInBounds(wide, 8), null);
  assert.deepEqual(cellsInBounds({ south: 0, west: 0, north: 1, east: 1 }), []);
});
