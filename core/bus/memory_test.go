package bus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/bus"
)

// memoryOpen returns a backend opener for the memory bus: buses opened with the same key prefix
// are the same bus (the in-process equivalent of replicas sharing one Redis).
func memoryOpen() func(t *testing.T, o bus.Options) bus.Bus {
	var mu sync.Mutex
	buses := map[string]bus.Bus{}
	return func(t *testing.T, o bus.Options) bus.Bus {
		mu.Lock()
		defer mu.Unlock()
		if b, ok := buses[o.KeyPrefix]; ok {
			return b
		}
		b := bus.NewMemory(o)
		buses[o.KeyPrefix] = b
		t.Cleanup(func() { b.Close() })
		return b
	}
}

func TestMemoryConformance(t *testing.T) {
	conformance(t, backend{open: memoryOpen()})
}

func TestMemoryStateExpiry(t *testing.T) {
	ctx := context.Background()
	clk := newClock(1_700_000_000_000)
	b := bus.NewMemory(clk.options(bus.Options{TTL: time.Second, StateTTL: 5 * time.Second}))
	defer b.Close()
	t0 := clk.Ms()
	if res, err := b.Apply(ctx, upd("f/v", mA, t0)); err != nil || !res.Applied {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	if res, _ := b.Apply(ctx, upd("f/v", mA, t0-1000)); res.Applied {
		t.Fatal("older fix applied while the state lives")
	}
	clk.Advance(5*time.Second + time.Millisecond)
	// The state expired: the vehicle is new again, even with an older fix.
	if res, err := b.Apply(ctx, upd("f/v", mB, t0-1000)); err != nil || res != (bus.Result{Applied: true, Events: 1}) {
		t.Fatalf("Apply after state expiry = %+v, %v; want applied with one event (no removal: the state is gone)", res, err)
	}
}

func TestOpenMemory(t *testing.T) {
	b, err := bus.Open(context.Background(), "memory://", bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Apply(context.Background(), upd("f/v", mA, 1)); err != bus.ErrClosed {
		t.Fatalf("Apply after Close: %v, want ErrClosed", err)
	}
}

func TestOptionsValidation(t *testing.T) {
	bad := []bus.Options{
		{TTL: -time.Second},
		{TTL: time.Microsecond},
		{TTL: 10 * time.Second, StateTTL: time.Second},
		{KeyPrefix: "a{b}"},
		{KeyPrefix: "a b"},
		{FlushDelay: 11 * time.Millisecond},
		{BatchDelay: 3 * time.Millisecond},
		{BatchDelay: -time.Millisecond},
		{BatchEarly: true}, // early rounds of no rounds
	}
	for _, o := range bad {
		if _, err := bus.Open(context.Background(), "memory://", o); err == nil {
			t.Errorf("Open with %+v: no error", o)
		}
	}
}
