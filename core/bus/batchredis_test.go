package bus

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/bus/redistest"
	"github.com/meshcast/meshcast/core/mesh"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// eventLog is a Handler that records the vehicle ids and fix times of the events per mesh.
type eventLog struct {
	mu     sync.Mutex
	events map[mesh.Code][]string
}

func (l *eventLog) OnEvent(m mesh.Code, ev *meshcastv1.MeshEvent, raw []byte) {
	id := ev.GetUpsert().GetId()
	if id == "" {
		id = ev.GetRemove().GetId()
	}
	l.mu.Lock()
	l.events[m] = append(l.events[m], fmt.Sprintf("%s@%d", id, ev.ObservedAtMs))
	l.mu.Unlock()
}

func (l *eventLog) OnResync(mesh.Code) {}

func (l *eventLog) on(m mesh.Code) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events[m])
}

// TestRedisBatchScripts runs the two Apply scripts on hand-made batches: several vehicles and
// meshes in one call, the same vehicle more than once, and results routed back per item. The
// fixes are older than the TTL's cutoff, so the test turns the write script's random trim off:
// a trim would delete what it checks (TestRedisWriteTrim covers the trim).
func TestRedisBatchScripts(t *testing.T) {
	s := redistest.StartSingle(t)
	ctx := context.Background()
	const now = 1_700_000_000_000
	bb, err := Open(ctx, s.URL(), Options{KeyPrefix: "bt", Now: func() time.Time { return time.UnixMilli(now) }})
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Close()
	b := bb.(*redisBus)
	b.trimNow = func() bool { return false }

	const mA, mB, mC = "53394611", "53394612", "53394621"
	csc, wsc := new(casScratch), new(writeScratch) // reused by every call, like a bucket's
	cas := func(reqs ...casReq) []*call[casReq, casRes] {
		t.Helper()
		calls := make([]*call[casReq, casRes], len(reqs))
		for i, r := range reqs {
			calls[i] = &call[casReq, casRes]{req: r}
		}
		if err := b.execCAS(ctx, calls, csc); err != nil {
			t.Fatal(err)
		}
		return calls
	}
	k1, k2, k3 := b.vehicleKey("f/1"), b.vehicleKey("f/2"), b.vehicleKey("f/3")
	if _, err := s.Do("SET", k3, "9,"+mA+",1,x"); err != nil { // not a state: counts as none
		t.Fatal(err)
	}
	calls := cas(
		casReq{k3, "5," + mC + ",1"},
		casReq{k1, "5," + mA + ",1"},
		casReq{k2, "7," + mB + ",1"},
		casReq{k1, "4," + mB + ",1"}, // older than the first item: stale
		casReq{k1, "5," + mA + ",1"}, // the first item again: duplicate
		casReq{k1, "5," + mA + ",0"}, // same time, other outcome: stale
		casReq{k1, "6," + mB + ",1"}, // newer: applied, was in A
	)
	want := []casRes{
		{code: 1},
		{code: 1},
		{code: 1},
		{},
		{code: 2},
		{},
		{code: 1, old: vstate{mesh: mA, disp: true}},
	}
	for i, c := range calls {
		if c.err != nil || c.res != want[i] {
			t.Errorf("compare-and-set item %d (%s): %+v, %v; want %+v", i, c.req.fix, c.res, c.err, want[i])
		}
	}
	for k, want := range map[string]string{k1: "6," + mB + ",1," + mA + ",1", k2: "7," + mB + ",1,,0", k3: "5," + mC + ",1,,0"} {
		if v, err := s.Do("GET", k); err != nil || v != want {
			t.Fatalf("GET %s = %v, %v; want %q", k, v, err, want)
		}
	}

	// Mesh writes over three meshes of one call, interleaved.
	log := &eventLog{events: map[mesh.Code][]string{}}
	sub, err := b.Subscribe(log)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	codes := map[string]mesh.Code{mA: 53394611, mB: 53394612, mC: 53394621}
	if err := sub.Add(ctx, codes[mA], codes[mB], codes[mC]); err != nil {
		t.Fatal(err)
	}
	w := func(m, id string, ts int64, upsert bool) writeReq {
		o := op{mesh: m, upsert: upsert}
		vb := []byte(nil)
		entry := fmt.Sprintf("%d|", ts)
		if upsert {
			v := &meshcastv1.Vehicle{Id: id, Mesh: m, ObservedAtMs: ts}
			if vb, err = marshalVehicle(v); err != nil {
				t.Fatal(err)
			}
			entry += string(vb)
		}
		return writeReq{mesh: m, id: id, entry: entry, event: string(appendEvent(nil, o, id, vb, ts, now))}
	}
	reqs := []writeReq{
		w(mA, "f/1", 5, true),
		w(mB, "f/2", 7, true),
		w(mA, "f/1", 4, true),  // older than the first item: not written
		w(mA, "f/3", 5, false), // a removal: tombstone
		w(mC, "f/1", 6, true),
		w(mB, "f/2", 7, false), // same time as the upsert: not written
		w(mA, "f/1", 8, false), // newer: written
	}
	write := func(reqs ...writeReq) []*call[writeReq, bool] {
		t.Helper()
		calls := make([]*call[writeReq, bool], len(reqs))
		for i, r := range reqs {
			calls[i] = &call[writeReq, bool]{req: r}
		}
		if err := b.execWrite(ctx, calls, wsc); err != nil {
			t.Fatal(err)
		}
		return calls
	}
	// A first call on one mesh, so the scratch memory has been used before the main one.
	if c := write(w(mB, "f/0", 1, true)); !c[0].res || c[0].err != nil {
		t.Fatalf("first mesh write: %v, %v", c[0].res, c[0].err)
	}
	wcalls := write(reqs...)
	wantW := []bool{true, true, false, true, true, false, true}
	for i, c := range wcalls {
		if c.err != nil || c.res != wantW[i] {
			t.Errorf("mesh write %d (%s %s %q): %v, %v; want %v", i, c.req.mesh, c.req.id, c.req.entry[:2], c.res, c.err, wantW[i])
		}
	}
	for _, kv := range []struct{ m, id, want string }{{mA, "f/1", "8|"}, {mA, "f/3", "5|"}, {mB, "f/2", reqs[1].entry}, {mC, "f/1", reqs[4].entry}} {
		h, _ := b.meshKeys(kv.m)
		if v, err := s.Do("HGET", h, kv.id); err != nil || v != kv.want {
			t.Errorf("HGET %s %s = %q, %v; want %q", h, kv.id, v, err, kv.want)
		}
		if ms, err := s.Do("PTTL", h); err != nil || ms.(int64) <= 0 {
			t.Errorf("PTTL %s = %v, %v", h, ms, err)
		}
	}
	// And again with the scratch memory of a call over three meshes.
	if c := write(w(mC, "f/1", 9, true), w(mB, "f/0", 2, false)); !c[0].res || !c[1].res || c[0].err != nil || c[1].err != nil {
		t.Fatalf("last mesh writes: %v %v, %v %v", c[0].res, c[1].res, c[0].err, c[1].err)
	}
	wantEv := map[string][]string{mA: {"f/1@5", "f/3@5", "f/1@8"}, mB: {"f/0@1", "f/2@7", "f/0@2"}, mC: {"f/1@6", "f/1@9"}}
	deadline := time.Now().Add(30 * time.Second)
	for m, want := range wantEv {
		for !slices.Equal(log.on(codes[m]), want) {
			if time.Now().After(deadline) {
				t.Fatalf("events on %s = %v, want %v", m, log.on(codes[m]), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestRedisWriteTrim decides the write script's trim (random in production) and checks what it
// does: a batch without it keeps the entries at or before the cutoff (now - TTL), vehicles and
// tombstones alike; a batch with it deletes them from the meshes it writes and keeps the newer
// ones; a mesh the batch does not write is left alone.
func TestRedisWriteTrim(t *testing.T) {
	s := redistest.StartSingle(t)
	ctx := context.Background()
	const now, ttl = 1_700_000_000_000, 10_000
	bb, err := Open(ctx, s.URL(), Options{KeyPrefix: "tr", TTL: ttl * time.Millisecond, Now: func() time.Time { return time.UnixMilli(now) }})
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Close()
	b := bb.(*redisBus)
	var trim atomic.Bool
	b.trimNow = trim.Load

	const mA, mB = "53394611", "53394612"
	sc := new(writeScratch)
	write := func(m, id string, ts int64, upsert bool) {
		t.Helper()
		entry := fmt.Sprintf("%d|", ts)
		if upsert {
			entry += "v" // the script reads only the fix time before '|'
		}
		c := []*call[writeReq, bool]{{req: writeReq{mesh: m, id: id, entry: entry, event: "e"}}}
		if err := b.execWrite(ctx, c, sc); err != nil || !c[0].res || c[0].err != nil {
			t.Fatalf("write %s %s@%d: %v, %v, %v", m, id, ts, err, c[0].res, c[0].err)
		}
	}
	ids := func(m string) []string {
		t.Helper()
		h, _ := b.meshKeys(m)
		v, err := s.Do("HKEYS", h)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range v.([]any) {
			out = append(out, k.(string))
		}
		slices.Sort(out)
		return out
	}
	cutoff := int64(now - ttl)
	write(mA, "f/old", cutoff, true) // exactly TTL old: trimmed
	write(mA, "f/gone", cutoff-5, false)
	write(mA, "f/new", cutoff+1, true)
	write(mB, "f/old", cutoff-1, true)
	if got, want := ids(mA), []string{"f/gone", "f/new", "f/old"}; !slices.Equal(got, want) {
		t.Fatalf("mesh A without trims = %v, want %v", got, want)
	}
	trim.Store(true)
	write(mA, "f/next", now, true)
	if got, want := ids(mA), []string{"f/new", "f/next"}; !slices.Equal(got, want) {
		t.Fatalf("mesh A after a trimmed write = %v, want %v", got, want)
	}
	if got, want := ids(mB), []string{"f/old"}; !slices.Equal(got, want) {
		t.Fatalf("mesh B (not written) = %v, want %v", got, want)
	}
}

// TestRedisEarlyRounds runs Apply on a real Redis with early rounds and a gate timer that never
// fires, so every round opens because nothing else is on its way: a Hold keeps the armed round
// shut (the Apply cannot finish), its release opens it, and the Apply's mesh write then goes in
// a round of its own that opens as soon as the Apply waits in its bucket. An Apply handed the
// release of a hold (WithRelease) takes it over. Afterwards nothing is counted.
func TestRedisEarlyRounds(t *testing.T) {
	s := redistest.StartSingle(t)
	ctx := context.Background()
	bb, err := Open(ctx, s.URL(), Options{KeyPrefix: "er", BatchDelay: time.Millisecond, BatchEarly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Close()
	b := bb.(*redisBus)
	b.gate.t.Stop()
	ft := &fakeTimer{}
	b.gate.t = ft // before any Apply: only the counts open rounds now
	fix := func(id string) Update {
		return Update{Vehicle: &meshcastv1.Vehicle{Id: id, Mesh: "53394611", ObservedAtMs: time.Now().UnixMilli()}, Dispatchable: true}
	}
	apply := func(ctx context.Context, u Update) <-chan error {
		ch := make(chan error, 1)
		go func() {
			r, err := b.Apply(ctx, u)
			if err == nil && (!r.Applied || r.Events != 1) {
				err = fmt.Errorf("result %+v, want applied with one event", r)
			}
			ch <- err
		}()
		return ch
	}

	release := b.Hold() // a fix on its way
	first := apply(ctx, fix("f/1"))
	waitJoined(t, b.gate, 1) // the compare-and-set's bucket waits in the armed round
	select {
	case err := <-first:
		t.Fatalf("Apply returned (%v) while a hold kept its round shut", err)
	default:
	}
	wait := func(ch <-chan error) {
		t.Helper()
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(waitTimeout): // only a hung run: a round nobody opens
			t.Fatalf("Apply still waiting after %v: a round never opened", waitTimeout)
		}
	}
	release()
	wait(first)
	wait(apply(WithRelease(ctx, b.Hold()), fix("f/2")))
	b.gate.mu.Lock()
	active, rounds := b.gate.active, ft.armed()
	b.gate.mu.Unlock()
	if active != 0 || rounds != 4 {
		t.Fatalf("after both Applies: %d counted, %d rounds armed; want 0 and 4 (two steps each)", active, rounds)
	}
}
