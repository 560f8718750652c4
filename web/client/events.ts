// The one event shape of the meshcast browser client. WebSocket (meshcast.v1.json text frames),
// SSE (protojson in `data:`) and gRPC-Web (binary protobuf) all decode into the generated
// RiderEvent message first (protobuf-es, so protojson is read exactly as the server writes it:
// enum names or numbers, uint64/int64 as strings or numbers), then into MeshcastEvent.

import { create, fromJson, toJsonString, type JsonValue } from "@bufbuild/protobuf";
import {
  RemovalReason,
  RiderEventSchema,
  WatchRequestSchema,
  type RiderEvent,
  type Vehicle as PbVehicle,
} from "./gen/meshcast/v1/rider_pb";
import { VehicleClass } from "./gen/meshcast/v1/telemetry_pb";

/** Vehicle classes by their short names (the names the WebSocket and SSE `classes` query takes). */
export type VehicleClassName = "standard" | "premium" | "van" | "accessible";
export const VEHICLE_CLASSES: readonly VehicleClassName[] = ["standard", "premium", "van", "accessible"];

/** Why a vehicle left the rider's view, lower-case without the enum prefix. */
export type RemovalReasonName =
  | "unspecified"
  | "left_area"
  | "not_vacant"
  | "outside_service_area"
  | "in_no_dispatch_zone"
  | "stale";

/** A dispatchable taxi as the rider sees it. */
export interface Vehicle {
  /** "{fleet}/{vehicle}", unique across fleets. */
  id: string;
  fleet: string;
  lat: number;
  lon: number;
  headingDeg: number;
  speedKmh: number;
  class: VehicleClassName;
  /** JIS X 0410 third-order mesh code (8 digits). */
  mesh: string;
  /** The fix's timestamp, Unix ms. */
  observedAtMs: number;
  /** Distance from the rider's centre in metres. */
  distanceM: number;
}

/** One event of a rider stream, the same for every transport. `seq` is per stream, from 1. */
export type MeshcastEvent =
  | { kind: "snapshot"; seq: number; vehicles: Vehicle[] }
  | { kind: "upsert"; seq: number; vehicle: Vehicle }
  | { kind: "remove"; seq: number; id: string; reason: RemovalReasonName }
  | { kind: "heartbeat"; seq: number; serverTimeMs: number };

export type EventKind = MeshcastEvent["kind"];
export const EVENT_KINDS: readonly EventKind[] = ["snapshot", "upsert", "remove", "heartbeat"];

/** The area a rider watches (API.md §3 WatchRequest). */
export interface Area {
  lat: number;
  lon: number;
  /** Metres; the server's default (1000) when omitted. */
  radiusM?: number;
  /** Empty or omitted: all classes. */
  classes?: VehicleClassName[];
  /** 0 or omitted: no cap; otherwise the nearest N. */
  maxVehicles?: number;
  /** 0 or omitted: as they arrive; else at most one update per vehicle per interval. */
  minIntervalMs?: number;
}

function className(c: VehicleClass): VehicleClassName {
  switch (c) {
    case VehicleClass.PREMIUM:
      return "premium";
    case VehicleClass.VAN:
      return "van";
    case VehicleClass.ACCESSIBLE:
      return "accessible";
    default:
      return "standard"; // UNSPECIFIED means STANDARD (telemetry.proto)
  }
}

const classEnum: Record<VehicleClassName, VehicleClass> = {
  standard: VehicleClass.STANDARD,
  premium: VehicleClass.PREMIUM,
  van: VehicleClass.VAN,
  accessible: VehicleClass.ACCESSIBLE,
};

function reasonName(r: RemovalReason): RemovalReasonName {
  const n = RemovalReason[r] as string | undefined;
  return n ? (n.toLowerCase() as RemovalReasonName) : "unspecified";
}

function vehicle(v: PbVehicle): Vehicle {
  return {
    id: v.id,
    fleet: v.fleet,
    lat: v.lat,
    lon: v.lon,
    headingDeg: v.headingDeg,
    speedKmh: v.speedKmh,
    class: className(v.class),
    mesh: v.mesh,
    observedAtMs: Number(v.observedAtMs),
    distanceM: v.distanceM,
  };
}

/**
 * fromProto turns a decoded RiderEvent into a MeshcastEvent. It returns null for an event whose
 * kind this client does not know (a newer server's addition), which callers skip.
 */
export function fromProto(ev: RiderEvent): MeshcastEvent | null {
  const seq = Number(ev.seq);
  switch (ev.kind.case) {
    case "snapshot":
      return { kind: "snapshot", seq, vehicles: ev.kind.value.vehicles.map(vehicle) };
    case "upsert":
      return { kind: "upsert", seq, vehicle: vehicle(ev.kind.value) };
    case "remove":
      return { kind: "remove", seq, id: ev.kind.value.id, reason: reasonName(ev.kind.value.reason) };
    case "heartbeat":
      return { kind: "heartbeat", seq, serverTimeMs: Number(ev.kind.value.serverTimeMs) };
    default:
      return null;
  }
}

/** parseEventJSON decodes one protojson RiderEvent. It throws on invalid JSON or protojson. */
export function parseEventJSON(text: string): MeshcastEvent | null {
  let json: JsonValue;
  try {
    json = JSON.parse(text) as JsonValue;
  } catch (e) {
    throw new Error(`meshcast: event is not JSON: ${(e as Error).message}`);
  }
  return fromProto(fromJson(RiderEventSchema, json, { ignoreUnknownFields: true }));
}

/**
 * parseWSFrame decodes a meshcast.v1.json WebSocket text frame: one or more protojson RiderEvents
 * separated by "\n" (blank lines and a trailing "\r" are tolerated). It throws on a bad event.
 */
export function parseWSFrame(text: string): MeshcastEvent[] {
  const out: MeshcastEvent[] = [];
  for (const line of text.split("\n")) {
    const l = line.trim();
    if (l === "") continue;
    const ev = parseEventJSON(l);
    if (ev) out.push(ev);
  }
  return out;
}

/**
 * parseSSEData decodes the `data:` of an SSE event named `event`. The event name must agree with
 * the kind inside the data (it throws otherwise); an unknown kind under an unknown name gives null.
 */
export function parseSSEData(event: string, data: string): MeshcastEvent | null {
  const ev = parseEventJSON(data);
  if (ev && ev.kind !== event) {
    throw new Error(`meshcast: SSE event "${event}" holds a ${ev.kind}`);
  }
  return ev;
}

/** watchRequest builds the protobuf WatchRequest of an area. */
export function watchRequest(a: Area) {
  return create(WatchRequestSchema, {
    lat: a.lat,
    lon: a.lon,
    radiusM: Math.max(0, Math.round(a.radiusM ?? 0)),
    classes: (a.classes ?? []).map((c) => classEnum[c]),
    maxVehicles: a.maxVehicles ?? 0,
    minIntervalMs: a.minIntervalMs ?? 0,
  });
}

/** watchRequestJSON is the protojson WatchRequest a WebSocket client sends to move its area. */
export function watchRequestJSON(a: Area): string {
  return toJsonString(WatchRequestSchema, watchRequest(a));
}

/**
 * watchQuery is the query string of GET /v1/ws and /v1/sse for an area (without "?"): lat, lon,
 * radius_m, classes (short names), max_vehicles, min_interval_ms and access_token, each only when
 * set.
 */
export function watchQuery(a: Area, accessToken?: string): string {
  const q = new URLSearchParams();
  q.set("lat", String(a.lat));
  q.set("lon", String(a.lon));
  if (a.radiusM) q.set("radius_m", String(Math.round(a.radiusM)));
  if (a.classes && a.classes.length > 0) q.set("classes", a.classes.join(","));
  if (a.maxVehicles) q.set("max_vehicles", String(a.maxVehicles));
  if (a.minIntervalMs) q.set("min_interval_ms", String(a.minIntervalMs));
  if (accessToken) q.set("access_token", accessToken);
  return q.toString();
}
