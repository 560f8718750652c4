// The live map page: Leaflet with local layers only (zones from ./zones.geojson, the JIS X 0410
// grid around the rider, the rider's radius, the taxis), fed by the meshcast client.

import * as L from "leaflet";
import "./app.css";
import type { MeshcastEvent, Vehicle, VehicleClassName } from "../client/events";
import { VEHICLE_CLASSES } from "../client/events";
import { cellBounds, cellCode, cellsInBounds, gridAround, inMeshDomain, meshCode, type Bounds } from "../client/mesh";
import type { Change } from "../client/state";
import { TRANSPORTS, watch, type Status, type TransportName, type WatchHandle } from "../client/watch";
import { formatParams, parseParams, type PageParams } from "./params";
import { SlidingWindow, formatMs } from "./stats";
import { TaxiLayer } from "./taxis";

const WINDOW_MS = 5000;
const MAX_GRID_CELLS = 600;

const params: PageParams = parseParams(location.search);
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

// ---- map and layers -------------------------------------------------------------------------

const map = L.map("map", { zoomControl: false, zoomSnap: 0.5, minZoom: 9, maxZoom: 19 });
L.control.zoom({ position: "topright" }).addTo(map);
L.control.scale({ position: "bottomright", imperial: false }).addTo(map);
map.attributionControl.setPrefix("Leaflet");
map.attributionControl.addAttribution("zones: hand-drawn approximation · no base map");
for (const [pane, z] of [
  ["zones", 300],
  ["mesh", 320],
  ["meshLabels", 330],
  ["radius", 340],
] as const) {
  const p = map.createPane(pane);
  p.style.zIndex = String(z);
  if (pane === "meshLabels") p.style.pointerEvents = "none";
}

const note = (text: string) => ($("note").textContent = text);

fetch("zones.geojson")
  .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
  .then((fc: GeoJSON.FeatureCollection) => {
    const layer = L.geoJSON(fc, {
      pane: "zones",
      style: (f) =>
        f?.properties?.kind === "no_dispatch"
          ? { className: "zone-nodispatch", color: "#fb7185", weight: 1.5, fillColor: "#f43f5e", fillOpacity: 0.35 }
          : { className: "zone-service", color: "#38bdf8", weight: 1.5, opacity: 0.8, fillColor: "#38bdf8", fillOpacity: 0.05, interactive: false },
      onEachFeature: (f, l) => {
        if (f.properties?.kind === "no_dispatch") {
          l.bindTooltip(`<b>${String(f.properties.name ?? "")}</b><br>no-dispatch zone`, { sticky: true });
        }
      },
    }).addTo(map);
    document.body.dataset.zones = String(layer.getLayers().length);
  })
  .catch((e: Error) => note(`Zones unavailable (${e.message}).`));

const gridLayer = L.layerGroup().addTo(map);
const radiusCircle = L.circle([params.lat, params.lon], {
  pane: "radius",
  radius: params.radiusM,
  className: "rider-radius",
  color: "#e2e8f0",
  weight: 1.5,
  dashArray: "6 6",
  fillColor: "#818cf8",
  fillOpacity: 0.07,
  interactive: false,
}).addTo(map);
const rider = L.marker([params.lat, params.lon], {
  icon: L.divIcon({ className: "rider", html: "<i></i>", iconSize: [18, 18], iconAnchor: [9, 9] }),
  draggable: true,
  keyboard: false,
  zIndexOffset: 1000,
  title: "rider (drag to move)",
}).addTo(map);
const taxis = new TaxiLayer(map);

// The grid: every third-order cell in view (faint, labelled when zoomed in), the cells the rider's
// radius reaches highlighted (the meshes the server covers for this rider).
function drawGrid(): void {
  gridLayer.clearLayers();
  const view = map.getBounds().pad(0.1);
  const cells = cellsInBounds(
    { south: view.getSouth(), west: view.getWest(), north: view.getNorth(), east: view.getEast() },
    MAX_GRID_CELLS,
  );
  const centre = meshCode(params.lat, params.lon);
  const labels = map.getZoom() >= 13.5;
  const draw = (code: string, b: Bounds, covered: boolean) => {
    L.rectangle(
      [
        [b.south, b.west],
        [b.north, b.east],
      ],
      {
        pane: "mesh",
        interactive: false,
        className: covered ? "mesh mesh-covered" : "mesh",
        color: covered ? "#fbbf24" : "#64748b",
        opacity: covered ? 0.55 : 0.3,
        weight: 1,
        fillColor: "#fbbf24",
        fillOpacity: covered ? (code === centre ? 0.1 : 0.05) : 0,
      },
    ).addTo(gridLayer);
    if (labels) {
      L.marker([b.north, b.west], {
        pane: "meshLabels",
        interactive: false,
        keyboard: false,
        icon: L.divIcon({ className: covered ? "mesh-label covered" : "mesh-label", html: code, iconSize: [64, 14], iconAnchor: [-4, -4] }),
      }).addTo(gridLayer);
    }
  };
  const covered = gridAround(params.lat, params.lon, params.radiusM).filter((c) => c.covered);
  const coveredCodes = new Set(covered.map((c) => c.code));
  for (const c of cells ?? []) {
    const code = cellCode(c);
    if (!coveredCodes.has(code)) draw(code, cellBounds(c), false);
  }
  for (const c of covered) draw(c.code, c, true);
}

// ---- the stream ---------------------------------------------------------------------------

const events = new SlidingWindow(WINDOW_MS);
const latency = new SlidingWindow(WINDOW_MS);
let total = 0;
let lastSeq = 0;
let reconnects = 0;
let handle: WatchHandle;

function area() {
  return { lat: params.lat, lon: params.lon, radiusM: params.radiusM, classes: params.classes };
}

function onEvent(h: WatchHandle, ev: MeshcastEvent, ch: Change): void {
  if (h !== handle) return;
  const now = Date.now();
  total++;
  lastSeq = ev.seq;
  events.add(now);
  switch (ev.kind) {
    case "snapshot":
      taxis.reconcile(h.vehicles.values());
      break;
    case "upsert":
      latency.add(now, now - ev.vehicle.observedAtMs);
      for (const v of ch.added) taxis.upsert(v);
      for (const v of ch.updated) taxis.upsert(v);
      break;
    case "remove":
      for (const id of ch.removed) taxis.remove(id);
      break;
    case "heartbeat":
      break;
  }
  document.body.dataset.vehicles = String(h.vehicles.size);
}

function onStatus(h: WatchHandle | undefined, s: Status): void {
  if (h !== undefined && h !== handle) return;
  if (s.state === "reconnecting" && s.retryInMs !== undefined) reconnects++;
  const el = $("status");
  el.dataset.state = s.state;
  let text: string = s.state;
  if (s.state === "reconnecting" && s.retryInMs !== undefined) text = `retry in ${(s.retryInMs / 1000).toFixed(1)} s`;
  (el.lastElementChild as HTMLElement).textContent = text;
  el.title = s.error ?? "";
  document.body.dataset.state = s.state;
  if (s.state === "closed" && s.error) note(`Stopped: ${s.error}`);
  else if (s.state === "open") note("");
}

function start(): void {
  let h: WatchHandle | undefined;
  h = watch(area(), (ev, ch) => onEvent(h!, ev, ch), {
    transport: params.transport,
    baseUrl: params.api,
    accessToken: params.token,
    onStatus: (s) => onStatus(h, s),
  });
  handle = h;
  onStatus(h, h.status);
  document.body.dataset.transport = params.transport;
  for (const b of document.querySelectorAll<HTMLButtonElement>("#transports button")) {
    b.setAttribute("aria-checked", String(b.dataset.transport === params.transport));
  }
}

function syncURL(): void {
  history.replaceState(null, "", formatParams(params) + location.hash);
}

function moveRider(lat: number, lon: number, radiusM = params.radiusM): boolean {
  if (!inMeshDomain(lat, lon)) {
    note("That point is outside the JIS X 0410 mesh domain.");
    return false;
  }
  params.lat = lat;
  params.lon = lon;
  params.radiusM = radiusM;
  rider.setLatLng([lat, lon]);
  radiusCircle.setLatLng([lat, lon]).setRadius(radiusM);
  drawGrid();
  syncURL();
  handle.move(area());
  return true;
}

function setTransport(t: TransportName): void {
  if (!TRANSPORTS.includes(t) || t === params.transport) return;
  handle.close();
  params.transport = t;
  syncURL();
  start();
}

function setClasses(classes: VehicleClassName[]): void {
  params.classes = classes.length === VEHICLE_CLASSES.length ? [] : classes;
  for (const b of document.querySelectorAll<HTMLButtonElement>("#classes button")) {
    const c = b.dataset.class as VehicleClassName;
    b.setAttribute("aria-pressed", String(params.classes.length === 0 || params.classes.includes(c)));
  }
  syncURL();
  handle.move(area());
}

// ---- controls -----------------------------------------------------------------------------

map.on("click", (e: L.LeafletMouseEvent) => moveRider(e.latlng.lat, e.latlng.lng));
rider.on("dragend", () => {
  const p = rider.getLatLng();
  if (!moveRider(p.lat, p.lng)) rider.setLatLng([params.lat, params.lon]);
});
for (const b of document.querySelectorAll<HTMLButtonElement>("#transports button")) {
  b.addEventListener("click", () => setTransport(b.dataset.transport as TransportName));
}
const radiusSelect = $<HTMLSelectElement>("radius");
if (![...radiusSelect.options].some((o) => Number(o.value) === params.radiusM)) {
  radiusSelect.add(new Option(`${params.radiusM} m`, String(params.radiusM), true, true));
}
radiusSelect.value = String(params.radiusM);
radiusSelect.addEventListener("change", () => moveRider(params.lat, params.lon, Number(radiusSelect.value)));
for (const b of document.querySelectorAll<HTMLButtonElement>("#classes button")) {
  b.addEventListener("click", () => {
    const c = b.dataset.class as VehicleClassName;
    const on = new Set(params.classes.length === 0 ? VEHICLE_CLASSES : params.classes);
    if (on.has(c)) {
      if (on.size === 1) return; // keep at least one class
      on.delete(c);
    } else {
      on.add(c);
    }
    setClasses(VEHICLE_CLASSES.filter((x) => on.has(x)));
  });
  const c = b.dataset.class as VehicleClassName;
  b.setAttribute("aria-pressed", String(params.classes.length === 0 || params.classes.includes(c)));
}

function renderCounters(): void {
  const now = Date.now();
  $("c-vehicles").textContent = String(handle.vehicles.size);
  const rate = events.perSecond(now);
  $("c-rate").textContent = rate >= 10 ? rate.toFixed(0) : rate.toFixed(1);
  $("c-p50").textContent = formatMs(latency.quantile(now, 0.5));
  $("c-p95").textContent = formatMs(latency.quantile(now, 0.95));
  $("c-mesh").textContent = meshCode(params.lat, params.lon) || "–";
  $("c-seq").textContent = lastSeq ? String(lastSeq) : "–";
}

// ---- start --------------------------------------------------------------------------------

// Show the watched meshes and a ring of their neighbours, clear of the panel on the left.
map.fitBounds(L.latLng(params.lat, params.lon).toBounds((params.radiusM + 600) * 2.4), {
  paddingTopLeft: window.innerWidth > 640 ? [340, 0] : [0, 0],
});
drawGrid();
map.on("moveend", drawGrid);
start();
renderCounters();
setInterval(renderCounters, 250);

/** The test hook: what a browser test asserts without reading pixels. */
export interface MeshcastHook {
  /** Ids of the vehicles in the client's current set, sorted. */
  vehicles(): string[];
  /** A vehicle of the current set. */
  vehicle(id: string): Vehicle | undefined;
  /** Ids of the taxi markers on the map, sorted. */
  markers(): string[];
  readonly transport: TransportName;
  readonly connected: boolean;
  readonly status: Status;
  readonly centre: { lat: number; lon: number; radiusM: number };
  moveTo(lat: number, lon: number, radiusM?: number): boolean;
  setTransport(t: TransportName): void;
  stats(): { events: number; eventsPerSec: number; latencyP50Ms: number; lastSeq: number; reconnects: number };
}

declare global {
  interface Window {
    meshcast: MeshcastHook;
  }
}

window.meshcast = {
  vehicles: () => handle.vehicles.ids(),
  vehicle: (id) => handle.vehicles.get(id),
  markers: () => taxis.ids(),
  get transport() {
    return params.transport;
  },
  get connected() {
    return handle.connected;
  },
  get status() {
    return handle.status;
  },
  get centre() {
    return { lat: params.lat, lon: params.lon, radiusM: params.radiusM };
  },
  moveTo: (lat, lon, radiusM) => moveRider(lat, lon, radiusM),
  setTransport,
  stats: () => {
    const now = Date.now();
    return {
      events: total,
      eventsPerSec: events.perSecond(now),
      latencyP50Ms: latency.quantile(now, 0.5),
      lastSeq,
      reconnects,
    };
  },
};
