// Fakes for the watch() tests: WebSocket, EventSource and timers under the test's control.

import type { EventSourceLike, WatchEnv, WebSocketLike } from "../client/watch";

export class FakeWebSocket implements WebSocketLike {
  static all: FakeWebSocket[] = [];
  readyState = 0;
  sent: string[] = [];
  closedWith: number | undefined;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  constructor(
    readonly url: string,
    readonly protocols?: string | string[],
  ) {
    FakeWebSocket.all.push(this);
  }
  send(data: string): void {
    if (this.readyState !== 1) throw new Error("InvalidStateError: not open");
    this.sent.push(data);
  }
  close(code?: number): void {
    this.closedWith = code ?? 1005;
    this.readyState = 3;
  }
  // Server side.
  serverOpen(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  serverSend(data: unknown): void {
    this.onmessage?.({ data });
  }
  serverClose(code: number, reason = ""): void {
    this.readyState = 3;
    this.onerror?.({});
    this.onclose?.({ code, reason });
  }
}

export class FakeEventSource implements EventSourceLike {
  static all: FakeEventSource[] = [];
  readyState = 0;
  closed = false;
  onopen: ((ev: unknown) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  private listeners = new Map<string, ((ev: { data: string }) => void)[]>();
  constructor(readonly url: string) {
    FakeEventSource.all.push(this);
  }
  addEventListener(type: string, fn: (ev: { data: string }) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), fn]);
  }
  close(): void {
    this.closed = true;
    this.readyState = 2;
  }
  // Server and browser side.
  serverOpen(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  serverEvent(type: string, data: string): void {
    for (const fn of this.listeners.get(type) ?? []) fn({ data });
  }
  /** The browser lost the stream and will retry by itself (readyState CONNECTING). */
  lose(): void {
    this.readyState = 0;
    this.onerror?.({});
  }
  /** The browser gave up (HTTP error, wrong content type): readyState CLOSED. */
  fail(): void {
    this.readyState = 2;
    this.onerror?.({});
  }
}

/** FakeTimers runs timeouts when the test says so and records their delays. */
export class FakeTimers {
  private next = 1;
  pending = new Map<number, { fn: () => void; ms: number }>();
  delays: number[] = [];
  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = this.next++;
    this.pending.set(id, { fn, ms });
    this.delays.push(ms);
    return id;
  };
  clearTimeout = (h: unknown): void => {
    this.pending.delete(h as number);
  };
  /** runAll fires every pending timeout once (those they schedule stay pending). */
  runAll(): void {
    const due = [...this.pending.entries()];
    this.pending.clear();
    for (const [, t] of due) t.fn();
  }
}

export function fakeEnv(timers: FakeTimers, random = 0): Partial<WatchEnv> {
  FakeWebSocket.all = [];
  FakeEventSource.all = [];
  return {
    WebSocket: FakeWebSocket,
    EventSource: FakeEventSource,
    setTimeout: timers.setTimeout,
    clearTimeout: timers.clearTimeout,
    random: () => random,
    origin: "http://edge.test:8080",
  };
}

export const V = (id: string, lat = 35.68, lon = 139.76) =>
  `{"id":"${id}","fleet":"${id.split("/")[0]}","lat":${lat},"lon":${lon},"class":"VEHICLE_CLASS_STANDARD","mesh":"53394611","observedAtMs":"1"}`;
