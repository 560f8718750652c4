package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// Drive runs s in real time until ctx ends: it sleeps until the next report is due (at least
// a millisecond at a time, so a large fleet is stepped in small batches) and calls Step.
func Drive(ctx context.Context, s *Sim, emit func(topic string, payload []byte)) {
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for {
		now := time.Now()
		s.Step(now, emit)
		next := s.NextDue()
		if next.IsZero() {
			<-ctx.Done()
			return
		}
		t.Reset(max(time.Until(next), time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// PublisherConfig configures an MQTT publisher of simulated telemetry.
type PublisherConfig struct {
	// Brokers are MQTT server URLs (mqtt://host:port, …). Required.
	Brokers []string
	// ClientID is the prefix of the client ids ("<ClientID>-<n>" per connection).
	ClientID string
	// Conns is the number of MQTT connections; topics are spread over them by hash, so one
	// taxi always uses the same connection. Default 1.
	Conns int
	// InFlight is the number of concurrent publishes per connection (each waits for its PUBACK
	// at QoS 1). Default 64.
	InFlight int
	// QoS is 0 or 1. Default 1 (what terminals use).
	QoS byte
	// Logger, default slog.Default().
	Logger *slog.Logger
}

// Publisher publishes messages over MQTT v5 through autopaho connections that reconnect by
// themselves. A message that cannot be published because the connection is down is retried
// once the connection is back, until Close.
type Publisher struct {
	cfg    PublisherConfig
	cms    []*autopaho.ConnectionManager
	queues []chan job
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc

	published, failed atomic.Int64
	lastErrLog        atomic.Int64
}

type job struct {
	topic, contentType string
	payload            []byte
}

// Dial connects every connection and returns once all are up (or ctx ends).
func Dial(ctx context.Context, cfg PublisherConfig) (*Publisher, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("sim: no broker")
	}
	var urls []*url.URL
	for _, b := range cfg.Brokers {
		u, err := url.Parse(strings.TrimSpace(b))
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("sim: broker URL %q: want scheme://host:port", b)
		}
		urls = append(urls, u)
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "meshcast-sim"
	}
	if cfg.Conns <= 0 {
		cfg.Conns = 1
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = 64
	}
	if cfg.QoS > 1 {
		return nil, fmt.Errorf("sim: QoS %d: want 0 or 1", cfg.QoS)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Publisher{cfg: cfg}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	expiry := uint32(60) // keep in-flight messages across a short reconnect
	for i := range cfg.Conns {
		id := fmt.Sprintf("%s-%d", cfg.ClientID, i)
		cm, err := autopaho.NewConnection(p.ctx, autopaho.ClientConfig{
			ServerUrls:                    urls,
			KeepAlive:                     30,
			CleanStartOnInitialConnection: true,
			SessionExpiryInterval:         expiry,
			ReconnectBackoff:              autopaho.NewExponentialBackoff(100*time.Millisecond, 10*time.Second, 200*time.Millisecond, 2),
			ConnectTimeout:                10 * time.Second,
			OnConnectError: func(err error) {
				p.logErr("sim: connection attempt failed", err)
			},
			ClientConfig: paho.ClientConfig{ClientID: id},
		})
		if err != nil {
			p.Close(context.Background())
			return nil, fmt.Errorf("sim: connect: %w", err)
		}
		p.cms = append(p.cms, cm)
	}
	for _, cm := range p.cms {
		if err := cm.AwaitConnection(ctx); err != nil {
			p.Close(context.Background())
			return nil, fmt.Errorf("sim: connect to %v: %w", cfg.Brokers, err)
		}
	}
	for _, cm := range p.cms {
		q := make(chan job, cfg.InFlight)
		p.queues = append(p.queues, q)
		for range cfg.InFlight {
			p.wg.Add(1)
			go p.worker(cm, q)
		}
	}
	return p, nil
}

// Publish queues a copy of payload for topic, waiting while the connection's publishers are
// all busy. It must not be called after or during Close.
func (p *Publisher) Publish(topic, contentType string, payload []byte) {
	h := uint32(2166136261)
	for i := 0; i < len(topic); i++ {
		h ^= uint32(topic[i])
		h *= 16777619
	}
	j := job{topic: topic, contentType: contentType, payload: append([]byte(nil), payload...)}
	select {
	case p.queues[h%uint32(len(p.queues))] <- j:
	case <-p.ctx.Done():
	}
}

func (p *Publisher) worker(cm *autopaho.ConnectionManager, q chan job) {
	defer p.wg.Done()
	for j := range q {
		pub := &paho.Publish{Topic: j.topic, QoS: p.cfg.QoS, Payload: j.payload}
		if j.contentType != "" {
			pub.Properties = &paho.PublishProperties{ContentType: j.contentType}
		}
		for {
			_, err := cm.Publish(p.ctx, pub)
			if err == nil {
				p.published.Add(1)
				break
			}
			if p.ctx.Err() != nil {
				p.failed.Add(1)
				break
			}
			p.logErr("sim: publish failed, retrying", err)
			if cm.AwaitConnection(p.ctx) != nil {
				p.failed.Add(1)
				break
			}
		}
	}
}

func (p *Publisher) logErr(msg string, err error) {
	now := time.Now().UnixNano()
	if last := p.lastErrLog.Load(); now-last > int64(5*time.Second) && p.lastErrLog.CompareAndSwap(last, now) {
		p.cfg.Logger.Warn(msg, "err", err.Error())
	}
}

// Stats returns how many messages were published (acknowledged by the broker at QoS 1) and
// how many were given up at Close.
func (p *Publisher) Stats() (published, failed int64) { return p.published.Load(), p.failed.Load() }

// Close waits until the queued messages are published or ctx ends (then the rest are given
// up), and disconnects.
func (p *Publisher) Close(ctx context.Context) error {
	for _, q := range p.queues {
		close(q)
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		p.cancel()
		<-done
	}
	var errs []error
	for _, cm := range p.cms {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := cm.Disconnect(dctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	p.cancel()
	return errors.Join(errs...)
}
