// Live counters of the page: events per second and end-to-end latency percentiles over a
// sliding window.

/** SlidingWindow keeps (time, value) samples of the last spanMs milliseconds. */
export class SlidingWindow {
  private times: number[] = [];
  private values: number[] = [];
  private head = 0;

  constructor(readonly spanMs: number) {}

  add(now: number, value = 0): void {
    this.times.push(now);
    this.values.push(value);
  }

  private prune(now: number): void {
    const from = now - this.spanMs;
    while (this.head < this.times.length && this.times[this.head] <= from) this.head++;
    if (this.head > 1024 && this.head * 2 > this.times.length) {
      this.times = this.times.slice(this.head);
      this.values = this.values.slice(this.head);
      this.head = 0;
    }
  }

  /** count is the number of samples in (now - spanMs, now]. */
  count(now: number): number {
    this.prune(now);
    return this.times.length - this.head;
  }

  /** perSecond is count / span in seconds. */
  perSecond(now: number): number {
    return this.count(now) / (this.spanMs / 1000);
  }

  /** quantile returns the q-quantile (nearest rank) of the values in the window, NaN if empty. */
  quantile(now: number, q: number): number {
    this.prune(now);
    const v = this.values.slice(this.head).sort((a, b) => a - b);
    if (v.length === 0) return NaN;
    const rank = Math.min(v.length - 1, Math.max(0, Math.ceil(q * v.length) - 1));
    return v[rank];
  }
}

/** nextAngle returns the rotation to animate to from `prev` so that the turn is the short way. */
export function nextAngle(prev: number, heading: number): number {
  const d = ((((heading - prev) % 360) + 540) % 360) - 180;
  return prev + d;
}

/** easeOutCubic maps t in [0,1] to an eased fraction. */
export function easeOutCubic(t: number): number {
  const u = 1 - Math.min(1, Math.max(0, t));
  return 1 - u * u * u;
}

/** formatMs renders a latency for the panel. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return "–";
  if (Math.abs(ms) >= 10000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms)} ms`;
}
