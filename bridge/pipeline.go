package bridge

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/telemetry"
)

// acker acknowledges a received PUBLISH: the *paho.Client of the connection it came on.
type acker interface {
	Ack(*paho.Publish) error
}

// message is one MQTT message on its way through a worker.
type message struct {
	topic, contentType string
	payload            []byte
	received           time.Time
	ack                acker // nil: nothing to acknowledge
	pub                *paho.Publish
	release            func() // the bus.Holder's hold taken at submit, or nil; released once
}

// pipeline is the bounded queues and the workers between the receive callback and the bus.
// Each worker owns one queue; submit picks the queue by a hash of the topic, so one vehicle's
// messages are processed in order by one worker.
type pipeline struct {
	cfg    *Config
	m      *metrics
	rl     *rateLog
	holder bus.Holder // the bus's, when it has one: a queued message holds its rounds (bus.Options.BatchEarly)

	queues  []chan message
	closing chan struct{} // closed by close: submit refuses, workers drain and exit
	once    sync.Once
	abort   context.Context // cancelled when the drain deadline passes: stop retrying
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started atomic.Bool
}

func newPipeline(cfg *Config, m *metrics, rl *rateLog) *pipeline {
	p := &pipeline{cfg: cfg, m: m, rl: rl, closing: make(chan struct{})}
	p.holder, _ = cfg.Bus.(bus.Holder)
	p.abort, p.cancel = context.WithCancel(context.Background())
	p.queues = make([]chan message, cfg.Workers)
	for i := range p.queues {
		p.queues[i] = make(chan message, cfg.QueueSize)
	}
	return p
}

// start starts the workers.
func (p *pipeline) start() {
	if !p.started.CompareAndSwap(false, true) {
		return
	}
	p.wg.Add(len(p.queues))
	for _, q := range p.queues {
		go p.worker(q)
	}
}

// depth returns the number of queued messages.
func (p *pipeline) depth() int {
	n := 0
	for _, q := range p.queues {
		n += len(q)
	}
	return n
}

// queueFor returns the queue of the worker that owns topic (FNV-1a of the topic).
func (p *pipeline) queueFor(topic string) chan message {
	h := uint32(2166136261)
	for i := 0; i < len(topic); i++ {
		h ^= uint32(topic[i])
		h *= 16777619
	}
	return p.queues[h%uint32(len(p.queues))]
}

// submit queues msg on its worker's queue, waiting while the queue is full (backpressure on
// the receive goroutine). It returns false, without queueing, once the pipeline is closing.
func (p *pipeline) submit(msg message) bool {
	select {
	case <-p.closing:
		return false
	default:
	}
	q := p.queueFor(msg.topic)
	if p.holder != nil {
		// Until its worker calls Apply, this message holds the bus's next round (early rounds:
		// the fixes of one MQTT read go together).
		msg.release = p.holder.Hold()
	}
	select {
	case q <- msg:
		return true
	case <-p.closing:
		msg.done()
		return false
	}
}

// done releases the message's hold on the bus's rounds, if it still has one.
func (msg *message) done() {
	if msg.release != nil {
		msg.release()
		msg.release = nil
	}
}

// close stops taking messages and lets the workers finish the queued ones for up to timeout;
// after that, retries stop and what is left is handed back (not acknowledged). It returns when
// every worker has exited.
func (p *pipeline) close(timeout time.Duration) {
	p.once.Do(func() { close(p.closing) })
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	t := time.NewTimer(timeout)
	select {
	case <-done:
		t.Stop()
	case <-t.C:
		p.cancel()
		<-done
	}
	p.cancel()
	// A submit racing with close may have queued a message after its worker exited: it is
	// handed back like the others.
	for _, q := range p.queues {
		for {
			select {
			case msg := <-q:
				msg.done()
				p.m.handedBack.Inc()
				continue
			default:
			}
			break
		}
	}
}

func (p *pipeline) worker(q chan message) {
	defer p.wg.Done()
	for {
		select {
		case msg := <-q:
			p.process(&msg)
		case <-p.closing:
			for {
				select {
				case msg := <-q:
					p.process(&msg)
				default:
					return
				}
			}
		}
	}
}

// process decodes, classifies and applies one message, then acknowledges it. Invalid
// messages are counted, logged (rate-limited) and acknowledged. A failing bus (an error, or no
// answer within ApplyTimeout) is counted, logged and retried until it works or the drain deadline
// passes; then the message is handed back unacknowledged.
func (p *pipeline) process(msg *message) {
	defer msg.done() // whatever path: released once (the first Apply takes it over)
	if p.abort.Err() != nil {
		p.m.handedBack.Inc()
		return
	}
	var f telemetry.Fix
	err := p.cfg.Decoder.Decode(msg.topic, msg.contentType, msg.payload, &f)
	var res telemetry.Result
	if err == nil {
		res, err = p.cfg.Classifier.Classify(&f, p.cfg.Now().UnixMilli())
	}
	if err != nil {
		reason := telemetry.ReasonOf(err)
		p.m.reject(reason)
		p.rl.warn("reject:"+string(reason), "bridge: message rejected",
			"topic", msg.topic, "reason", string(reason), "bytes", len(msg.payload), "err", err.Error())
		p.acknowledge(msg)
		return
	}
	u := bus.Update{Vehicle: f.ToVehicle(res.Mesh), Dispatchable: res.Dispatchable, Reason: res.Reason}
	for attempt := 0; ; attempt++ {
		// Each attempt has its own deadline: without one a Redis that is gone (its client retries
		// the connection for as long as the context allows) would hold the message, unseen.
		actx, cancel := context.WithTimeout(p.abort, p.cfg.ApplyTimeout)
		if msg.release != nil {
			actx = bus.WithRelease(actx, msg.release) // Apply releases it once it counts itself
			msg.release = nil
		}
		r, err := p.cfg.Bus.Apply(actx, u)
		cancel()
		if err == nil {
			if r.Applied {
				p.m.applied.Inc()
			} else {
				p.m.stale.Inc()
			}
			if r.Events > 0 {
				p.m.events.Add(float64(r.Events))
			}
			break
		}
		if p.abort.Err() != nil || errors.Is(err, bus.ErrClosed) {
			p.m.handedBack.Inc()
			return
		}
		p.m.busErrors.Inc()
		p.rl.warn("bus", "bridge: bus apply failed, retrying", "vehicle", u.Vehicle.Id, "attempt", attempt+1, "err", err.Error())
		if !p.wait(backoff(attempt, p.cfg.RetryMin, p.cfg.RetryMax)) {
			p.m.handedBack.Inc()
			return
		}
	}
	p.acknowledge(msg)
	p.m.processing.Observe(time.Since(msg.received).Seconds())
	p.m.fixAge.Observe(float64(p.cfg.Now().UnixMicro()-f.TS*1000) / 1e6)
}

func (p *pipeline) acknowledge(msg *message) {
	if msg.ack == nil {
		return
	}
	// ErrPacketNotFound: the connection the message came on is gone (paho reset its tracker);
	// the broker redelivers it on the new connection and the redelivery is acknowledged there.
	if err := msg.ack.Ack(msg.pub); err != nil && !errors.Is(err, paho.ErrPacketNotFound) {
		p.rl.warn("ack", "bridge: acknowledgement failed", "topic", msg.topic, "err", err.Error())
	}
}

// wait sleeps for d unless the pipeline is aborted first; it reports whether it slept fully.
func (p *pipeline) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.abort.Done():
		return false
	}
}

// backoff returns the delay before retry attempt+1: exponential from lo, capped at hi,
// with the upper half jittered.
func backoff(attempt int, lo, hi time.Duration) time.Duration {
	d := hi
	if attempt < 30 {
		d = min(lo<<attempt, hi)
	}
	return d/2 + rand.N(d/2+1)
}
