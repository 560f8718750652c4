// The page's URL query: ?transport=ws|sse|grpc-web&lat=&lon=&radius=&classes=&api=&token=

import { VEHICLE_CLASSES, type VehicleClassName } from "../client/events";
import { TRANSPORTS, type TransportName } from "../client/watch";
import { inMeshDomain } from "../client/mesh";

/** Tokyo Station. */
export const DEFAULT_CENTRE = { lat: 35.681236, lon: 139.767125 };
export const DEFAULT_RADIUS_M = 1000;
export const MIN_RADIUS_M = 100;
export const MAX_RADIUS_M = 3000;

export interface PageParams {
  transport: TransportName;
  lat: number;
  lon: number;
  radiusM: number;
  /** Empty: all classes. */
  classes: VehicleClassName[];
  /** Base URL of the edge when it is not the page's origin (?api=). */
  api?: string;
  /** Bearer token when the edge requires auth (?token=). */
  token?: string;
}

/**
 * parseParams reads the page's query. Missing or invalid values fall back to the defaults (ws,
 * Tokyo Station, 1000 m, all classes); a centre outside the JIS X 0410 mesh domain falls back
 * to Tokyo Station; the radius is clamped to [100, 3000] m.
 */
export function parseParams(search: string): PageParams {
  const q = new URLSearchParams(search);
  const num = (k: string) => {
    const s = q.get(k);
    if (s === null || s.trim() === "") return NaN;
    return Number(s);
  };
  const t = q.get("transport") as TransportName | null;
  let lat = num("lat");
  let lon = num("lon");
  if (!inMeshDomain(lat, lon)) ({ lat, lon } = DEFAULT_CENTRE);
  let radiusM = num("radius");
  radiusM = Number.isFinite(radiusM) ? Math.min(MAX_RADIUS_M, Math.max(MIN_RADIUS_M, Math.round(radiusM))) : DEFAULT_RADIUS_M;
  const classes = (q.get("classes") ?? "")
    .split(",")
    .map((c) => c.trim().toLowerCase())
    .filter((c): c is VehicleClassName => (VEHICLE_CLASSES as readonly string[]).includes(c));
  const p: PageParams = {
    transport: t && TRANSPORTS.includes(t) ? t : "ws",
    lat,
    lon,
    radiusM,
    classes: [...new Set(classes)],
  };
  const api = q.get("api");
  if (api) p.api = api;
  const token = q.get("token");
  if (token) p.token = token;
  return p;
}

/** formatParams writes the query that parseParams reads back (coordinates to 6 decimals). */
export function formatParams(p: PageParams): string {
  const q = new URLSearchParams();
  q.set("transport", p.transport);
  q.set("lat", p.lat.toFixed(6));
  q.set("lon", p.lon.toFixed(6));
  q.set("radius", String(p.radiusM));
  if (p.classes.length > 0) q.set("classes", p.classes.join(","));
  if (p.api) q.set("api", p.api);
  if (p.token) q.set("token", p.token);
  return "?" + q.toString();
}
