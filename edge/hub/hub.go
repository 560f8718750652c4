package hub

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/mesh"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrClosed is returned by Join on a closed hub.
var ErrClosed = errors.New("hub: closed")

// Options configure a Hub. The zero value is valid.
type Options struct {
	// TTL: a vehicle whose last fix is this old gets a STALE removal (and an upsert that is
	// already this old is ignored). Default 10s; use the bus's TTL.
	TTL time.Duration
	// Sweep is how often the TTL is checked. Default TTL/10, at most 1s.
	Sweep time.Duration
	// Shards is the number of lock shards (for meshes and for vehicles). Default 64.
	Shards int
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
	// Logger gets a line for resyncs and bad events. Default slog.Default().
	Logger *slog.Logger
	// Registerer gets the hub metrics (see the package doc). Nil: not registered.
	Registerer prometheus.Registerer
	// DeliverAll turns the fan-out's circle pre-filter off: every watcher of a mesh gets every
	// event of it (comparisons and tests).
	DeliverAll bool
}

func (o Options) withDefaults() (Options, error) {
	if o.TTL < 0 || o.Sweep < 0 || o.Shards < 0 {
		return o, fmt.Errorf("hub options: negative TTL %v, Sweep %v or Shards %d", o.TTL, o.Sweep, o.Shards)
	}
	if o.TTL == 0 {
		o.TTL = 10 * time.Second
	}
	if o.TTL < time.Millisecond {
		return o, fmt.Errorf("hub options: TTL %v below 1ms", o.TTL)
	}
	if o.Sweep == 0 {
		o.Sweep = min(o.TTL/10, time.Second)
	}
	if o.Shards == 0 {
		o.Shards = 64
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Watcher receives the events of the meshes it joined. Its methods are called with hub locks held:
// they must not block and must not call back into the hub.
type Watcher interface {
	// Deliver hands over one event. The event and its entry are shared: read-only.
	Deliver(ev *Event)
	// Resynced says that mesh m's state was just brought to the bus's snapshot and the difference
	// delivered: a vehicle the watcher expects in m (a move's upsert it waits for) that did not
	// come is not there.
	Resynced(m mesh.Code)
	// HubClosed says that the hub closed: no more events will come.
	HubClosed()
}

// Event is one change of a mesh's state, shared by every watcher of the mesh.
type Event struct {
	Mesh mesh.Code
	ID   string
	// ObservedAtMs is the time of the fix that caused the event (for a removal: of the fix that
	// removed the vehicle; for a STALE removal, the vehicle's last fix).
	ObservedAtMs int64
	// Upsert is the vehicle for an upsert, nil for a removal.
	Upsert *Entry
	// Removal is the removal (nil for an upsert).
	Removal *Removal
	// MovedTo is, for a removal caused by a move to another mesh, that mesh (else 0). A watcher
	// that also watches it keeps the vehicle: the upsert there follows or has already come.
	MovedTo mesh.Code
}

// Hub owns the edge's bus subscription: one subscription per mesh per process, reference counted
// by the watchers of the mesh, and the current state of each subscribed mesh.
type Hub struct {
	o   Options
	b   bus.Bus
	sub bus.Subscription
	m   *metrics

	seed    maphash.Seed
	meshes  []meshShard
	vehs    []vehShard
	closed  atomic.Bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	resyncs chan struct{} // signal: pending holds meshes to resync

	resyncMu sync.Mutex
	pending  map[mesh.Code]struct{}

	// Meshes whose last watcher left, for the unsubscriber: a rider leaving never waits on the
	// bus. unsubBusy: a batch is being unsubscribed; unsubDone is signalled after each batch.
	unsubMu   sync.Mutex
	unsubQ    []*meshState
	unsubBusy bool
	unsubDone *sync.Cond
	unsubSig  chan struct{}

	events, expired, skipped, deliveries atomic.Uint64
	accepts                              atomic.Uint64 // numbers the events that pass the vehicle's shard
}

// meshShard holds the states of some meshes; its lock guards only the map (lookups, adding and
// forgetting a mesh), never a fan-out.
type meshShard struct {
	mu     sync.RWMutex
	meshes map[mesh.Code]*meshState
	_      [32]byte // keep shards on separate cache lines
}

type vehShard struct {
	mu   sync.Mutex
	seen map[string]vehRecord // vehicle id → what the hub knows of its events (any mesh)
	_    [40]byte
}

// vehRecord is a vehicle's entry in its shard.
type vehRecord struct {
	t        int64  // newest fix time of any event seen
	last     uint64 // accept number (Hub.accepts) of the latest event that passed the shard
	inflight int32  // events that passed the shard and are not yet fanned out (or dropped)
}

// meshState is the state of one subscribed mesh. Fields below mu are guarded by it: the mesh's
// own lock, the only one held while an event of the mesh is fanned out to its watchers.
type meshState struct {
	code  mesh.Code
	ready chan struct{} // closed when seeded (err set on failure)

	mu       sync.Mutex
	err      error
	closing  bool          // the last watcher left (or the seed failed): being unsubscribed
	gone     chan struct{} // closed when unsubscribed and forgotten (only when closing)
	epoch    uint64        // incremented when a (re)seed starts
	wseq     uint64        // numbers the writes to vehicles
	vehicles map[string]slot
	watchers []watcherSlot
	index    map[Watcher]int // position in watchers
}

type slot struct {
	e     *Entry
	epoch uint64 // epoch of the write
	wseq  uint64 // meshState.wseq of the write
	n     uint64 // accept number of the event that wrote it
	// settled: an upsert of a bus event strictly newer than every event of the vehicle before it,
	// fanned out when every one of those had been fanned out and none had come after it. Only a
	// settled entry lets the next upsert skip watchers (see fanout).
	settled bool
}

// watcherSlot is one watcher of a mesh with its pre-filter circle, inline so that the fan-out
// reads contiguous memory for the watchers it skips.
type watcherSlot struct {
	w     Watcher
	c     localCircle // the zero value: no filtering
	since uint32      // meshState.wseq (its low bits) when c was set: later entries were judged by c
}

// New returns a hub over b. Close it to end the subscription and its goroutines.
func New(b bus.Bus, o Options) (*Hub, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	h := &Hub{
		o:        o,
		b:        b,
		m:        newMetrics(o.Registerer),
		seed:     maphash.MakeSeed(),
		meshes:   make([]meshShard, o.Shards),
		vehs:     make([]vehShard, o.Shards),
		resyncs:  make(chan struct{}, 1),
		pending:  map[mesh.Code]struct{}{},
		unsubSig: make(chan struct{}, 1),
	}
	h.unsubDone = sync.NewCond(&h.unsubMu)
	for i := range h.meshes {
		h.meshes[i].meshes = map[mesh.Code]*meshState{}
		h.vehs[i].seen = map[string]vehRecord{}
	}
	h.sub, err = b.Subscribe(handler{h})
	if err != nil {
		return nil, fmt.Errorf("hub: subscribe: %w", err)
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.wg.Add(3)
	go h.sweeper()
	go h.resyncer()
	go h.unsubscriber()
	return h, nil
}

// TTL returns the hub's TTL.
func (h *Hub) TTL() time.Duration { return h.o.TTL }

// Close ends the bus subscription and the hub's goroutines and tells every watcher (HubClosed).
func (h *Hub) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	h.cancel()
	h.wg.Wait()
	err := h.sub.Close() // unsubscribes the meshes still queued for the unsubscriber too
	h.unsubMu.Lock()
	queued := h.unsubQ
	h.unsubQ = nil
	h.unsubMu.Unlock()
	h.forget(queued)
	for i := range h.meshes {
		sh := &h.meshes[i]
		sh.mu.RLock()
		for _, st := range sh.meshes {
			st.mu.Lock()
			for _, ws := range st.watchers {
				ws.w.HubClosed()
			}
			st.watchers, st.index = nil, map[Watcher]int{}
			st.mu.Unlock()
		}
		sh.mu.RUnlock()
	}
	h.m.meshes.Set(0)
	if err != nil && !errors.Is(err, bus.ErrClosed) {
		return fmt.Errorf("hub: close subscription: %w", err)
	}
	return nil
}

func (h *Hub) meshShard(m mesh.Code) *meshShard {
	// meshes are dense decimal codes: mix them so neighbours land on different shards
	x := uint64(m) * 0x9E3779B97F4A7C15
	return &h.meshes[(x>>32)%uint64(len(h.meshes))]
}

// lookup returns mesh m's state, nil if nobody watches it.
func (h *Hub) lookup(m mesh.Code) *meshState {
	sh := h.meshShard(m)
	sh.mu.RLock()
	st := sh.meshes[m]
	sh.mu.RUnlock()
	return st
}

func (h *Hub) vehShard(id string) *vehShard {
	return &h.vehs[maphash.String(h.seed, id)%uint64(len(h.vehs))]
}

// Join registers w on the meshes and, for each mesh, calls seed with every vehicle of the mesh's
// current state, under the mesh's lock: every event of the mesh after that seed goes to w, every
// one before it is reflected in it. A mesh nobody watched yet is subscribed on the bus and seeded
// from its snapshot first (Join waits for that). Joining a mesh w already watches only calls seed
// again. On error (ctx, a closed hub, the bus) w may be registered on some of the meshes: call
// Leave with all of them.
func (h *Hub) Join(ctx context.Context, w Watcher, ms []mesh.Code, seed func(*Entry)) error {
	for _, m := range ms {
		if err := h.join(ctx, w, m, seed); err != nil {
			return err
		}
	}
	return nil
}

func (h *Hub) join(ctx context.Context, w Watcher, m mesh.Code, seed func(*Entry)) error {
	if !m.Valid() || m.Level() != mesh.ThirdLevel {
		return fmt.Errorf("hub: join: %d is not a third-order mesh", uint64(m))
	}
	sh := h.meshShard(m)
	for {
		if h.closed.Load() {
			return ErrClosed
		}
		sh.mu.Lock()
		st := sh.meshes[m]
		if st == nil {
			st = &meshState{code: m, ready: make(chan struct{}), vehicles: map[string]slot{}, index: map[Watcher]int{}}
			sh.meshes[m] = st
			h.m.meshes.Inc()
			sh.mu.Unlock()
			err := h.subscribe(ctx, st)
			st.mu.Lock()
			if err != nil {
				st.err = err
				h.drop(st) // unlocks
				close(st.ready)
				return err
			}
			h.register(st, w, seed)
			st.mu.Unlock()
			close(st.ready)
			return nil
		}
		sh.mu.Unlock()
		select {
		case <-st.ready:
		case <-ctx.Done():
			return fmt.Errorf("hub: join mesh %s: %w", m, ctx.Err())
		}
		st.mu.Lock()
		if st.closing { // being unsubscribed (or its seed failed): wait until it is forgotten
			gone := st.gone
			st.mu.Unlock()
			select {
			case <-gone:
				continue
			case <-ctx.Done():
				return fmt.Errorf("hub: join mesh %s: %w", m, ctx.Err())
			}
		}
		h.register(st, w, seed)
		st.mu.Unlock()
		return nil
	}
}

// register adds w to st (if new) and seeds it; called with st.mu held.
func (h *Hub) register(st *meshState, w Watcher, seed func(*Entry)) {
	if _, ok := st.index[w]; !ok {
		st.index[w] = len(st.watchers)
		st.watchers = append(st.watchers, watcherSlot{w: w})
	}
	if seed != nil {
		for _, s := range st.vehicles {
			seed(s.e)
		}
	}
}

// subscribe subscribes st's mesh on the bus and seeds its state from the snapshot.
func (h *Hub) subscribe(ctx context.Context, st *meshState) error {
	if err := h.sub.Add(ctx, st.code); err != nil {
		return fmt.Errorf("hub: subscribe mesh %s: %w", st.code, err)
	}
	if err := h.reseed(ctx, st); err != nil {
		return err
	}
	return nil
}

// drop marks st closing and queues it for the unsubscriber; called with st.mu held, returns with
// it unlocked. Joiners arriving meanwhile wait for st.gone.
func (h *Hub) drop(st *meshState) {
	st.closing = true
	st.gone = make(chan struct{})
	st.mu.Unlock()
	h.unsubMu.Lock()
	h.unsubQ = append(h.unsubQ, st)
	h.unsubMu.Unlock()
	select {
	case h.unsubSig <- struct{}{}:
	default:
	}
}

// unsubscriber unsubscribes, in batches, the meshes whose last watcher left, and forgets them.
func (h *Hub) unsubscriber() {
	defer h.wg.Done()
	var codes []mesh.Code
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-h.unsubSig:
		}
		for {
			h.unsubMu.Lock()
			batch := h.unsubQ
			h.unsubQ = nil
			h.unsubBusy = len(batch) > 0
			if !h.unsubBusy {
				h.unsubDone.Broadcast()
			}
			h.unsubMu.Unlock()
			if len(batch) == 0 {
				break
			}
			codes = codes[:0]
			for _, st := range batch {
				codes = append(codes, st.code)
			}
			// the hub's own context: a rider's cancelled context must not leave the mesh subscribed
			ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
			if err := h.sub.Remove(ctx, codes...); err != nil && !errors.Is(err, bus.ErrClosed) && h.ctx.Err() == nil {
				h.o.Logger.Warn("hub: unsubscribe meshes", "meshes", len(codes), "err", err)
			}
			cancel()
			h.forget(batch)
		}
	}
}

// forget removes unsubscribed meshes from their shards and wakes their joiners.
func (h *Hub) forget(batch []*meshState) {
	for _, st := range batch {
		sh := h.meshShard(st.code)
		sh.mu.Lock()
		if sh.meshes[st.code] == st {
			delete(sh.meshes, st.code)
			h.m.meshes.Dec()
		}
		sh.mu.Unlock()
		close(st.gone)
	}
}

// waitUnsubscribed waits until every mesh queued for unsubscription is unsubscribed (tests).
func (h *Hub) waitUnsubscribed() {
	h.unsubMu.Lock()
	for (len(h.unsubQ) > 0 || h.unsubBusy) && !h.closed.Load() {
		h.unsubDone.Wait()
	}
	h.unsubMu.Unlock()
}

// Leave unregisters w from the meshes; a mesh whose last watcher left is unsubscribed from the
// bus by the hub's own goroutine (Leave never waits on the bus) and forgotten. Meshes w does not
// watch are ignored.
func (h *Hub) Leave(w Watcher, ms []mesh.Code) {
	for _, m := range ms {
		st := h.lookup(m)
		if st == nil {
			continue
		}
		st.mu.Lock()
		i, ok := st.index[w]
		if st.closing || !ok {
			st.mu.Unlock()
			continue
		}
		last := len(st.watchers) - 1
		if i != last {
			st.watchers[i] = st.watchers[last]
			st.index[st.watchers[i].w] = i
		}
		st.watchers[last] = watcherSlot{}
		st.watchers = st.watchers[:last]
		delete(st.index, w)
		if len(st.watchers) > 0 || h.closed.Load() {
			st.mu.Unlock()
			continue
		}
		h.drop(st)
	}
}

// handler is the hub's bus.Handler (kept off the Hub's exported methods).
type handler struct{ h *Hub }

func (x handler) OnEvent(m mesh.Code, ev *meshcastv1.MeshEvent, raw []byte) { x.h.onEvent(m, ev) }
func (x handler) OnResync(m mesh.Code) {
	h := x.h
	h.resyncMu.Lock()
	h.pending[m] = struct{}{}
	h.resyncMu.Unlock()
	select {
	case h.resyncs <- struct{}{}:
	default:
	}
}

// onEvent applies one bus event to the mesh state and fans it out.
func (h *Hub) onEvent(m mesh.Code, ev *meshcastv1.MeshEvent) {
	h.m.received.Inc()
	switch k := ev.Kind.(type) {
	case *meshcastv1.MeshEvent_Upsert:
		if k.Upsert.ObservedAtMs <= h.cutoff() {
			h.m.dropped.WithLabelValues("expired").Inc()
			return
		}
		e, err := NewEntry(k.Upsert)
		if err != nil {
			h.m.dropped.WithLabelValues("bad").Inc()
			h.o.Logger.Warn("hub: bad upsert", "mesh", m.String(), "err", err)
			return
		}
		if e.Mesh != m {
			h.m.dropped.WithLabelValues("bad").Inc()
			h.o.Logger.Warn("hub: upsert of another mesh", "mesh", m.String(), "vehicle_mesh", e.Mesh.String())
			return
		}
		h.upsert(m, e, 0, false)
	case *meshcastv1.MeshEvent_Remove:
		var moved mesh.Code
		if ev.MovedTo != "" {
			moved, _ = mesh.Parse(ev.MovedTo) // an invalid one is treated as no move
		}
		id := k.Remove.GetId()
		h.remove(m, id, ev.ObservedAtMs, moved, func() *Removal { return NewRemoval(id, k.Remove.GetReason()) }, nil)
	}
}

// upsert applies an upsert to mesh m's state and fans it out, unless the hub has seen a newer
// event of the vehicle (on any mesh). reseed marks a write from a snapshot read in epoch ep:
// then an equal or newer state is kept.
func (h *Hub) upsert(m mesh.Code, e *Entry, ep uint64, reseed bool) {
	// The vehicle's newest time is checked and set under its shard's lock, released before the
	// mesh's: a vehicle's events of one mesh come in order (one bus goroutine per mesh, the
	// reseed and sweep compare under the mesh's lock), and riders order a vehicle's events of
	// different meshes by their time.
	vs := h.vehShard(e.ID)
	vs.mu.Lock()
	r, ok := vs.seen[e.ID]
	if ok && e.ObservedAtMs < r.t {
		vs.mu.Unlock()
		if !reseed {
			h.m.dropped.WithLabelValues("older").Inc()
		}
		return
	}
	// strictly newer than every event of the vehicle before it (none remembered: every earlier
	// one is older than the TTL, fanned out, and its states swept)
	newer := (!ok || e.ObservedAtMs > r.t) && !reseed
	prevN := r.last
	n := h.accept(vs, e.ID, r, e.ObservedAtMs)
	vs.mu.Unlock()
	defer h.fannedOut(vs, e.ID)
	st := h.lookup(m)
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	prev, had := st.vehicles[e.ID]
	if reseed && had && prev.e.ObservedAtMs >= e.ObservedAtMs {
		return
	}
	st.wseq++
	basis := had && prev.settled && prev.n == prevN // prev may let this upsert skip watchers
	alone := (newer || basis) && !h.o.DeliverAll && h.alone(vs, e.ID, n)
	st.vehicles[e.ID] = slot{e: e, epoch: st.epoch, wseq: st.wseq, n: n, settled: alone && newer}
	var filter *slot
	if alone && basis && !reseed {
		filter = &prev
	}
	h.fanout(st, &Event{Mesh: m, ID: e.ID, ObservedAtMs: e.ObservedAtMs, Upsert: e}, filter)
}

// accept records, in the vehicle's shard (locked), that an event of the vehicle at fix time t
// passed it, and returns the event's accept number. The event must be released by fannedOut.
func (h *Hub) accept(vs *vehShard, id string, r vehRecord, t int64) uint64 {
	n := h.accepts.Add(1)
	r.t = max(r.t, t)
	r.last = n
	r.inflight++
	vs.seen[id] = r
	return n
}

// fannedOut says that an accepted event of vehicle id was fanned out (or dropped).
func (h *Hub) fannedOut(vs *vehShard, id string) {
	vs.mu.Lock()
	r := vs.seen[id]
	r.inflight--
	vs.seen[id] = r
	vs.mu.Unlock()
}

// alone reports whether the vehicle's event numbered n is its latest accepted event and the only
// one not fanned out yet: every event of the vehicle accepted before it has reached the watchers.
// Called under the lock of the event's mesh (lock order: mesh, then vehicle shard).
func (h *Hub) alone(vs *vehShard, id string, n uint64) bool {
	vs.mu.Lock()
	r := vs.seen[id]
	vs.mu.Unlock()
	return r.last == n && r.inflight == 1
}

// remove applies a removal of vehicle id from mesh m and fans it out (removals are never dropped
// for being older: a watcher applies a removal only to a vehicle it holds in that mesh with an
// older or equal fix). If match is not nil, the removal happens only while the state holds that
// very entry (TTL and resync removals).
func (h *Hub) remove(m mesh.Code, id string, t int64, moved mesh.Code, rem func() *Removal, match *Entry) {
	vs := h.vehShard(id)
	vs.mu.Lock()
	h.accept(vs, id, vs.seen[id], t) // breaks the chain of settled upserts: the next one goes to all
	vs.mu.Unlock()
	defer h.fannedOut(vs, id)
	st := h.lookup(m)
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	cur, ok := st.vehicles[id]
	if match != nil && (!ok || cur.e != match) {
		return
	}
	if ok && cur.e.ObservedAtMs <= t {
		delete(st.vehicles, id)
	}
	if len(st.watchers) == 0 {
		return
	}
	h.fanout(st, &Event{Mesh: m, ID: id, ObservedAtMs: t, Removal: rem(), MovedTo: moved}, nil)
}

// fanout hands ev to st's watchers; called with st.mu held (the only lock held). With prev (an
// upsert's filter), it skips the watchers whose circle has both ev's position and prev's outside
// it, where prev is the vehicle's previous entry in the mesh, written after the circle was set,
// and settled (see slot) with nothing of the vehicle between it and ev. Such a watcher evaluated
// prev after every earlier event of the vehicle and against this circle, so it holds the vehicle
// at most as a LEFT_AREA removal still to be sent, which ev would leave as it is: ev is a no-op
// for it (the package doc gives the whole argument).
func (h *Hub) fanout(st *meshState, ev *Event, prev *slot) {
	h.events.Add(1)
	n := 0
	for i := range st.watchers {
		ws := &st.watchers[i]
		// prev written after the circle was set (serial-number comparison of the low 32 bits:
		// an entry is never more than a TTL's writes old, so a wrap only ever delivers)
		if prev != nil && int32(uint32(prev.wseq)-ws.since) > 0 && ws.c.outside(ev.Upsert) && ws.c.outside(prev.e) {
			continue
		}
		ws.w.Deliver(ev)
		n++
	}
	h.deliveries.Add(uint64(n))
	h.m.deliveries.Add(float64(n))
	if skipped := len(st.watchers) - n; skipped > 0 {
		h.skipped.Add(uint64(skipped))
		h.m.skipped.Add(float64(skipped))
	}
}

func (h *Hub) cutoff() int64 { return h.o.Now().UnixMilli() - h.o.TTL.Milliseconds() }

// reseed reads mesh st's snapshot and brings the state to it: new or newer vehicles are upserted,
// vehicles the snapshot lacks (and no event touched since the read began) are removed as STALE.
func (h *Hub) reseed(ctx context.Context, st *meshState) error {
	st.mu.Lock()
	st.epoch++
	ep := st.epoch
	st.mu.Unlock()
	vs, err := h.b.Snapshot(ctx, st.code)
	if err != nil {
		return fmt.Errorf("hub: snapshot of mesh %s: %w", st.code, err)
	}
	in := make(map[string]struct{}, len(vs))
	cutoff := h.cutoff()
	for _, v := range vs {
		if v.ObservedAtMs <= cutoff || v.Mesh != st.code.String() {
			continue
		}
		e, err := NewEntry(v)
		if err != nil {
			h.m.dropped.WithLabelValues("bad").Inc()
			continue
		}
		in[e.ID] = struct{}{}
		h.upsert(st.code, e, ep, true)
	}
	st.mu.Lock()
	var gone []*Entry
	for id, s := range st.vehicles {
		if _, ok := in[id]; !ok && s.epoch < ep {
			gone = append(gone, s.e)
		}
	}
	st.mu.Unlock()
	for _, e := range gone {
		h.remove(st.code, e.ID, e.ObservedAtMs, 0, func() *Removal {
			return NewRemoval(e.ID, meshcastv1.RemovalReason_REMOVAL_REASON_STALE)
		}, e)
	}
	st.mu.Lock()
	for _, ws := range st.watchers {
		ws.w.Resynced(st.code)
	}
	st.mu.Unlock()
	return nil
}

// Resync re-reads mesh m's snapshot now and sends the watchers the difference, as the hub does by
// itself when the bus reports a possible gap (OnResync). A mesh nobody watches is ignored.
func (h *Hub) Resync(ctx context.Context, m mesh.Code) error {
	st := h.lookup(m)
	if st == nil {
		return nil
	}
	st.mu.Lock()
	ok := !st.closing && st.err == nil
	if ok {
		select {
		case <-st.ready:
		default:
			ok = false // being seeded: the seed reads the snapshot after the subscription
		}
	}
	st.mu.Unlock()
	if !ok {
		return nil
	}
	h.m.resyncs.Inc()
	return h.reseed(ctx, st)
}

// resyncer re-reads the snapshot of the meshes the bus asked to resync.
func (h *Hub) resyncer() {
	defer h.wg.Done()
	var failed []mesh.Code
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-h.resyncs:
		}
		h.resyncMu.Lock()
		ms := make([]mesh.Code, 0, len(h.pending))
		for m := range h.pending {
			ms = append(ms, m)
		}
		clear(h.pending)
		h.resyncMu.Unlock()
		failed = failed[:0]
		for _, m := range ms {
			if err := h.Resync(h.ctx, m); err != nil && h.ctx.Err() == nil {
				h.o.Logger.Warn("hub: resync failed, retrying", "mesh", m.String(), "err", err)
				failed = append(failed, m)
			}
		}
		if len(failed) == 0 {
			continue
		}
		// one pause for the whole batch, then try the failed meshes again
		t := time.NewTimer(time.Second)
		select {
		case <-h.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		for _, m := range failed {
			handler{h}.OnResync(m)
		}
	}
}

// sweeper runs Sweep every Options.Sweep.
func (h *Hub) sweeper() {
	defer h.wg.Done()
	t := time.NewTicker(h.o.Sweep)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
			h.Sweep()
		}
	}
}

// Sweep removes (STALE) the vehicles whose last fix is at least TTL old at Options.Now and
// forgets old per-vehicle times. The hub runs it every Options.Sweep; tests with a fake clock call
// it directly.
func (h *Hub) Sweep() {
	cutoff := h.cutoff()
	var stale []*Entry
	var sts []*meshState
	for i := range h.meshes {
		sh := &h.meshes[i]
		sh.mu.RLock()
		for _, st := range sh.meshes {
			sts = append(sts, st)
		}
		sh.mu.RUnlock()
	}
	for _, st := range sts {
		st.mu.Lock()
		for _, s := range st.vehicles {
			if s.e.ObservedAtMs <= cutoff {
				stale = append(stale, s.e)
			}
		}
		st.mu.Unlock()
	}
	for _, e := range stale {
		h.expired.Add(1)
		h.m.expired.Inc()
		h.remove(e.Mesh, e.ID, e.ObservedAtMs, 0, func() *Removal {
			return NewRemoval(e.ID, meshcastv1.RemovalReason_REMOVAL_REASON_STALE)
		}, e)
	}
	for i := range h.vehs {
		vs := &h.vehs[i]
		vs.mu.Lock()
		for id, r := range vs.seen {
			if r.t <= cutoff && r.inflight == 0 {
				delete(vs.seen, id)
			}
		}
		vs.mu.Unlock()
	}
}

// Stats are counters of the hub's work since New.
type Stats struct {
	Meshes     int    // meshes subscribed now (not counting those being unsubscribed)
	Vehicles   int    // vehicles held now (all meshes)
	Watchers   int    // (watcher, mesh) registrations now
	Events     uint64 // events fanned out
	Deliveries uint64 // Deliver calls, all events
	Skipped    uint64 // watchers the circle pre-filter skipped (Deliver not called), all events
	Encodings  uint64 // vehicle and removal encodings done by this process (all hubs)
	Expired    uint64 // STALE removals from the TTL
}

// Stats returns the hub's counters (it walks all meshes: not for hot paths).
func (h *Hub) Stats() Stats {
	s := Stats{Events: h.events.Load(), Deliveries: h.deliveries.Load(), Skipped: h.skipped.Load(), Encodings: encodes.Load(), Expired: h.expired.Load()}
	for i := range h.meshes {
		sh := &h.meshes[i]
		sh.mu.RLock()
		for _, st := range sh.meshes {
			st.mu.Lock()
			if !st.closing {
				s.Meshes++
				s.Vehicles += len(st.vehicles)
				s.Watchers += len(st.watchers)
			}
			st.mu.Unlock()
		}
		sh.mu.RUnlock()
	}
	return s
}
