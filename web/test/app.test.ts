import { test } from "node:test";
import assert from "node:assert/strict";
import { formatParams, parseParams } from "../app/params";
import { SlidingWindow, easeOutCubic, formatMs, nextAngle } from "../app/stats";

test("parseParams reads the page query with defaults and bounds", () => {
  const tokyo = { lat: 35.681236, lon: 139.767125 };
  const cases: { q: string; want: object }[] = [
    { q: "", want: { transport: "ws", ...tokyo, radiusM: 1000, classes: [] } },
    { q: "?transport=sse&lat=35.69&lon=139.70&radius=1500", want: { transport: "sse", lat: 35.69, lon: 139.7, radiusM: 1500, classes: [] } },
    { q: "?transport=grpc-web", want: { transport: "grpc-web", ...tokyo, radiusM: 1000, classes: [] } },
    { q: "?transport=carrier-pigeon&radius=abc", want: { transport: "ws", ...tokyo, radiusM: 1000, classes: [] } },
    { q: "?radius=50000", want: { transport: "ws", ...tokyo, radiusM: 3000, classes: [] } },
    { q: "?radius=10", want: { transport: "ws", ...tokyo, radiusM: 100, classes: [] } },
    { q: "?lat=48.85&lon=2.35", want: { transport: "ws", ...tokyo, radiusM: 1000, classes: [] } },
    { q: "?lat=35.7", want: { transport: "ws", ...tokyo, radiusM: 1000, classes: [] } },
    { q: "?classes=Premium,van,limo,van", want: { transport: "ws", ...tokyo, radiusM: 1000, classes: ["premium", "van"] } },
    { q: "?api=https://edge.example.com&token=abc", want: { transport: "ws", ...tokyo, radiusM: 1000, classes: [], api: "https://edge.example.com", token: "abc" } },
  ];
  for (const c of cases) assert.deepEqual(parseParams(c.q), c.want, c.q);
});

test("formatParams round-trips through parseParams", () => {
  const p = { transport: "sse" as const, lat: 35.6938, lon: 139.7536, radiusM: 800, classes: ["van" as const], api: "http://x:1", token: "t" };
  assert.equal(formatParams(p), "?transport=sse&lat=35.693800&lon=139.753600&radius=800&classes=van&api=http%3A%2F%2Fx%3A1&token=t");
  assert.deepEqual(parseParams(formatParams(p)), p);
});

test("SlidingWindow counts and ranks the samples of the last span", () => {
  const w = new SlidingWindow(1000);
  assert.equal(w.count(0), 0);
  assert.ok(Number.isNaN(w.quantile(0, 0.5)));
  for (let i = 1; i <= 10; i++) w.add(i * 100, i * 10); // t=100..1000, values 10..100
  assert.equal(w.count(1000), 10);
  assert.equal(w.perSecond(1000), 10);
  assert.equal(w.quantile(1000, 0.5), 50);
  assert.equal(w.quantile(1000, 0.95), 100);
  assert.equal(w.quantile(1000, 0), 10);
  assert.equal(w.count(1500), 5, "samples at or before now-span leave the window");
  assert.equal(w.quantile(1500, 0.5), 80);
  assert.equal(w.count(5000), 0);
  // Many samples: the window compacts and stays correct.
  for (let i = 0; i < 5000; i++) w.add(10000 + i, i);
  assert.equal(w.count(14999), 1000);
  assert.equal(w.quantile(14999, 1), 4999);
});

test("nextAngle turns the short way", () => {
  const cases: [number, number, number][] = [
    [0, 90, 90],
    [350, 10, 370],
    [10, 350, -10],
    [720, 0, 720],
    [90, 270, -90], // a half turn goes either way; backwards here
    [-30, 200, -160],
  ];
  for (const [prev, h, want] of cases) assert.equal(nextAngle(prev, h), want, `${prev} -> ${h}`);
});

test("easeOutCubic and formatMs", () => {
  assert.equal(easeOutCubic(0), 0);
  assert.equal(easeOutCubic(1), 1);
  assert.equal(easeOutCubic(2), 1);
  assert.ok(easeOutCubic(0.5) > 0.5);
  assert.equal(formatMs(NaN), "–");
  assert.equal(formatMs(123.4), "123 ms");
  assert.equal(formatMs(12345), "12.3 s");
});
