// Package testwait is the tests' one way to wait for a condition they do not control (a server
// up, a message applied, a rider cut): poll it until it holds, within a bound. The bound is
// there so that a broken build fails instead of hanging; it is never a speed assertion, and the
// polling interval is no synchronisation: the condition is what is waited for.
package testwait

import (
	"testing"
	"time"
)

// The interval between two polls starts at minInterval and doubles up to maxInterval: a
// condition that holds soon is seen soon, a long wait costs little CPU.
const (
	minInterval = time.Millisecond
	maxInterval = 20 * time.Millisecond
)

// Until polls cond until it holds (true) or limit has passed (false), for callers that handle
// the timeout themselves.
func Until(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	interval := minInterval
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
		interval = min(2*interval, maxInterval)
	}
	return true
}

// For polls cond until it holds and returns how long that took, or fails tb with "timed out
// after <limit> waiting for <what>" once limit has passed.
func For(tb testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	if !Until(limit, cond) {
		tb.Fatalf("timed out after %v waiting for %s", limit, what)
	}
	return time.Since(start)
}
