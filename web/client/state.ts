// VehicleSet: the rider's current set of vehicles, kept by applying events in order
// (API.md §3: after a Snapshot, applying the events in order reproduces the server's view).

import type { MeshcastEvent, Vehicle } from "./events";

/** What one event changed: vehicles that appeared, vehicles that moved, ids that left. */
export interface Change {
  added: Vehicle[];
  updated: Vehicle[];
  removed: string[];
}

/**
 * VehicleSet holds the current vehicles by id. A snapshot replaces the whole set (vehicles missing
 * from it are removed), an upsert adds or replaces one vehicle, a remove deletes one (a remove of
 * an unknown id changes nothing), a heartbeat changes nothing.
 */
export class VehicleSet {
  private readonly byId = new Map<string, Vehicle>();

  /** apply applies one event and reports what it changed. */
  apply(ev: MeshcastEvent): Change {
    const ch: Change = { added: [], updated: [], removed: [] };
    switch (ev.kind) {
      case "snapshot": {
        const next = new Map<string, Vehicle>();
        for (const v of ev.vehicles) next.set(v.id, v);
        for (const id of this.byId.keys()) {
          if (!next.has(id)) ch.removed.push(id);
        }
        for (const id of ch.removed) this.byId.delete(id);
        for (const v of next.values()) {
          (this.byId.has(v.id) ? ch.updated : ch.added).push(v);
          this.byId.set(v.id, v);
        }
        break;
      }
      case "upsert":
        (this.byId.has(ev.vehicle.id) ? ch.updated : ch.added).push(ev.vehicle);
        this.byId.set(ev.vehicle.id, ev.vehicle);
        break;
      case "remove":
        if (this.byId.delete(ev.id)) ch.removed.push(ev.id);
        break;
      case "heartbeat":
        break;
    }
    return ch;
  }

  /** clear empties the set and returns the ids it held. */
  clear(): string[] {
    const ids = [...this.byId.keys()];
    this.byId.clear();
    return ids;
  }

  get size(): number {
    return this.byId.size;
  }

  get(id: string): Vehicle | undefined {
    return this.byId.get(id);
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** ids returns the ids in the set, sorted. */
  ids(): string[] {
    return [...this.byId.keys()].sort();
  }

  values(): IterableIterator<Vehicle> {
    return this.byId.values();
  }
}
