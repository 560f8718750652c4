package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestSlowRiderIsCoalescedThenCut: a rider that stops calling Next first has its updates
// coalesced per vehicle, then is cut with ErrTooSlow once more vehicles than QueueLimit are
// pending, while 100 other riders in the same area receive every single event all along. When
// everyone has left and the hub is closed, no goroutine is left.
func TestSlowRiderIsCoalescedThenCut(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first: runs after the other cleanups
	e := newEnv(t)
	o := e.o
	o.QueueLimit = 16
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	type healthy struct {
		s       *Session
		mu      sync.Mutex
		v       *view
		upserts int
		err     error
	}
	progress := make(chan struct{}, 1)
	var wg sync.WaitGroup
	riders := make([]*healthy, 100)
	for i := range riders {
		h := &healthy{s: newSession(t, e, riderReq(), o), v: newView()}
		riders[i] = h
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []Frame
			for {
				fs, err := h.s.Next(ctx, buf[:0])
				h.mu.Lock()
				if err == nil {
					err = h.v.apply(fs)
					for _, f := range fs {
						if f.Kind == KindUpsert {
							h.upserts++
						}
					}
				}
				h.err = err
				h.mu.Unlock()
				select {
				case progress <- struct{}{}:
				default:
				}
				if err != nil {
					return
				}
				buf = fs
			}
		}()
	}
	// every healthy rider has its snapshot before the events start
	deadline := time.After(10 * time.Second)
	for waiting := true; waiting; {
		waiting = false
		for _, h := range riders {
			h.mu.Lock()
			snap := h.v.snap
			h.mu.Unlock()
			if snap == 0 {
				waiting = true
				select {
				case <-progress:
				case <-deadline:
					t.Fatal("healthy riders did not get their snapshot")
				}
				break
			}
		}
	}
	slow := newSession(t, e, riderReq(), o)
	expect(t, kinds(t, next(t, slow)), "snapshot[]") // then it stops reading

	events := 0
	// send applies one fix and waits until every healthy rider has it
	send := func(id string, fx float64) {
		t.Helper()
		ts := e.apply(t, e.vehAt(id, mB, 0.4, fx))
		events++
		deadline := time.After(10 * time.Second)
		for {
			all := true
			for _, h := range riders {
				h.mu.Lock()
				v, err := h.v.vs[id], h.err
				h.mu.Unlock()
				if err != nil {
					t.Fatalf("healthy rider: %v", err)
				}
				if v == nil || v.ObservedAtMs != ts {
					all = false
					break
				}
			}
			if all {
				return
			}
			select {
			case <-progress:
			case <-deadline:
				t.Fatalf("healthy riders did not get %s@%d", id, ts)
			}
		}
	}

	// 8 vehicles × 5 updates: the slow rider holds 8 coalesced updates
	for round := range 5 {
		for i := range 8 {
			send(fmt.Sprint("f/", i), 0.01*float64(i+1)+0.001*float64(round))
		}
	}
	slow.mu.Lock()
	pending := slow.npend
	slow.mu.Unlock()
	if pending != 8 {
		t.Fatalf("slow rider has %d updates pending, want 8 (one per vehicle)", pending)
	}
	fs := next(t, slow) // it reads once: the latest position of each vehicle, once
	if len(fs) != 8 {
		t.Fatalf("slow rider got %d frames, want 8: %v", len(fs), kinds(t, fs))
	}
	for i, f := range fs {
		ev, err := decode(f)
		if err != nil {
			t.Fatal(err)
		}
		if u := ev.GetUpsert(); u == nil || u.Id != fmt.Sprint("f/", i) || u.ObservedAtMs != e.clk.ms.Load()-int64(7-i) {
			t.Fatalf("slow rider frame %d: %v, want the last fix of f/%d", i, ev, i)
		}
	}

	// it stops again; 20 more vehicles: the 17th pending one cuts it
	for i := range 20 {
		send(fmt.Sprint("f/x", i), 0.01*float64(i+1))
	}
	if _, err := slow.Next(ctx, nil); !errors.Is(err, ErrTooSlow) {
		t.Fatalf("slow rider Next = %v, want ErrTooSlow", err)
	}
	// the healthy riders got every event, one upsert each
	for i, h := range riders {
		h.mu.Lock()
		n := h.upserts
		h.mu.Unlock()
		if n != events {
			t.Fatalf("healthy rider %d got %d upserts for %d events", i, n, events)
		}
	}
	if st, per := e.hub.Stats(), len(riders[0].s.a.meshes); st.Watchers != 100*per {
		t.Fatalf("hub has %d registrations, want the 100 healthy riders × %d meshes", st.Watchers, per)
	}

	cancel()
	wg.Wait()
	for _, h := range riders {
		h.s.Close()
	}
	slow.Close()
	if st := e.hub.Stats(); st.Watchers != 0 || st.Meshes != 0 {
		t.Fatalf("hub still holds %+v after everyone left", st)
	}
	e.hub.Close()
	e.bus.Close()
}

// TestEncodeOnce: the shared encoding is done once per event whatever the number of riders.
func TestEncodeOnce(t *testing.T) {
	for _, n := range []int{1, 10, 100} {
		t.Run(fmt.Sprint(n, " riders"), func(t *testing.T) {
			e := newEnv(t)
			ss := make([]*Session, n)
			for i := range ss {
				ss[i] = newSession(t, e, riderReq(), e.o)
				next(t, ss[i])
			}
			before := e.hub.Stats().Encodings
			const events = 20
			for i := range events {
				e.apply(t, e.vehAt(fmt.Sprint("f/", i%4), mB, 0.5, 0.01*float64(i+1)))
			}
			for _, s := range ss {
				if got := len(next(t, s)); got != 4 {
					t.Fatalf("a rider got %d frames, want 4 (coalesced)", got)
				}
			}
			if got := e.hub.Stats().Encodings - before; got != events {
				t.Fatalf("%d encodings for %d events to %d riders, want %d", got, events, n, events)
			}
		})
	}
}
