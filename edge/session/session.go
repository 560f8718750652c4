package session

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshcast/meshcast/core/mesh"
	"github.com/meshcast/meshcast/edge/hub"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// Options configure a session. The zero value means the defaults.
type Options struct {
	DefaultRadiusM uint32        // radius_m when the request has 0. Default 1000.
	MaxRadiusM     uint32        // largest radius_m accepted. Default 3000.
	Heartbeat      time.Duration // a Heartbeat event when nothing else was sent for this long. Default 15s.
	// QueueLimit is the largest number of distinct vehicles with an update pending (updates of one
	// vehicle are coalesced, the latest wins) before the rider is cut with ErrTooSlow. Default 256.
	QueueLimit int
	MaxBatch   int // most frames one Next returns. Default 64.
	// WriteDelay holds a rider's updates for this long after the first one became pending, so
	// that those arriving meanwhile leave in the same batch (one write), each vehicle's latest
	// only. Snapshots and a batch behind a full one are not held. 0: every update at once.
	WriteDelay time.Duration
	Now        func() time.Time // the clock. Default time.Now.
	// FirstSeq is the seq of the first frame, to continue a stream's numbering (SSE: Last-Event-ID
	// + 1). 0 means 1.
	FirstSeq uint64
	// Metrics gets the session counters (NewMetrics, shared by all sessions). Nil: not counted.
	Metrics *Metrics
}

var (
	// ErrTooSlow: the rider fell behind (WebSocket close 4008, gRPC RESOURCE_EXHAUSTED, SSE end of
	// stream).
	ErrTooSlow = errors.New("rider too slow")
	// ErrClosed: the session was closed (Close, or the hub closed).
	ErrClosed = errors.New("session closed")
)

// Session is one rider's stream: the vehicles of its area as a Snapshot followed by the changes.
// Next is called by one goroutine (the writer); Move and Close may be called from others.
type Session struct {
	h      *hub.Hub
	o      Options
	w      *watcher
	ttlMs  int64
	ctx    context.Context // ends a Join in progress on Close
	cancel context.CancelFunc

	moveMu sync.Mutex  // serialises Move and leaving the hub
	joined []mesh.Code // meshes registered with the hub (guarded by moveMu)

	signal chan struct{}                     // cap 1: something for Next
	timer  *time.Timer                       // Next's wake-up: calls wake (armed by Next only)
	notify atomic.Pointer[func(urgent bool)] // polled sessions (SetNotify): called instead of signal

	mu       sync.Mutex // guards the rest
	a        area
	items    map[string]*item // the vehicles of the rider's view (and those with a removal pending)
	shown    itemHeap         // with a cap: the N nearest (max-heap)
	rest     itemHeap         // with a cap: the other vehicles in the area (min-heap)
	ready    []*item          // FIFO of items with an op pending (may hold stale entries) from head
	head     int
	later    laterHeap // items whose upsert waits for min_interval_ms
	transits []*item   // items waiting for the upsert of a move
	npend    int       // items with an op pending
	needSnap bool      // the next frame is a Snapshot
	joining  bool      // a Join is in progress: the view is incomplete
	waiting  bool      // Next waits for the signal of a new update (not held by WriteDelay)
	holdNs   int64     // with WriteDelay: the pending updates may leave at this time (Unix ns)
	seq      uint64
	lastSend time.Time
	err      error
	left     bool // left the hub after a cut
	closed   bool // Close was called
	outs     []out
	snap     []vehicle
	touched  []*item
	observed []int64 // Batch.Observed
}

type area struct {
	lat, lon, radius float64
	latRad, cosLat   float64
	classes          uint32 // bit per VehicleClass; 0: all
	maxN             int
	interval         time.Duration
	meshes           []mesh.Code // sorted
}

func newArea(req *meshcastv1.WatchRequest, o Options) (area, error) {
	if err := Validate(req, o); err != nil {
		return area{}, err
	}
	cover, err := mesh.Cover(req.Lat, req.Lon, float64(req.RadiusM))
	if err != nil { // Validate checked the domain and radius
		return area{}, fmt.Errorf("session: cover: %w", err)
	}
	slices.Sort(cover)
	a := area{
		lat: req.Lat, lon: req.Lon, radius: float64(req.RadiusM),
		latRad: req.Lat * degToRad, cosLat: math.Cos(req.Lat * degToRad),
		maxN:     int(req.MaxVehicles),
		interval: time.Duration(req.MinIntervalMs) * time.Millisecond,
		meshes:   cover,
	}
	for _, c := range req.Classes {
		a.classes |= 1 << uint(c)
	}
	return a, nil
}

const degToRad = math.Pi / 180

// distance returns the distance from the centre to e and whether it is within the radius. It is
// mesh.DistanceM (haversine on the same sphere) with the cosines precomputed, and skips the
// trigonometry for vehicles whose latitude alone puts them beyond the radius (the meridian arc is
// a lower bound of the great-circle distance).
func (a *area) distance(e *hub.Entry) (float64, bool) {
	dp := e.LatRad - a.latRad
	if math.Abs(dp)*mesh.EarthRadiusM > a.radius+1 {
		return math.Inf(1), false
	}
	s1 := math.Sin(dp / 2)
	s2 := math.Sin((e.Lon - a.lon) * degToRad / 2)
	h := s1*s1 + a.cosLat*e.CosLat*(s2*s2)
	d := 2 * mesh.EarthRadiusM * math.Asin(math.Sqrt(min(1, h)))
	return d, d <= a.radius
}

func (a *area) watches(m mesh.Code) bool {
	_, ok := slices.BinarySearch(a.meshes, m)
	return ok
}

func (a *area) classOK(c meshcastv1.VehicleClass) bool {
	if a.classes == 0 {
		return true
	}
	if c == meshcastv1.VehicleClass_VEHICLE_CLASS_UNSPECIFIED {
		c = meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD // UNSPECIFIED means STANDARD
	}
	return c >= 0 && c < 32 && a.classes&(1<<uint(c)) != 0
}

type opKind uint8

const (
	opNone opKind = iota
	opUpsert
	opRemove
)

// item is one vehicle of the view.
type item struct {
	e        *hub.Entry   // latest position (never nil); e.ID is the vehicle's id
	rem      *hub.Removal // why it stopped being in (nil: LEFT_AREA)
	mesh     mesh.Code    // mesh the vehicle is in (for a move in progress: the mesh it moves to)
	t        int64        // fix time of the latest event applied
	dist     float64
	due      int64 // when a deferred upsert may go (Unix ns)
	lastSent int64 // when the last upsert was sent (Unix ns), 0: never
	lidx     int32 // index in Session.later, -1 if not there
	hidx     int32 // index in its cap heap

	in      bool   // in the area: within the radius, of a wanted class
	shown   bool   // in the rider's view (in, and among the N nearest with a cap)
	sent    bool   // the rider has it, as of the frames returned so far
	transit bool   // removed from its mesh by a move to a watched mesh: the upsert follows
	queued  bool   // in Session.ready
	op      opKind // the pending update (coalesced: the latest wins)
	heap    int8   // 0: none, 1: shown, 2: rest
}

// out is one frame of a batch before encoding.
type out struct {
	kind Kind
	v    vehicle
	r    *hub.Removal
}

// watcher is the session's hub.Watcher (kept off Session's exported methods).
type watcher struct{ s *Session }

// New validates req, joins the meshes of its area and returns the session; the first Next returns
// the Snapshot. The caller must Close the session.
func New(h *hub.Hub, req *meshcastv1.WatchRequest, o Options) (*Session, error) {
	o = o.withDefaults()
	a, err := newArea(req, o)
	if err != nil {
		return nil, err
	}
	s := &Session{
		h:        h,
		o:        o,
		ttlMs:    h.TTL().Milliseconds(),
		signal:   make(chan struct{}, 1),
		seq:      max(o.FirstSeq, 1) - 1,
		lastSend: o.Now(),
	}
	s.w = &watcher{s}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if o.Metrics != nil {
		o.Metrics.active.Inc()
	}
	if err := s.move(a); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Move validates req and moves the area to it: the next Next starts with a new Snapshot (the
// pending events of the old area are dropped). A bad request (*InvalidError) leaves the session as
// it was; any other error (the hub or the bus failed) ends the session: Next returns it.
func (s *Session) Move(req *meshcastv1.WatchRequest) error {
	a, err := newArea(req, s.o)
	if err != nil {
		return err
	}
	if s.o.Metrics != nil {
		s.o.Metrics.moves.Inc()
	}
	return s.move(a)
}

func (s *Session) move(a area) error {
	s.moveMu.Lock()
	defer s.moveMu.Unlock()
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	s.a = a
	s.resetView()
	s.needSnap, s.joining = true, true
	s.mu.Unlock()

	old := s.joined
	// The hub's pre-filter must not judge an event by the old circle once the area below
	// changes: clear it on every mesh first, set the new one once every seed is applied.
	s.h.SetCircle(s.w, old, nil)
	err := s.h.Join(s.ctx, s.w, a.meshes, s.seedEntry)
	if err != nil {
		s.h.Leave(s.w, old)
		s.h.Leave(s.w, a.meshes)
		s.joined = nil
		err = fmt.Errorf("session: join area: %w", err)
	} else {
		s.joined = a.meshes
		var gone []mesh.Code
		for _, m := range old {
			if !a.watches(m) {
				gone = append(gone, m)
			}
		}
		s.h.Leave(s.w, gone)
	}
	s.mu.Lock()
	s.joining = false
	if err != nil && s.err == nil {
		s.err = err
		s.resetView()
	}
	if s.err != nil {
		err = s.err
	}
	s.mu.Unlock()
	if err == nil {
		c := hub.NewCircle(a.lat, a.lon, a.radius)
		s.h.SetCircle(s.w, a.meshes, &c)
	}
	s.wakeUp(true)
	return err
}

// Pending returns how many vehicles have an update waiting for Next (the rider's queue depth).
func (s *Session) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.npend
}

// Close ends the session: it leaves the hub, and Next returns ErrClosed. It may be called more than
// once and concurrently with Next and Move.
func (s *Session) Close() {
	s.mu.Lock()
	first := !s.closed
	s.closed = true
	if s.err != ErrClosed {
		s.err = ErrClosed
		s.resetView()
	}
	s.mu.Unlock()
	if first && s.o.Metrics != nil {
		s.o.Metrics.active.Dec()
	}
	s.cancel()
	s.wakeUp(true)
	s.leave()
}

// leave unregisters from the hub (after Close or a cut).
func (s *Session) leave() {
	s.moveMu.Lock()
	defer s.moveMu.Unlock()
	if s.joined != nil {
		s.h.Leave(s.w, s.joined)
		s.joined = nil
	}
}

// resetView forgets the view and everything pending; called with mu held.
func (s *Session) resetView() {
	s.items = map[string]*item{}
	s.shown.reset()
	s.rest.reset()
	s.shown.tag, s.rest.tag = 1, 2
	clear(s.ready)
	s.ready, s.head = s.ready[:0], 0
	clear(s.later)
	s.later = s.later[:0]
	clear(s.transits)
	s.transits = s.transits[:0]
	s.npend = 0
}

// wakeUp tells the writer there is something for it: a polled session's notify (urgent: a
// snapshot, or the session ended: not to be held back), else the signal NextBatch waits on.
func (s *Session) wakeUp(urgent bool) {
	if fn := s.notify.Load(); fn != nil {
		(*fn)(urgent)
		return
	}
	s.wake()
}

func (s *Session) wake() {
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// seedEntry adds a vehicle of a mesh's state (called by Join under the mesh's lock).
func (s *Session) seedEntry(e *hub.Entry) {
	s.mu.Lock()
	if s.err == nil {
		s.upsert(e)
	}
	s.mu.Unlock()
}

func (w *watcher) Deliver(ev *hub.Event) {
	s := w.s
	s.mu.Lock()
	if s.err != nil || !s.a.watches(ev.Mesh) {
		s.mu.Unlock()
		return
	}
	if ev.Upsert != nil {
		s.upsert(ev.Upsert)
	} else {
		s.remove(ev)
	}
	// Only a writer parked for news is woken: one busy writing finds the update when it comes
	// back, one held by WriteDelay when its timer fires.
	urgent := s.err != nil
	wake := urgent || s.npend > 0 && s.waiting
	if wake {
		s.waiting = false
	}
	s.mu.Unlock()
	if wake {
		s.wakeUp(urgent)
	}
}

// Resynced drops the vehicles waiting for a move's upsert on mesh m: m was just re-read from the
// bus and the upsert did not come, so they are not there.
func (w *watcher) Resynced(m mesh.Code) {
	s := w.s
	s.mu.Lock()
	if s.err != nil || len(s.transits) == 0 {
		s.mu.Unlock()
		return
	}
	for _, it := range s.transits {
		if it.transit && it.mesh == m && s.items[it.e.ID] == it {
			s.dropTransit(it)
		}
	}
	urgent := s.err != nil
	pending := s.npend > 0 || urgent
	s.mu.Unlock()
	if pending {
		s.wakeUp(urgent)
	}
}

// dropTransit removes (STALE) a vehicle whose move's upsert will not come (mu held).
func (s *Session) dropTransit(it *item) {
	it.transit = false
	it.rem = hub.NewRemoval(it.e.ID, meshcastv1.RemovalReason_REMOVAL_REASON_STALE)
	s.setIn(it, false, false)
}

func (w *watcher) HubClosed() {
	s := w.s
	s.mu.Lock()
	if s.err == nil {
		s.err = ErrClosed
		s.resetView()
	}
	s.mu.Unlock()
	s.wakeUp(true)
}

// upsert applies a vehicle's new position (mu held).
func (s *Session) upsert(e *hub.Entry) {
	it := s.items[e.ID]
	if it != nil && e.ObservedAtMs < it.t {
		return // older than what the view holds
	}
	d, in := s.a.distance(e)
	in = in && s.a.classOK(e.Class)
	if it == nil {
		if !in {
			return
		}
		it = &item{e: e, lidx: -1}
		s.items[e.ID] = it
	}
	if it.transit {
		it.transit = false
	}
	changed := it.e != e
	it.e, it.mesh, it.t, it.dist = e, e.Mesh, e.ObservedAtMs, d
	if !in {
		it.rem = nil // LEFT_AREA
	}
	s.setIn(it, in, changed)
}

// remove applies a removal (mu held): only to a vehicle the view holds in that mesh with a fix not
// newer than the removal's. A removal caused by a move to a mesh of the area keeps the vehicle.
func (s *Session) remove(ev *hub.Event) {
	it := s.items[ev.ID]
	if it == nil || !it.in || it.mesh != ev.Mesh || ev.ObservedAtMs < it.t {
		return
	}
	it.t = ev.ObservedAtMs
	if ev.MovedTo != 0 && s.a.watches(ev.MovedTo) {
		it.mesh = ev.MovedTo
		if !it.transit {
			it.transit = true
			if len(s.transits) >= 64 {
				s.compactTransits()
			}
			s.transits = append(s.transits, it)
		}
		return
	}
	it.transit = false
	it.rem = ev.Removal
	s.setIn(it, false, false)
}

// setIn records whether it is in the area (changed: its position changed), updates the nearest-N
// cap and queues what the rider must be sent: removals before additions, so that the rider never
// holds more than N vehicles.
func (s *Session) setIn(it *item, in, changed bool) {
	if s.a.maxN == 0 {
		it.in, it.shown = in, in
		s.reconcile(it, changed)
		return
	}
	s.heapRemove(it)
	it.in, it.shown = in, false
	if in {
		heap.Push(&s.rest, it)
	}
	touched := append(s.touched[:0], it)
	touched = s.rebalance(touched)
	for _, x := range touched {
		if !x.shown {
			s.reconcile(x, false)
		}
	}
	for _, x := range touched {
		if x.shown {
			s.reconcile(x, x == it && changed)
		}
	}
	clear(touched)
	s.touched = touched[:0]
}

// rebalance restores the cap's invariant: shown holds the maxN nearest of the area (by distance,
// then id), rest the others. It appends the items that changed sides to touched.
func (s *Session) rebalance(touched []*item) []*item {
	for s.shown.Len() < s.a.maxN && s.rest.Len() > 0 {
		x := heap.Pop(&s.rest).(*item)
		heap.Push(&s.shown, x)
		x.shown = true
		touched = append(touched, x)
	}
	for s.shown.Len() > 0 && s.rest.Len() > 0 && nearer(s.rest.s[0], s.shown.s[0]) {
		a := heap.Pop(&s.shown).(*item)
		b := heap.Pop(&s.rest).(*item)
		heap.Push(&s.rest, a)
		heap.Push(&s.shown, b)
		a.shown, b.shown = false, true
		touched = append(touched, a, b)
	}
	return touched
}

func (s *Session) heapRemove(it *item) {
	switch it.heap {
	case 1:
		heap.Remove(&s.shown, int(it.hidx))
	case 2:
		heap.Remove(&s.rest, int(it.hidx))
	}
	it.heap = 0
}

// reconcile queues the update that brings the rider to it's target state (mu held).
func (s *Session) reconcile(it *item, changed bool) {
	switch {
	case s.needSnap:
		s.unqueue(it) // the snapshot carries it
	case it.shown && (!it.sent || changed || it.op == opRemove):
		s.enqueue(it, opUpsert)
	case !it.shown && it.sent:
		s.enqueue(it, opRemove)
	case !it.shown && !it.sent:
		s.unqueue(it) // the rider never saw it
	}
	if !it.in && it.op == opNone && (!it.sent || s.needSnap) && s.items[it.e.ID] == it {
		delete(s.items, it.e.ID)
	}
}

func (s *Session) enqueue(it *item, op opKind) {
	added := false // an update more counts toward QueueLimit
	if it.op == opNone {
		if s.npend == 0 && s.o.WriteDelay > 0 {
			s.holdNs = s.o.Now().UnixNano() + int64(s.o.WriteDelay)
		}
		s.npend++
		added = true
	}
	it.op = op
	switch {
	case it.queued:
	case op == opRemove && it.lidx >= 0:
		heap.Remove(&s.later, int(it.lidx)) // removals are not delayed
		added = true
	case op == opUpsert && it.lidx < 0 && s.a.interval > 0 && it.lastSent != 0:
		if due := it.lastSent + int64(s.a.interval); s.o.Now().UnixNano() < due {
			it.due = due
			heap.Push(&s.later, it)
		}
	}
	if it.lidx < 0 && !it.queued {
		it.queued = true
		s.ready = append(s.ready, it)
		if len(s.ready)-s.head > 2*s.npend+64 {
			s.compact()
		}
	}
	// updates waiting for min_interval_ms are not the rider's fault; replacing a vehicle's
	// pending update adds nothing (the hub's pre-filter skips such no-op deliveries)
	if added && s.npend-len(s.later) > s.o.QueueLimit {
		s.cut()
	}
}

func (s *Session) unqueue(it *item) {
	if it.op == opNone {
		return
	}
	it.op = opNone
	s.npend--
	if it.lidx >= 0 {
		heap.Remove(&s.later, int(it.lidx))
	}
}

// compact drops the stale entries of the ready FIFO.
func (s *Session) compact() {
	live := s.ready[:0]
	for _, it := range s.ready[s.head:] {
		if it.op != opNone && it.lidx < 0 {
			live = append(live, it)
		} else {
			it.queued = false
		}
	}
	clear(s.ready[len(live):])
	s.ready, s.head = live, 0
}

// cut ends a rider that fell behind.
func (s *Session) cut() {
	s.err = ErrTooSlow
	s.resetView()
	if s.o.Metrics != nil {
		s.o.Metrics.cuts.Inc()
	}
}

// NextBatch blocks until at least one event is ready (or the heartbeat is due), then appends up
// to MaxBatch events to the buffer buf returns, each encoded once in f's encoding and framed by
// f, and returns that buffer and what it holds. buf is called only once a batch is ready (a
// pool's Get: a waiting rider holds no buffer). It returns ErrTooSlow once the rider was cut,
// ErrClosed after Close, ctx.Err() when ctx ends, or the error of a failed Move (then buf was not
// called). NextBatch must not be called concurrently with itself or Next.
func (s *Session) NextBatch(ctx context.Context, f Framing, buf func() []byte) ([]byte, Batch, error) {
	var (
		bt Batch
		b  []byte
	)
	err := s.next(ctx, func(now time.Time) {
		b, bt = s.emitBatch(now, f, buf)
	})
	return b, bt, err
}

// SetNotify makes the session polled: instead of a writer waiting in NextBatch, the caller calls
// TryBatch, and fn is called when the session may have something after TryBatch found it idle:
// once per idle-to-pending change for updates (urgent false), and for a snapshot after a Move
// or the session's end (urgent true: not to be held back). fn is called without the session's
// locks, possibly under the hub's lock of a mesh (from the fan-out): it must not call into the
// hub, and must not block. A polled session should have no WriteDelay (the caller holds
// batches itself).
func (s *Session) SetNotify(fn func(urgent bool)) {
	s.notify.Store(&fn)
}

// TryBatch is NextBatch without waiting: when a batch is ready it is encoded as NextBatch does
// and returned with next 0 when more is ready at once (a full batch), else with how long until
// the session may have something without news (heartbeat, a deferred update, a transit's
// expiry; the notify of SetNotify comes before that for news). Without a batch b is nil, buf
// was not called, and next is that time. err as NextBatch (ErrTooSlow, ErrClosed, a failed
// Move): TryBatch does not leave the hub then (it may be called from the fan-out): the caller
// closes the session. TryBatch must not be called concurrently with itself, Next or NextBatch.
func (s *Session) TryBatch(f Framing, buf func() []byte) (b []byte, bt Batch, next time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, Batch{}, 0, s.err
	}
	s.waiting = true
	if s.joining {
		return nil, Batch{}, time.Hour, nil // the Move in progress notifies when it is done
	}
	now := s.o.Now()
	if !s.fill(now) {
		return nil, Batch{}, max(s.nextWake(now), time.Millisecond), nil
	}
	s.lastSend, s.holdNs = now, 0
	b, bt = s.emitBatch(now, f, buf)
	if s.head < len(s.ready) {
		s.waiting = false // more at once: the caller calls again
		return b, bt, 0, nil
	}
	return b, bt, max(s.nextWake(now), time.Millisecond), nil
}

// emitBatch encodes s.outs as NextBatch describes (mu held).
func (s *Session) emitBatch(now time.Time, f Framing, buf func() []byte) ([]byte, Batch) {
	b := buf()
	json := f.JSON()
	nowMs := now.UnixMilli()
	s.observed = s.observed[:0]
	for i := range s.outs {
		o := &s.outs[i]
		s.seq++
		b = f.Begin(b, i, s.seq, o.kind)
		start := len(b)
		b = appendEventBody(b, json, s.seq, o, s.snap, nowMs)
		b = f.End(b, start)
		if o.kind == KindUpsert {
			s.observed = append(s.observed, o.v.e.ObservedAtMs)
		}
		*o = out{}
	}
	bt := Batch{Events: len(s.outs), LastSeq: s.seq, Observed: s.observed}
	s.snap = nil // snapshots are rare (start, moves): an idle rider keeps no array for them
	return b, bt
}

// Next is NextBatch returning each event in both encodings as Frames appended to dst (the
// frames' bytes are not reused by the session). Transports use NextBatch, which encodes once.
func (s *Session) Next(ctx context.Context, dst []Frame) ([]Frame, error) {
	err := s.next(ctx, func(now time.Time) {
		size := 0
		for _, o := range s.outs {
			switch o.kind {
			case KindSnapshot:
				size += 64
				for _, v := range s.snap {
					size += len(v.e.Proto) + len(v.e.JSON) + 40
				}
			case KindUpsert:
				size += len(o.v.e.Proto) + len(o.v.e.JSON) + 80
			case KindRemove:
				size += len(o.r.Proto) + len(o.r.JSON) + 64
			case KindHeartbeat:
				size += 96
			}
		}
		buf := make([]byte, 0, size)
		nowMs := now.UnixMilli()
		type mark struct{ p0, j0, end int }
		marks := make([]mark, len(s.outs))
		for i := range s.outs {
			o := &s.outs[i]
			s.seq++
			m := &marks[i]
			m.p0 = len(buf)
			buf = appendEventBody(buf, false, s.seq, o, s.snap, nowMs)
			m.j0 = len(buf)
			buf = appendEventBody(buf, true, s.seq, o, s.snap, nowMs)
			m.end = len(buf)
		}
		seq := s.seq - uint64(len(s.outs))
		for i, m := range marks {
			dst = append(dst, Frame{Seq: seq + uint64(i) + 1, Kind: s.outs[i].kind,
				Proto: buf[m.p0:m.j0:m.j0], JSON: buf[m.j0:m.end:m.end]})
			s.outs[i] = out{}
		}
		s.snap = nil
	})
	return dst, err
}

// next waits for a batch as NextBatch describes and calls emit with mu held to encode s.outs.
func (s *Session) next(ctx context.Context, emit func(now time.Time)) error {
	for {
		s.mu.Lock()
		if err := s.err; err != nil {
			left := s.left
			s.left = true
			s.mu.Unlock()
			if !left {
				s.leave()
			}
			return err
		}
		wait := time.Duration(-1)
		s.waiting = true
		if !s.joining {
			now := s.o.Now()
			if hold := s.held(now); hold > 0 {
				wait, s.waiting = hold, false
			} else if s.fill(now) {
				s.lastSend, s.waiting, s.holdNs = now, false, 0
				emit(now)
				s.mu.Unlock()
				return nil
			} else {
				wait = s.nextWake(now)
			}
		}
		s.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return err
		}
		if wait < 0 {
			select {
			case <-s.signal:
			case <-ctx.Done():
			}
			continue
		}
		// The timer signals like an event does, so a waiting rider parks on two channels, not
		// three (each costs a parked goroutine a sudog, ~100 bytes, for as long as it waits).
		if s.timer == nil {
			s.timer = time.AfterFunc(wait, s.wake)
		} else {
			s.timer.Reset(wait)
		}
		select {
		case <-s.signal:
		case <-ctx.Done():
		}
		s.timer.Stop()
	}
}

// held returns how long WriteDelay still holds the pending updates (0: they may go now). A
// snapshot is never held, nor are updates left over by a full batch (holdNs 0). Called with mu
// held.
func (s *Session) held(now time.Time) time.Duration {
	if s.holdNs == 0 || s.needSnap || s.npend == 0 {
		return 0
	}
	return max(time.Duration(s.holdNs-now.UnixNano()), 0)
}

// fill gathers the next batch into s.outs (and s.snap) and reports whether it holds a frame
// (mu held).
func (s *Session) fill(now time.Time) bool {
	nowNs := now.UnixNano()
	s.expireTransits(now)
	outs := s.outs[:0]
	if s.needSnap {
		s.needSnap = false
		snap := s.snap[:0]
		for _, it := range s.items {
			it.sent = it.shown
			if it.shown {
				it.lastSent = nowNs
				snap = append(snap, vehicle{it.e, roundDist(it.dist)})
			}
		}
		slices.SortFunc(snap, func(a, b vehicle) int {
			return cmp.Or(cmp.Compare(a.dist, b.dist), cmp.Compare(a.e.ID, b.e.ID))
		})
		s.snap = snap
		outs = append(outs, out{kind: KindSnapshot})
	}
	for len(s.later) > 0 && s.later[0].due <= nowNs {
		it := heap.Pop(&s.later).(*item)
		if it.op != opNone && !it.queued {
			it.queued = true
			s.ready = append(s.ready, it)
		}
	}
	for len(outs) < s.o.MaxBatch && s.head < len(s.ready) {
		it := s.ready[s.head]
		s.ready[s.head] = nil
		s.head++
		it.queued = false
		switch it.op {
		case opNone:
			continue
		case opUpsert:
			if s.a.interval > 0 && it.lastSent != 0 && nowNs < it.lastSent+int64(s.a.interval) {
				it.due = it.lastSent + int64(s.a.interval)
				heap.Push(&s.later, it)
				continue
			}
			outs = append(outs, out{kind: KindUpsert, v: vehicle{it.e, roundDist(it.dist)}})
			it.sent, it.lastSent = true, nowNs
		case opRemove:
			r := it.rem
			if it.in || r == nil {
				r = it.e.LeftArea()
			}
			outs = append(outs, out{kind: KindRemove, r: r})
			it.sent = false
		}
		it.op = opNone
		s.npend--
		if !it.in && !it.sent && s.items[it.e.ID] == it {
			delete(s.items, it.e.ID)
		}
	}
	if s.head == len(s.ready) {
		s.head = 0
		if cap(s.ready) > 1024 {
			s.ready = nil // let a big backing array go once drained
		} else {
			s.ready = s.ready[:0]
		}
	}
	if len(outs) == 0 && !now.Before(s.lastSend.Add(s.o.Heartbeat)) {
		outs = append(outs, out{kind: KindHeartbeat})
	}
	s.outs = outs
	if len(outs) == 0 {
		return false
	}
	if m := s.o.Metrics; m != nil {
		var n [KindHeartbeat + 1]int
		for _, o := range outs {
			n[o.kind]++
		}
		for k := KindSnapshot; k <= KindHeartbeat; k++ {
			if n[k] > 0 {
				m.frames[k].Add(float64(n[k]))
			}
		}
	}
	return true
}

// expireTransits removes, as STALE, vehicles whose move's upsert never came within the TTL.
func (s *Session) expireTransits(now time.Time) {
	if len(s.transits) == 0 {
		return
	}
	nowMs := now.UnixMilli()
	keep := s.transits[:0]
	for _, it := range s.transits {
		switch {
		case !it.transit || s.items[it.e.ID] != it:
		case nowMs >= it.t+s.ttlMs:
			s.dropTransit(it)
		default:
			keep = append(keep, it)
		}
	}
	clear(s.transits[len(keep):])
	s.transits = keep
}

// compactTransits drops the entries of s.transits that are no longer waiting (mu held).
func (s *Session) compactTransits() {
	keep := s.transits[:0]
	for _, it := range s.transits {
		if it.transit && s.items[it.e.ID] == it {
			keep = append(keep, it)
		}
	}
	clear(s.transits[len(keep):])
	s.transits = keep
}

// nextWake returns how long Next may sleep without missing a heartbeat, a deferred update or a
// transit expiry (mu held).
func (s *Session) nextWake(now time.Time) time.Duration {
	at := s.lastSend.Add(s.o.Heartbeat)
	if len(s.later) > 0 && s.later[0].due < at.UnixNano() {
		at = time.Unix(0, s.later[0].due)
	}
	for _, it := range s.transits {
		if d := time.UnixMilli(it.t + s.ttlMs); d.Before(at) {
			at = d
		}
	}
	return max(at.Sub(now), 0)
}

func roundDist(d float64) uint32 {
	return uint32(math.Round(d))
}

// nearer orders items by distance, then id.
func nearer(a, b *item) bool {
	if a.dist != b.dist {
		return a.dist < b.dist
	}
	return a.e.ID < b.e.ID
}

// itemHeap is a heap of items: the shown heap (tag 1) has the farthest on top, the rest heap
// (tag 2) the nearest.
type itemHeap struct {
	s   []*item
	tag int8
}

func (h *itemHeap) Len() int { return len(h.s) }
func (h *itemHeap) Swap(i, j int) {
	h.s[i], h.s[j] = h.s[j], h.s[i]
	h.s[i].hidx, h.s[j].hidx = int32(i), int32(j)
}
func (h *itemHeap) Less(i, j int) bool {
	if h.tag == 1 {
		return nearer(h.s[j], h.s[i])
	}
	return nearer(h.s[i], h.s[j])
}
func (h *itemHeap) Push(x any) {
	it := x.(*item)
	it.heap, it.hidx = h.tag, int32(len(h.s))
	h.s = append(h.s, it)
}
func (h *itemHeap) Pop() any {
	it := h.s[len(h.s)-1]
	h.s[len(h.s)-1] = nil
	h.s = h.s[:len(h.s)-1]
	it.heap = 0
	return it
}

func (h *itemHeap) reset() {
	clear(h.s)
	h.s = h.s[:0]
}

// laterHeap orders deferred items by due time.
type laterHeap []*item

func (h laterHeap) Len() int           { return len(h) }
func (h laterHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h laterHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].lidx, h[j].lidx = int32(i), int32(j)
}
func (h *laterHeap) Push(x any) {
	it := x.(*item)
	it.lidx = int32(len(*h))
	*h = append(*h, it)
}
func (h *laterHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.lidx = -1
	return it
}
