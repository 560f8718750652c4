// Browser smoke test of the page against the fake edge, in headless Debian Chromium through
// playwright-core: on each transport the page connects, taxis appear as markers matching the
// client's set and move, moving the rider replaces the set, switching transports works. Writes a
// screenshot. Not part of `go test` (the end-to-end test against `meshcast demo` is).
//
//   node dev/run.mjs smoke [--out /tmp/meshcast.png] [--chromium /usr/bin/chromium] [--url URL]
//
// --url points it at a running server instead (e.g. `meshcast demo`'s page): the page and the
// rider API on one origin, with taxis around Tokyo Station.

import { chromium, type Page } from "playwright-core";
import { fileURLToPath } from "node:url";
import { startFakeEdge } from "./fake-edge";
import type { MeshcastHook } from "../app/main";

declare const window: { meshcast: MeshcastHook };

const arg = (k: string, d: string) => {
  const i = process.argv.indexOf(k);
  return i > 0 ? process.argv[i + 1] : d;
};
const web = fileURLToPath(new URL("..", import.meta.url));
const out = arg("--out", "/tmp/meshcast.png");
const external = arg("--url", "");
const edge = external
  ? { url: external.endsWith("/") ? external : external + "/", close: async () => {} }
  : await startFakeEdge({ dist: `${web}dist`, zones: `${web}../deploy/zones/tokyo.geojson`, vehicles: 400, fixEveryMs: 2000 });
const browser = await chromium.launch({
  executablePath: arg("--chromium", "/usr/bin/chromium"),
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
const errors: string[] = [];
let failed = false;

function check(ok: boolean, what: string): void {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failed = true;
}

async function markersMatch(page: Page): Promise<boolean> {
  return page.evaluate(() => {
    const dom = [...document.querySelectorAll<HTMLElement>("[data-vehicle-id]")].map((e) => e.dataset.vehicleId!).sort();
    const set = window.meshcast.vehicles();
    return dom.length === set.length && dom.every((id, i) => id === set[i]);
  });
}

try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  for (const t of ["ws", "sse", "grpc-web"] as const) {
    await page.goto(`${edge.url}?transport=${t}`);
    await page.waitForFunction(() => window.meshcast?.connected && window.meshcast.vehicles().length > 0, null, { timeout: 10000 });
    const first = await page.evaluate(() => window.meshcast.vehicles());
    check(first.length > 5, `${t}: connected, ${first.length} taxis`);
    check(await page.evaluate(() => document.body.dataset.zones === "13"), `${t}: 13 zones drawn`);
    check(await markersMatch(page), `${t}: one marker per vehicle`);
    const before = await page.evaluate(() => window.meshcast.stats().lastSeq);
    await page.waitForFunction((s) => window.meshcast.stats().lastSeq > s + 5, before, { timeout: 10000 });
    check(true, `${t}: upserts arrive`);
    const moved = await page.evaluate(async () => {
      const pos = () => new Map([...document.querySelectorAll<HTMLElement>("[data-vehicle-id]")].map((e) => [e.dataset.vehicleId, e.style.transform]));
      const a = pos();
      await new Promise((r) => setTimeout(r, 2500));
      const b = pos();
      return [...a].filter(([id, tr]) => b.has(id) && b.get(id) !== tr).length;
    });
    check(moved > 0, `${t}: ${moved} markers moved on screen`);
    await page.evaluate(() => window.meshcast.moveTo(35.6938, 139.7536, 800));
    await page.waitForFunction(
      () => {
        const m = window.meshcast;
        const ids = m.vehicles();
        return ids.length > 0 && ids.every((id) => (m.vehicle(id)?.distanceM ?? 1e9) <= 800);
      },
      null,
      { timeout: 10000 },
    );
    const second = await page.evaluate(() => window.meshcast.vehicles());
    check(second.some((id) => !first.includes(id)), `${t}: moving the rider replaced the set (${second.length} taxis within 800 m)`);
    check(await page.evaluate(() => location.search.includes("lat=35.693800") && location.search.includes(`radius=800`)), `${t}: URL follows the rider`);
    check(await markersMatch(page), `${t}: markers follow the new set`);
  }
  // Switch transports in place, then take the picture on a settled page.
  await page.goto(`${edge.url}?transport=ws`);
  await page.waitForFunction(() => window.meshcast?.connected && window.meshcast.vehicles().length > 0);
  await page.click('button[data-transport="sse"]');
  await page.waitForFunction(() => window.meshcast.transport === "sse" && window.meshcast.connected && document.body.dataset.transport === "sse");
  check(await page.evaluate(() => location.search.startsWith("?transport=sse")), "switcher: sse selected");
  await page.waitForTimeout(3500);
  check(await markersMatch(page), "switcher: markers match the new stream's set");
  await page.screenshot({ path: out });
  console.log(`screenshot: ${out}`);
  for (let i = 0; i < 4; i++) {
    await page.click(".leaflet-control-zoom-out");
    await page.waitForTimeout(400);
  }
  const overview = out.replace(/(\.png)?$/, "-overview.png");
  await page.screenshot({ path: overview });
  console.log(`screenshot: ${overview}`);
} finally {
  await browser.close();
  await edge.close();
}
check(errors.length === 0, `no page errors${errors.length ? ":\n  " + errors.join("\n  ") : ""}`);
process.exit(failed ? 1 : 0);
