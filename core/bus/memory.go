package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/meshcast/meshcast/core/mesh"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// ErrClosed is returned by the methods of a closed bus or subscription.
var ErrClosed = errors.New("bus: closed")

// memBus is the in-process Bus: the same semantics as the Redis bus with maps under one mutex.
// Events are delivered on the goroutine that called Apply, in the order the fixes were applied
// (the state lock is handed over to the delivery lock), so handlers must not call Apply.
type memBus struct {
	o Options
	m *metrics

	mu        sync.Mutex // guards the fields below
	veh       map[string]*memVeh
	meshes    map[string]*memMesh
	lastSweep time.Time
	closed    bool

	deliver sync.Mutex // held while events are handed to handlers, in apply order

	subMu sync.RWMutex // guards subs; held for reading during delivery
	subs  map[mesh.Code]map[*memSub]struct{}
}

type memVeh struct {
	ts        int64
	cur, prev vstate
	expires   time.Time
}

// memMesh mirrors the Redis keys of a mesh: ts holds the last fix time of every vehicle the mesh
// has seen within the TTL (removals as tombstones), live the payloads of the dispatchable ones.
type memMesh struct {
	ts   map[string]int64
	live map[string][]byte
}

// NewMemory returns an in-process bus (used by `meshcast demo` and unit tests). It panics on invalid
// options (see Open for an error instead).
func NewMemory(o Options) Bus {
	o, err := o.withDefaults()
	if err != nil {
		panic(err)
	}
	return newMemory(o)
}

func newMemory(o Options) *memBus {
	return &memBus{
		o:      o,
		m:      newMetrics(o.Registerer),
		veh:    map[string]*memVeh{},
		meshes: map[string]*memMesh{},
		subs:   map[mesh.Code]map[*memSub]struct{}{},
	}
}

type memEvent struct {
	code mesh.Code
	raw  []byte
}

func (b *memBus) Apply(ctx context.Context, u Update) (Result, error) {
	cur, err := check(u)
	if err != nil {
		b.m.applies.WithLabelValues("error").Inc()
		return Result{}, err
	}
	var vb []byte
	if cur.disp {
		if vb, err = marshalVehicle(u.Vehicle); err != nil {
			b.m.applies.WithLabelValues("error").Inc()
			return Result{}, err
		}
	}
	id, ts := u.Vehicle.Id, u.Vehicle.ObservedAtMs
	now := b.o.Now()
	nowMs := now.UnixMilli()

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return Result{}, ErrClosed
	}
	st := b.veh[id]
	if st != nil && now.After(st.expires) {
		st = nil
	}
	var old vstate
	applied := true
	if st != nil {
		switch {
		case st.ts > ts || (st.ts == ts && st.cur != cur):
			b.mu.Unlock()
			b.m.applies.WithLabelValues("stale").Inc()
			return Result{}, nil
		case st.ts == ts: // duplicate: replay the transition (a no-op unless a write was lost)
			old, applied = st.prev, false
		default:
			old = st.cur
		}
	}
	if applied {
		b.veh[id] = &memVeh{ts: ts, cur: cur, prev: old, expires: now.Add(b.o.StateTTL)}
	}
	cutoff := nowMs - b.o.TTL.Milliseconds()
	var evs []memEvent
	var ops [2]op
	for _, o := range plan(ops[:0], old, cur, u.Reason) {
		mm := b.meshes[o.mesh]
		if mm == nil {
			mm = &memMesh{ts: map[string]int64{}, live: map[string][]byte{}}
			b.meshes[o.mesh] = mm
		}
		if mm.apply(o, id, ts, vb, cutoff) {
			code, err := mesh.Parse(o.mesh)
			if err != nil { // checked before it was stored
				panic(fmt.Sprintf("bus: stored mesh %q: %v", o.mesh, err))
			}
			evs = append(evs, memEvent{code, appendEvent(nil, o, id, vb, ts, nowMs)})
		}
	}
	if now.Sub(b.lastSweep) >= b.o.TTL {
		b.sweep(now, cutoff)
	}
	if applied {
		b.m.applies.WithLabelValues("applied").Inc()
	} else {
		b.m.applies.WithLabelValues("stale").Inc()
	}
	res := Result{Applied: applied, Events: len(evs)}
	if len(evs) == 0 {
		b.mu.Unlock()
		return res, nil
	}
	b.m.published.Add(float64(len(evs)))
	b.deliver.Lock()
	b.mu.Unlock()
	defer b.deliver.Unlock()
	b.subMu.RLock()
	defer b.subMu.RUnlock()
	for _, e := range evs {
		subs := b.subs[e.code]
		if len(subs) == 0 {
			continue
		}
		ev, err := DecodeEvent(e.code, e.raw)
		if err != nil { // we just encoded it
			panic(err)
		}
		b.m.received.Inc()
		for s := range subs {
			s.h.OnEvent(e.code, ev, e.raw)
		}
	}
	return res, nil
}

// apply performs one guarded mesh write and reports whether it happened (and is to be published).
func (mm *memMesh) apply(o op, id string, ts int64, vb []byte, cutoff int64) bool {
	if cur, ok := mm.ts[id]; ok && cur >= ts {
		return false
	}
	mm.ts[id] = ts
	if o.upsert {
		mm.live[id] = vb
	} else {
		delete(mm.live, id)
	}
	mm.trim(cutoff)
	return true
}

// trim drops the entries (live or tombstone) whose fix is at or before cutoff.
func (mm *memMesh) trim(cutoff int64) {
	for id, t := range mm.ts {
		if t <= cutoff {
			delete(mm.ts, id)
			delete(mm.live, id)
		}
	}
}

// sweep drops expired vehicle states and idle meshes; called with b.mu held about once per TTL.
func (b *memBus) sweep(now time.Time, cutoff int64) {
	b.lastSweep = now
	for id, st := range b.veh {
		if now.After(st.expires) {
			delete(b.veh, id)
		}
	}
	for k, mm := range b.meshes {
		mm.trim(cutoff)
		if len(mm.ts) == 0 {
			delete(b.meshes, k)
		}
	}
}

func (b *memBus) Snapshot(ctx context.Context, m mesh.Code) ([]*meshcastv1.Vehicle, error) {
	cutoff := b.o.Now().UnixMilli() - b.o.TTL.Milliseconds()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	mm := b.meshes[m.String()]
	if mm == nil {
		return nil, nil
	}
	mm.trim(cutoff)
	out := make([]*meshcastv1.Vehicle, 0, len(mm.live))
	for _, vb := range mm.live {
		v, err := decodeVehicle(vb)
		if err != nil { // we encoded it
			panic(err)
		}
		out = append(out, v)
	}
	return out, nil
}

func (b *memBus) Subscribe(h Handler) (Subscription, error) {
	if h == nil {
		return nil, errors.New("bus: nil handler")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	return &memSub{b: b, h: h, meshes: map[mesh.Code]struct{}{}}, nil
}

func (b *memBus) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.subMu.Lock()
	b.subs = map[mesh.Code]map[*memSub]struct{}{}
	b.subMu.Unlock()
	return nil
}

type memSub struct {
	b      *memBus
	h      Handler
	meshes map[mesh.Code]struct{} // guarded by b.subMu
	closed bool                   // guarded by b.subMu
}

func (s *memSub) Add(ctx context.Context, ms ...mesh.Code) error {
	for _, m := range ms {
		if !m.Valid() {
			return fmt.Errorf("bus: subscribe: invalid mesh %d", uint64(m))
		}
	}
	s.b.mu.Lock()
	closed := s.b.closed
	s.b.mu.Unlock()
	s.b.subMu.Lock()
	defer s.b.subMu.Unlock()
	if closed || s.closed {
		return ErrClosed
	}
	for _, m := range ms {
		s.meshes[m] = struct{}{}
		set := s.b.subs[m]
		if set == nil {
			set = map[*memSub]struct{}{}
			s.b.subs[m] = set
		}
		set[s] = struct{}{}
	}
	return nil
}

func (s *memSub) Remove(ctx context.Context, ms ...mesh.Code) error {
	s.b.subMu.Lock()
	defer s.b.subMu.Unlock()
	s.remove(ms)
	return nil
}

func (s *memSub) remove(ms []mesh.Code) {
	for _, m := range ms {
		delete(s.meshes, m)
		if set := s.b.subs[m]; set != nil {
			delete(set, s)
			if len(set) == 0 {
				delete(s.b.subs, m)
			}
		}
	}
}

func (s *memSub) Close() error {
	s.b.subMu.Lock()
	defer s.b.subMu.Unlock()
	ms := make([]mesh.Code, 0, len(s.meshes))
	for m := range s.meshes {
		ms = append(ms, m)
	}
	s.remove(ms)
	s.closed = true
	return nil
}
