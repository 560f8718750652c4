import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay } from "../client/backoff";

test("backoffDelay doubles the ceiling up to the maximum", () => {
  const ceilings = [0, 1, 2, 3, 4, 5, 6, 7, 8, 100, 5000].map((n) => backoffDelay(n, {}, () => 0));
  assert.deepEqual(ceilings, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000, 30000]);
});

test("backoffDelay jitters within [ceiling*(1-jitter), ceiling]", () => {
  const cases = [
    { opts: {}, attempt: 0, random: 0.999999, want: 250 },
    { opts: {}, attempt: 3, random: 0.5, want: 3000 },
    { opts: { jitter: 0 }, attempt: 3, random: 0.9, want: 4000 },
    { opts: { jitter: 1 }, attempt: 2, random: 0.75, want: 500 },
    { opts: { baseMs: 100, maxMs: 1000, factor: 3 }, attempt: 2, random: 0, want: 900 },
    { opts: { baseMs: 100, maxMs: 1000, factor: 3 }, attempt: 3, random: 0, want: 1000 },
    { opts: {}, attempt: -3, random: 0, want: 500 },
  ];
  for (const c of cases) {
    assert.equal(backoffDelay(c.attempt, c.opts, () => c.random), c.want, JSON.stringify(c));
  }
  for (let attempt = 0; attempt < 12; attempt++) {
    const ceiling = backoffDelay(attempt, {}, () => 0);
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(attempt, {});
      assert.ok(d >= ceiling / 2 && d <= ceiling, `attempt ${attempt}: ${d} outside [${ceiling / 2}, ${ceiling}]`);
    }
  }
});
