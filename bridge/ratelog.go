package bridge

import (
	"log/slog"
	"sync"
	"time"
)

// rateLog writes at most one line per key per interval and reports how many
// lines it suppressed since the last one, so a flood of bad messages costs a
// map lookup each, not a log line each.
type rateLog struct {
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	keys map[string]*rateState
}

type rateState struct {
	next       time.Time
	suppressed int
}

func newRateLog(l *slog.Logger, interval time.Duration, now func() time.Time) *rateLog {
	return &rateLog{log: l, interval: interval, now: now, keys: map[string]*rateState{}}
}

// allow reports whether a line for key may be written now and, if so, how many were
// suppressed before it.
func (r *rateLog) allow(key string) (ok bool, suppressed int) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.keys[key]
	if s == nil {
		s = &rateState{}
		r.keys[key] = s
	}
	if now.Before(s.next) {
		s.suppressed++
		return false, 0
	}
	suppressed, s.suppressed = s.suppressed, 0
	s.next = now.Add(r.interval)
	return true, suppressed
}

// warn logs msg with attrs under key, rate-limited.
func (r *rateLog) warn(key, msg string, attrs ...any) {
	ok, suppressed := r.allow(key)
	if !ok {
		return
	}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	r.log.Warn(msg, attrs...)
}
