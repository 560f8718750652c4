// Reconnect delays: exponential backoff with jitter.

/** BackoffOptions tunes the reconnect delays. */
export interface BackoffOptions {
  /** Ceiling of the first delay, ms (default 500). */
  baseMs?: number;
  /** Largest ceiling, ms (default 30000). */
  maxMs?: number;
  /** Growth of the ceiling per attempt (default 2). */
  factor?: number;
  /** Fraction of the ceiling that is random, in [0, 1] (default 0.5). */
  jitter?: number;
}

/**
 * backoffDelay returns the delay before reconnect attempt `attempt` (0 for the first retry):
 * ceiling = min(maxMs, baseMs * factor^attempt), delay uniformly in [ceiling*(1-jitter), ceiling]
 * ("equal jitter": clients that lost the same server spread out, yet none retries at once).
 * `random` returns a number in [0, 1).
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  const base = opts.baseMs ?? 500;
  const max = opts.maxMs ?? 30000;
  const factor = opts.factor ?? 2;
  const jitter = Math.min(1, Math.max(0, opts.jitter ?? 0.5));
  const n = Math.max(0, Math.floor(attempt));
  const ceiling = Math.min(max, base * Math.pow(factor, Math.min(n, 64)));
  return Math.round(ceiling * (1 - jitter * random()));
}
