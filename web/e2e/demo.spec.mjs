// End-to-end test of the map page served by a running `meshcast demo`, in headless Debian
// Chromium through playwright-core. Driven by TestBrowserDemo (demo_browser_test.go at the
// repository root), which starts the demo, runs this script and publishes over real MQTT for it:
//
//   node e2e/demo.spec.mjs --url http://localhost:PORT/ --out shot.png [--chromium /usr/bin/chromium]
//        [--profile EMPTY_DIR]
//
// On each browser transport (ws, sse, grpc-web, chosen with ?transport=) it checks that:
//   1. the page connects and taxis appear: window.meshcast.vehicles() is not empty and there is one
//      [data-vehicle-id] marker per vehicle;
//   2. taxis move: a vehicle's position in the client's set, and its marker on screen, change;
//   3. a taxi switched to occupied disappears within 2 s: the script asks its driver to publish an
//      occupied fix for a vehicle it shows, on stdout
//        occupy <id> <lat> <lon>
//      and the driver answers on stdin, once the broker acknowledged it (QoS 1),
//        published <Unix ms taken just before publishing>
//      then the id must be gone from vehicles() and from the DOM no later than 2000 ms after that
//      time, as timed by the page itself (a MutationObserver; the same clock: the browser runs on
//      the driver's machine). A taxi that left before the fix was sent is not a measurement:
//      another one is tried;
//   4. moving the rider (moveTo) to Shinjuku replaces the set: no vehicle farther than the radius
//      from the new centre remains, and vehicles around the new centre are shown.
// Then it writes a screenshot of the page around Tokyo Station to --out. Every wait is a
// condition polled in the page with a deadline. Other stdout lines are "ok ..."/"FAIL ..." log
// lines; the exit status is 0 only when every check passed and the page logged no error.

import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const arg = (k, d) => {
  const i = process.argv.indexOf(k);
  return i > 0 ? process.argv[i + 1] : d;
};
const base = arg("--url", "");
const out = arg("--out", "");
if (!base || !out) {
  console.error("usage: node e2e/demo.spec.mjs --url URL --out PNG [--chromium PATH] [--profile DIR]");
  process.exit(2);
}
const url = base.endsWith("/") ? base : base + "/";

const RADIUS_M = 3000; // the page's default is 1000, its maximum 3000: a wider area shows more taxis
const SHINJUKU = { lat: 35.69, lon: 139.7 };
const GONE_WITHIN_MS = 2000; // the product requirement for an occupied taxi
const WAIT_MS = 15000; // deadline of every other wait (a loaded 2-core machine)

const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
let failed = false;
const errors = [];

function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failed = true;
  return ok;
}

/** Waits for fn (run in the page) to return a truthy value and returns it; throws with what. */
async function until(page, what, fn, arg, opts = {}) {
  try {
    const h = await page.waitForFunction(fn, arg, { timeout: WAIT_MS, polling: 50, ...opts });
    return await h.jsonValue();
  } catch (e) {
    throw new Error(`${what}: ${e.message.split("\n")[0]}`);
  }
}

// Installed in every page: whether the markers in the DOM are exactly the client's set.
function installHelpers() {
  window.e2eMarkersMatchSet = () => {
    const dom = [...document.querySelectorAll("[data-vehicle-id]")].map((e) => e.dataset.vehicleId).sort();
    const set = window.meshcast.vehicles();
    return dom.length === set.length && dom.every((id, i) => id === set[i]);
  };
}

async function appear(page, t) {
  await page.goto(`${url}?transport=${t}&radius=${RADIUS_M}`);
  const n = await until(
    page,
    `${t}: taxis appear`,
    () => {
      const m = window.meshcast;
      if (!m?.connected || m.transport !== document.body.dataset.transport) return false;
      const n = m.vehicles().length;
      return n > 0 && window.e2eMarkersMatchSet() && n;
    },
  );
  check(true, `${t}: connected, ${n} taxis in the set, one marker each`);
  check(await page.evaluate(() => Number(document.body.dataset.zones) > 0), `${t}: zones drawn`);
}

async function move(page, t) {
  const before = await page.evaluate(() =>
    Object.fromEntries(
      window.meshcast.vehicles().map((id) => {
        const v = window.meshcast.vehicle(id);
        const el = document.querySelector(`[data-vehicle-id="${CSS.escape(id)}"]`);
        return [id, { lat: v.lat, lon: v.lon, transform: el?.style.transform ?? "" }];
      }),
    ),
  );
  const moved = await until(
    page,
    `${t}: taxis move`,
    (before) => {
      for (const id of window.meshcast.vehicles()) {
        const b = before[id];
        const v = window.meshcast.vehicle(id);
        const el = document.querySelector(`[data-vehicle-id="${CSS.escape(id)}"]`);
        if (b && v && el && (v.lat !== b.lat || v.lon !== b.lon) && el.style.transform !== b.transform) {
          return `${id} (${b.lat.toFixed(5)},${b.lon.toFixed(5)} -> ${v.lat.toFixed(5)},${v.lon.toFixed(5)})`;
        }
      }
      return false;
    },
    before,
  );
  check(true, `${t}: a taxi moved in the set and on screen: ${moved}`);
}

async function occupy(page, t) {
  for (let attempt = 1; attempt <= 3; attempt++) {
    // The most recently reported taxi: the simulator's next fix for it is the furthest away.
    const v = await page.evaluate(() => {
      const m = window.meshcast;
      const vs = m.vehicles().map((id) => m.vehicle(id));
      vs.sort((a, b) => b.observedAtMs - a.observedAtMs);
      return vs[0] && { id: vs[0].id, lat: vs[0].lat, lon: vs[0].lon };
    });
    if (!check(!!v, `${t}: a taxi to switch to occupied`)) return;
    // The page notes when the taxi is gone from the set and the map: a MutationObserver runs right
    // after the event handler removed the marker (an interval backs it up), so the time measured
    // is the system's, not this script's polling.
    await page.evaluate((id) => {
      window.e2eGoneAt = 0;
      const gone = () => !window.meshcast.vehicles().includes(id) && !document.querySelector(`[data-vehicle-id="${CSS.escape(id)}"]`);
      const look = () => {
        if (window.e2eGoneAt || !gone()) return;
        window.e2eGoneAt = Date.now();
        obs.disconnect();
        clearInterval(iv);
      };
      const obs = new MutationObserver(look);
      obs.observe(document.body, { childList: true, subtree: true });
      const iv = setInterval(look, 20);
      look();
    }, v.id);
    console.log(`occupy ${v.id} ${v.lat} ${v.lon}`);
    const { value: line, done } = await stdin.next();
    const m = /^published (\d+)$/.exec(line ?? "");
    if (done || !m) throw new Error(`${t}: the driver did not publish the occupied fix: ${JSON.stringify(line)}`);
    const sent = Number(m[1]);
    const goneAt = await until(page, `${t}: occupied ${v.id} disappears`, () => window.e2eGoneAt, undefined, {
      timeout: GONE_WITHIN_MS + 5000,
    });
    if (goneAt < sent) {
      // It left the set before the occupied fix was sent (the simulator's own status change, or
      // it drove out of the area): not a measurement. Try another taxi.
      console.log(`${t}: ${v.id} left on its own before the occupied fix was published; another one`);
      continue;
    }
    const ms = goneAt - sent;
    check(ms <= GONE_WITHIN_MS, `${t}: occupied ${v.id} gone from the set and the map ${ms} ms after publishing (limit ${GONE_WITHIN_MS} ms)`);
    return;
  }
  check(false, `${t}: three taxis left on their own before they could be switched to occupied`);
}

async function moveRider(page, t) {
  const old = await page.evaluate(() => window.meshcast.vehicles());
  check(await page.evaluate(([lat, lon]) => window.meshcast.moveTo(lat, lon), [SHINJUKU.lat, SHINJUKU.lon]), `${t}: moveTo accepted`);
  // The new snapshot replaces the set: every vehicle shown (and drawn) is within the radius of
  // the new centre, by the server's distance and by our own. The old set, around Tokyo Station
  // 6.15 km away (more than twice the radius), cannot satisfy this: it has been replaced, and an
  // old taxi may only remain if it is now within the radius of Shinjuku.
  const res = await until(
    page,
    `${t}: moving the rider replaces the set`,
    ([c, r, old]) => {
      const m = window.meshcast;
      const rad = Math.PI / 180;
      const dist = (v) => {
        const dLat = (v.lat - c.lat) * rad;
        const dLon = (v.lon - c.lon) * rad;
        const a = Math.sin(dLat / 2) ** 2 + Math.cos(c.lat * rad) * Math.cos(v.lat * rad) * Math.sin(dLon / 2) ** 2;
        return 2 * 6371008.8 * Math.asin(Math.sqrt(a));
      };
      if (Math.abs(m.centre.lat - c.lat) > 1e-6 || Math.abs(m.centre.lon - c.lon) > 1e-6) return false;
      const ids = m.vehicles();
      if (ids.length === 0 || !window.e2eMarkersMatchSet()) return false;
      const far = ids.map((id) => m.vehicle(id)).filter((v) => v.distanceM > r || dist(v) > r + 10);
      if (far.length > 0) return false;
      return { n: ids.length, kept: ids.filter((id) => old.includes(id)).length, fresh: ids.filter((id) => !old.includes(id)).length };
    },
    [SHINJUKU, RADIUS_M, old],
  );
  check(res.fresh > 0, `${t}: around Shinjuku: ${res.n} taxis within ${RADIUS_M} m (${res.fresh} new, ${res.kept} of the ${old.length} around Tokyo Station kept, all within the radius), one marker each`);
}

// A new, empty profile: --profile (the driver's temporary directory, removed by it even when this
// script is killed) or one of our own.
const ownProfile = !arg("--profile", "");
const profile = arg("--profile", "") || mkdtempSync(join(tmpdir(), "meshcast-e2e-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: arg("--chromium", "/usr/bin/chromium"),
  viewport: { width: 1400, height: 900 },
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
await context.addInitScript(installHelpers);
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  for (const t of ["ws", "sse", "grpc-web"]) {
    await appear(page, t);
    await move(page, t);
    await occupy(page, t);
    await moveRider(page, t);
  }
  // The picture: back at Tokyo Station on WebSocket, once taxis are drawn and the counters (drawn
  // every 250 ms) show them, the event rate and a latency (after the first update).
  await page.goto(`${url}?transport=ws&radius=${RADIUS_M}`);
  await until(page, "screenshot: taxis drawn and counted", () => {
    const m = window.meshcast;
    const text = (id) => document.getElementById(id)?.textContent ?? "";
    return (
      m?.connected &&
      m.vehicles().length > 0 &&
      window.e2eMarkersMatchSet() &&
      text("c-vehicles") === String(m.vehicles().length) &&
      Number(text("c-rate")) > 0 &&
      /\d/.test(text("c-p50")) &&
      /\d/.test(text("c-seq"))
    );
  });
  // Markers fade in (a CSS animation): end it so that every taxi is drawn in full.
  await page.screenshot({ path: out, animations: "disabled" });
  console.log(`screenshot ${out}`);
} catch (e) {
  check(false, e.message);
} finally {
  await context.close();
  if (ownProfile) rmSync(profile, { recursive: true, force: true });
}
check(errors.length === 0, `no page errors${errors.length ? ":\n  " + errors.join("\n  ") : ""}`);
process.exit(failed ? 1 : 0);
