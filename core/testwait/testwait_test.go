package testwait

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

func TestUntilSeesTheConditionHold(t *testing.T) {
	var polls atomic.Int32
	if !Until(time.Minute, func() bool { return polls.Add(1) == 5 }) {
		t.Fatal("Until gave up on a condition that held at the fifth poll")
	}
	if n := polls.Load(); n != 5 {
		t.Fatalf("%d polls, want 5 (stop at the first that holds)", n)
	}
}

func TestUntilGivesUpAfterTheLimit(t *testing.T) {
	start := time.Now()
	if Until(30*time.Millisecond, func() bool { return false }) {
		t.Fatal("Until reported a condition that never held")
	}
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Fatalf("gave up after %v, before the 30ms limit", el)
	}
}

// fatalRecorder records Fatalf instead of stopping the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper()                           {}
func (r *fatalRecorder) Fatalf(format string, args ...any) { r.msg = fmt.Sprintf(format, args...) }

func TestForFailsWithWhatItWaitedFor(t *testing.T) {
	r := &fatalRecorder{TB: t}
	For(r, 10*time.Millisecond, "the thing", func() bool { return false })
	if want := "timed out after 10ms waiting for the thing"; r.msg != want {
		t.Fatalf("For on a condition that never held: failure %q, want %q", r.msg, want)
	}
	r = &fatalRecorder{TB: t}
	For(r, time.Minute, "the thing", func() bool { return true })
	if r.msg != "" {
		t.Fatalf("For failed on a condition that held: %q", r.msg)
	}
}
