package bus

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshcast/meshcast/core/mesh"
	"github.com/redis/rueidis"
)

// unsubscribeTimeout bounds the SUNSUBSCRIBE of a removed mesh channel.
const unsubscribeTimeout = 5 * time.Second

// subscriber owns the subscription client and one channelSub per subscribed mesh channel, shared
// by all Subscriptions of the bus (a mesh is subscribed once per process, whatever the number of
// handlers).
type subscriber struct {
	b      *redisBus
	client rueidis.Client

	mu       sync.Mutex
	chans    map[mesh.Code]*channelSub // active channels
	stopping map[mesh.Code]*channelSub // channels being unsubscribed
	closed   bool

	wg      sync.WaitGroup // channel goroutines and the resync goroutine
	resync  resyncer
	lastBad atomic.Int64 // unix ns of the last bad-data log line
}

func newSubscriber(b *redisBus, client rueidis.Client) *subscriber {
	s := &subscriber{
		b:        b,
		client:   client,
		chans:    map[mesh.Code]*channelSub{},
		stopping: map[mesh.Code]*channelSub{},
		resync: resyncer{
			pending: map[*channelSub]string{},
			wake:    make(chan struct{}, 1),
			stop:    make(chan struct{}),
		},
	}
	s.wg.Add(1)
	go s.resyncLoop()
	return s
}

// channelSub is one mesh channel: a goroutine that keeps an SSUBSCRIBE alive (rueidis Receive)
// and hands every message to the channel's handlers.
type channelSub struct {
	s      *subscriber
	code   mesh.Code
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	prev   *channelSub   // the channel this one replaces, still being unsubscribed
	done   chan struct{} // closed when run returns

	ready     chan struct{} // closed at the first confirmation, or with err when that failed for good
	readyOnce sync.Once
	err       error

	confirms atomic.Int64           // SSUBSCRIBE confirmations seen
	reason   atomic.Pointer[string] // why the next confirmation is a re-establishment
	removing atomic.Bool

	hmu      sync.RWMutex
	handlers map[*redisSub]struct{}
}

func (s *subscriber) subscribe(h Handler) (Subscription, error) {
	if h == nil {
		return nil, errors.New("bus: nil handler")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	return &redisSub{s: s, h: h, meshes: map[mesh.Code]*channelSub{}}, nil
}

// newChannel creates and starts the channel of mesh m; s.mu is held.
func (s *subscriber) newChannel(m mesh.Code) *channelSub {
	ctx, cancel := context.WithCancel(context.Background())
	cs := &channelSub{
		s:        s,
		code:     m,
		name:     meshChannel(s.b, m),
		ctx:      ctx,
		cancel:   cancel,
		prev:     s.stopping[m],
		done:     make(chan struct{}),
		ready:    make(chan struct{}),
		handlers: map[*redisSub]struct{}{},
	}
	s.chans[m] = cs
	s.wg.Add(1)
	go cs.run()
	return cs
}

func (cs *channelSub) setReady(err error) {
	cs.readyOnce.Do(func() {
		cs.err = err
		close(cs.ready)
	})
}

// run keeps the channel subscribed until it is removed. rueidis' Receive re-subscribes by itself
// after a dropped connection (the subscription hook sees a second confirmation) and returns nil
// when Redis ends the subscription (slot migrated away): then it is called again.
func (cs *channelSub) run() {
	defer cs.s.wg.Done()
	defer close(cs.done)
	if cs.prev != nil {
		select {
		case <-cs.prev.done:
		case <-cs.ctx.Done():
			cs.setReady(ErrClosed)
			return
		}
	}
	ctx := rueidis.WithOnSubscriptionHook(cs.ctx, cs.onSubscription)
	log := cs.s.b.o.Logger
	for attempt := 1; ; {
		c := cs.s.client
		err := c.Receive(ctx, c.B().Ssubscribe().Channel(cs.name).Build(), cs.onMessage)
		if cs.removing.Load() || cs.ctx.Err() != nil {
			cs.setReady(ErrClosed)
			return
		}
		if errors.Is(err, rueidis.ErrClosing) {
			cs.setReady(ErrClosed)
			return
		}
		if cs.confirms.Load() == 0 && err != nil {
			if _, ok := rueidis.IsRedisErr(err); ok { // refused for good (not a redirect: those are retried)
				cs.setReady(fmt.Errorf("bus: subscribe %s: %w", cs.name, err))
				return
			}
		}
		reason := "slot_moved" // Redis ended the subscription: the slot moved away
		if err != nil {
			reason = "error"
		}
		cs.reason.Store(&reason)
		if err == nil {
			attempt = 1
			log.Debug("bus: mesh subscription ended by Redis, subscribing again", "channel", cs.name)
			continue
		}
		log.Warn("bus: mesh subscription failed, retrying", "channel", cs.name, "attempt", attempt, "err", err)
		t := time.NewTimer(backoff(attempt))
		select {
		case <-t.C:
		case <-cs.ctx.Done():
			t.Stop()
		}
		attempt++
	}
}

// onSubscription runs on rueidis' connection goroutine: it must not block.
func (cs *channelSub) onSubscription(p rueidis.PubSubSubscription) {
	if p.Kind != "ssubscribe" || p.Channel != cs.name {
		return
	}
	if cs.confirms.Add(1) == 1 {
		cs.setReady(nil)
		return
	}
	reason := "reconnect" // re-subscribed inside Receive: dropped connection or failover
	if r := cs.reason.Swap(nil); r != nil {
		reason = *r
	}
	cs.s.b.m.resubscriptions.WithLabelValues(reason).Inc()
	cs.s.resync.add(cs, reason)
}

// onMessage runs on the channel's goroutine.
func (cs *channelSub) onMessage(msg rueidis.PubSubMessage) {
	raw := []byte(msg.Message)
	ev, err := DecodeEvent(cs.code, raw)
	if err != nil {
		cs.s.b.m.badData.Inc()
		cs.s.logBad("event", cs.name, err)
		return
	}
	cs.s.b.m.received.Inc()
	cs.hmu.RLock()
	defer cs.hmu.RUnlock()
	for rs := range cs.handlers {
		rs.h.OnEvent(cs.code, ev, raw)
	}
}

// stop unsubscribes a channel that has no handlers left and waits for its goroutine.
func (s *subscriber) stop(ctx context.Context, cs *channelSub) {
	cs.removing.Store(true)
	ctx, cancel := context.WithTimeout(ctx, unsubscribeTimeout)
	err := s.client.Do(ctx, s.client.B().Sunsubscribe().Channel(cs.name).Build()).Error()
	cancel()
	if err != nil && !errors.Is(err, rueidis.ErrClosing) {
		s.b.o.Logger.Debug("bus: unsubscribe failed (the connection's subscription ends with it)", "channel", cs.name, "err", err)
	}
	cs.cancel()
	<-cs.done
	s.mu.Lock()
	if s.stopping[cs.code] == cs {
		delete(s.stopping, cs.code)
	}
	s.mu.Unlock()
}

func (s *subscriber) close() {
	s.mu.Lock()
	s.closed = true
	all := make([]*channelSub, 0, len(s.chans))
	for _, cs := range s.chans {
		all = append(all, cs)
	}
	s.chans = map[mesh.Code]*channelSub{}
	s.mu.Unlock()
	for _, cs := range all {
		cs.removing.Store(true)
		cs.cancel()
	}
	close(s.resync.stop)
	s.wg.Wait()
	s.client.Close()
}

// logBad logs undecodable data at most once a second.
func (s *subscriber) logBad(what, where string, err error) {
	now := time.Now().UnixNano()
	last := s.lastBad.Load()
	if now-last < int64(time.Second) || !s.lastBad.CompareAndSwap(last, now) {
		return
	}
	s.b.o.Logger.Warn("bus: dropped undecodable "+what, "where", where, "err", err)
}

// resyncer hands re-established channels to one goroutine, which logs one line per batch and
// calls the handlers' OnResync off rueidis' connection goroutine.
type resyncer struct {
	mu      sync.Mutex
	pending map[*channelSub]string
	wake    chan struct{}
	stop    chan struct{}
}

func (r *resyncer) add(cs *channelSub, reason string) {
	r.mu.Lock()
	r.pending[cs] = reason
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) resyncLoop() {
	defer s.wg.Done()
	r := &s.resync
	for {
		select {
		case <-r.stop:
			return
		case <-r.wake:
		}
		r.mu.Lock()
		batch := r.pending
		r.pending = map[*channelSub]string{}
		r.mu.Unlock()
		byReason := map[string][]string{}
		for cs, reason := range batch {
			byReason[reason] = append(byReason[reason], cs.code.String())
		}
		for reason, ms := range byReason {
			sort.Strings(ms)
			sample := ms[:min(len(ms), 8)]
			s.b.o.Logger.Warn("bus: mesh subscriptions re-established, handlers resync from snapshots",
				"reason", reason, "meshes", len(ms), "sample", sample)
		}
		for cs := range batch {
			if cs.removing.Load() {
				continue
			}
			cs.hmu.RLock()
			for rs := range cs.handlers {
				rs.h.OnResync(cs.code)
			}
			cs.hmu.RUnlock()
		}
	}
}

// redisSub is a Subscription of the Redis bus.
type redisSub struct {
	s      *subscriber
	h      Handler
	meshes map[mesh.Code]*channelSub // guarded by s.mu
	closed bool                      // guarded by s.mu
}

func (rs *redisSub) Add(ctx context.Context, ms ...mesh.Code) error {
	for _, m := range ms {
		if !m.Valid() {
			return fmt.Errorf("bus: subscribe: invalid mesh %d", uint64(m))
		}
	}
	s := rs.s
	s.mu.Lock()
	if s.closed || rs.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	var added []mesh.Code
	var waits []*channelSub
	for _, m := range ms {
		if _, ok := rs.meshes[m]; ok {
			continue
		}
		cs := s.chans[m]
		if cs == nil {
			cs = s.newChannel(m)
		}
		cs.hmu.Lock()
		cs.handlers[rs] = struct{}{}
		cs.hmu.Unlock()
		rs.meshes[m] = cs
		added = append(added, m)
		waits = append(waits, cs)
	}
	s.mu.Unlock()
	for _, cs := range waits {
		var err error
		select {
		case <-cs.ready:
			err = cs.err
		case <-ctx.Done():
			err = fmt.Errorf("bus: subscribe %s: %w", cs.name, ctx.Err())
		}
		if err != nil {
			rs.remove(context.Background(), added)
			return err
		}
	}
	return nil
}

func (rs *redisSub) Remove(ctx context.Context, ms ...mesh.Code) error {
	rs.remove(ctx, ms)
	return nil
}

func (rs *redisSub) remove(ctx context.Context, ms []mesh.Code) {
	s := rs.s
	var stop []*channelSub
	s.mu.Lock()
	for _, m := range ms {
		cs := rs.meshes[m]
		if cs == nil {
			continue
		}
		delete(rs.meshes, m)
		cs.hmu.Lock()
		delete(cs.handlers, rs)
		empty := len(cs.handlers) == 0
		cs.hmu.Unlock()
		if empty && s.chans[m] == cs {
			delete(s.chans, m)
			s.stopping[m] = cs
			stop = append(stop, cs)
		}
	}
	s.mu.Unlock()
	// Concurrently: while Redis is unreachable each SUNSUBSCRIBE waits out unsubscribeTimeout,
	// and one after the other they held an edge's shutdown for that long per mesh.
	var wg sync.WaitGroup
	for _, cs := range stop {
		wg.Go(func() { s.stop(ctx, cs) })
	}
	wg.Wait()
}

func (rs *redisSub) Close() error {
	s := rs.s
	s.mu.Lock()
	if rs.closed {
		s.mu.Unlock()
		return nil
	}
	rs.closed = true
	ms := make([]mesh.Code, 0, len(rs.meshes))
	for m := range rs.meshes {
		ms = append(ms, m)
	}
	s.mu.Unlock()
	rs.remove(context.Background(), ms)
	return nil
}

// meshChannel returns the shard channel of mesh m.
func meshChannel(b *redisBus, m mesh.Code) string {
	_, ch := b.meshKeys(m.String())
	return ch
}
