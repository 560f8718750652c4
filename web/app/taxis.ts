// TaxiLayer draws each vehicle as a rotated arrow and glides it to every new position.

import * as L from "leaflet";
import type { Vehicle } from "../client/events";
import { easeOutCubic, nextAngle } from "./stats";

const GLIDE_MS = 900;

// An arrow pointing north; the marker's body is rotated by the heading.
const ARROW =
  '<svg viewBox="0 0 24 24" width="24" height="24" aria-hidden="true">' +
  '<path d="M12 2.5 L19 20 L12 16.2 L5 20 Z" class="taxi-fill"/></svg>';

interface Taxi {
  v: Vehicle;
  marker: L.Marker;
  angle: number;
  from: L.LatLng;
  to: L.LatLng;
  start: number;
}

function describe(v: Vehicle): string {
  const esc = (s: string) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  return (
    `<b>${esc(v.id)}</b><br>${v.class} · ${Math.round(v.speedKmh)} km/h · ${Math.round(v.headingDeg)}°` +
    `<br>${v.distanceM} m away · mesh ${esc(v.mesh)}`
  );
}

export class TaxiLayer {
  private readonly taxis = new Map<string, Taxi>();
  private frame = 0;

  constructor(
    private readonly map: L.Map,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** ids returns the ids of the markers on the map, sorted. */
  ids(): string[] {
    return [...this.taxis.keys()].sort();
  }

  get size(): number {
    return this.taxis.size;
  }

  /** upsert adds a marker or glides an existing one to the vehicle's new position and heading. */
  upsert(v: Vehicle): void {
    const to = L.latLng(v.lat, v.lon);
    const t = this.taxis.get(v.id);
    if (!t) {
      const angle = v.headingDeg;
      const marker = L.marker(to, {
        icon: L.divIcon({
          className: `taxi taxi-${v.class}`,
          html: `<div class="taxi-body" style="transform:rotate(${angle}deg)">${ARROW}</div>`,
          iconSize: [24, 24],
          iconAnchor: [12, 12],
        }),
        keyboard: false,
        riseOnHover: true,
      });
      const taxi: Taxi = { v, marker, angle, from: to, to, start: -Infinity };
      marker.bindTooltip(() => describe(taxi.v), { direction: "top", offset: [0, -10] });
      marker.addTo(this.map);
      const el = marker.getElement();
      if (el) {
        el.dataset.vehicleId = v.id;
        el.dataset.class = v.class;
        el.dataset.heading = String(Math.round(v.headingDeg));
      }
      this.taxis.set(v.id, taxi);
      return;
    }
    const el = t.marker.getElement();
    if (t.v.class !== v.class && el) {
      el.classList.replace(`taxi-${t.v.class}`, `taxi-${v.class}`);
      el.dataset.class = v.class;
    }
    t.v = v;
    t.angle = nextAngle(t.angle, v.headingDeg);
    if (el) {
      el.dataset.heading = String(Math.round(v.headingDeg));
      const body = el.firstElementChild as HTMLElement | null;
      if (body) body.style.transform = `rotate(${t.angle}deg)`;
    }
    const cur = t.marker.getLatLng();
    const bounds = this.map.getBounds().pad(0.2);
    if (!bounds.contains(cur) && !bounds.contains(to)) {
      t.marker.setLatLng(to); // off screen: no need to animate
      t.start = -Infinity;
      t.from = t.to = to;
      return;
    }
    t.from = cur;
    t.to = to;
    t.start = this.now();
    this.kick();
  }

  remove(id: string): void {
    const t = this.taxis.get(id);
    if (!t) return;
    t.marker.remove();
    this.taxis.delete(id);
  }

  /** reconcile makes the markers exactly the given vehicles (after a snapshot). */
  reconcile(vehicles: Iterable<Vehicle>): void {
    const keep = new Set<string>();
    for (const v of vehicles) {
      keep.add(v.id);
      this.upsert(v);
    }
    for (const id of [...this.taxis.keys()]) {
      if (!keep.has(id)) this.remove(id);
    }
  }

  private kick(): void {
    if (this.frame === 0) this.frame = requestAnimationFrame(this.step);
  }

  private readonly step = (): void => {
    this.frame = 0;
    const now = this.now();
    let moving = false;
    for (const t of this.taxis.values()) {
      if (t.start === -Infinity) continue;
      const f = (now - t.start) / GLIDE_MS;
      if (f >= 1) {
        t.marker.setLatLng(t.to);
        t.start = -Infinity;
        continue;
      }
      const e = easeOutCubic(f);
      t.marker.setLatLng([t.from.lat + (t.to.lat - t.from.lat) * e, t.from.lng + (t.to.lng - t.from.lng) * e]);
      moving = true;
    }
    if (moving) this.kick();
  };
}
