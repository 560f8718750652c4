package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/mesh"
	"github.com/meshcast/meshcast/core/ops"
	"github.com/meshcast/meshcast/core/redact"
	"github.com/meshcast/meshcast/core/telemetry"
)

// Bridge is one MQTT ingest process: a persistent MQTT session with a shared subscription and
// the worker pipeline behind it. Create it with New, run it with Run.
type Bridge struct {
	cfg  Config
	urls []*url.URL
	log  *slog.Logger
	m    *metrics
	rl   *rateLog
	p    *pipeline

	ran        atomic.Bool
	connected  atomic.Bool
	subscribed atomic.Bool
	draining   atomic.Bool
	gen        atomic.Uint64 // connection generation, incremented on every connection
	wg         sync.WaitGroup
}

// Run runs one bridge process until ctx ends, as edge.Run runs an edge: it validates c, opens
// the bus at c.BusAddr unless c.Bus is set, registers the bridge's metrics with the Go and
// process collectors in a registry of its own, serves the admin endpoints on c.Admin when set
// (ready: connected and subscribed to the broker, not stopping, and the bus answers), and runs
// the bridge ((*Bridge).Run: it drains on the way out); then it closes what it opened. It
// returns nil after a clean stop.
func Run(ctx context.Context, c Config) error {
	if _, _, err := c.withDefaults(); err != nil {
		return err
	}
	logger := c.Logger
	if logger == nil {
		logger = slog.Default()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c.Registerer = reg
	if c.Bus == nil {
		ttl := c.Classifier.TTL
		if ttl == 0 {
			ttl = telemetry.DefaultTTL
		}
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		b, err := bus.Open(octx, c.BusAddr, bus.Options{TTL: ttl, KeyPrefix: c.BusPrefix, BatchDelay: c.BusBatchDelay,
			BatchEarly: c.BusBatchDelay > 0 && c.ReadDelay > 0, Logger: logger, Registerer: reg})
		cancel()
		if err != nil {
			return fmt.Errorf("bridge: bus %s: %w", redact.URL(c.BusAddr), err)
		}
		defer b.Close()
		c.Bus = b
	}
	br, err := New(c)
	if err != nil {
		return err
	}
	if c.Admin != "" {
		// The bus keeps no connection state to read: a snapshot read of one mesh, at most once a
		// second, tells whether it answers.
		probeMesh, _ := mesh.Third(35.681236, 139.767125)
		busReady := ops.Cached(time.Second, 500*time.Millisecond, func(ctx context.Context) error {
			_, err := c.Bus.Snapshot(ctx, probeMesh)
			return err
		})
		a, err := ops.ServeAdmin(c.Admin, reg, func() error {
			if !br.Ready() {
				return errors.New("broker not connected and subscribed, or shutting down")
			}
			if err := busReady(); err != nil {
				return fmt.Errorf("bus: %w", err)
			}
			return nil
		}, logger)
		if err != nil {
			return fmt.Errorf("bridge: admin: %w", err)
		}
		defer a.Close()
		if c.Ready != nil {
			c.Ready(a.Addr())
		}
	}
	return br.Run(ctx)
}

// New validates cfg, applies the defaults and registers the metrics. It does not connect.
func New(cfg Config) (*Bridge, error) {
	if cfg.Bus == nil {
		return nil, errors.New("bridge: no bus (New needs Config.Bus; Run opens Config.BusAddr)")
	}
	cfg, urls, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Bridge{cfg: cfg, urls: urls, log: cfg.Logger}
	b.rl = newRateLog(b.log, cfg.RejectLogInterval, time.Now)
	b.m = newMetrics(func() float64 { return float64(b.p.depth()) })
	b.p = newPipeline(&b.cfg, b.m, b.rl)
	if err := b.m.register(cfg.Registerer); err != nil {
		return nil, fmt.Errorf("bridge: register metrics: %w", err)
	}
	return b, nil
}

// Subscription returns the topic filter the bridge subscribes to, e.g.
// "$share/meshcast/taxi/+/+/state".
func (b *Bridge) Subscription() string { return b.cfg.subscription() }

// ClientID returns the MQTT client id in use.
func (b *Bridge) ClientID() string { return b.cfg.ClientID }

// Connected reports whether the bridge is connected to the broker.
func (b *Bridge) Connected() bool { return b.connected.Load() }

// Ready reports whether the bridge is connected, subscribed and not shutting down.
func (b *Bridge) Ready() bool {
	return b.connected.Load() && b.subscribed.Load() && !b.draining.Load()
}

// Run connects (retrying with backoff until it works), subscribes on every connection and
// processes messages until ctx ends; then it shuts down as the package doc describes and
// returns nil. It may be called once.
func (b *Bridge) Run(ctx context.Context) error {
	if !b.ran.CompareAndSwap(false, true) {
		return errors.New("bridge: Run called twice")
	}
	b.p.start()
	connCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cm, err := autopaho.NewConnection(connCtx, b.clientConfig(connCtx))
	if err != nil {
		b.p.close(0)
		return fmt.Errorf("bridge: %w", err)
	}
	b.log.Info("bridge: started", "brokers", b.cfg.Brokers, "client_id", b.cfg.ClientID,
		"subscription", b.cfg.subscription(), "workers", b.cfg.Workers, "queue_size", b.cfg.QueueSize)

	<-ctx.Done()
	b.draining.Store(true)
	queued := b.p.depth()
	b.p.close(b.cfg.DrainTimeout)
	// paho sends the acknowledgements that are ready every AckInterval: give it a few rounds
	// before the connection goes, so that finished messages are not redelivered.
	time.Sleep(3 * b.cfg.AckInterval)
	dctx, dcancel := context.WithTimeout(context.Background(), b.cfg.ConnectTimeout)
	defer dcancel()
	if err := cm.Disconnect(dctx); err != nil {
		b.log.Warn("bridge: disconnect", "err", err.Error())
	}
	cancel()
	b.wg.Wait()
	b.connected.Store(false)
	b.m.connected.Set(0)
	b.log.Info("bridge: stopped", "queued_at_stop", queued)
	return nil
}

func (b *Bridge) clientConfig(ctx context.Context) autopaho.ClientConfig {
	recvMax := uint16(b.cfg.ReceiveMaximum)
	return autopaho.ClientConfig{
		ServerUrls:                    b.urls,
		KeepAlive:                     uint16(b.cfg.KeepAlive / time.Second),
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         uint32(b.cfg.SessionExpiry / time.Second),
		ReconnectBackoff: autopaho.NewExponentialBackoff(b.cfg.ReconnectMin, b.cfg.ReconnectMax,
			b.cfg.ReconnectMin, 2),
		ConnectTimeout: b.cfg.ConnectTimeout,
		AttemptConnection: func(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
			return dialBroker(ctx, u, b.cfg.ConnectTimeout, b.cfg.ReadDelay, b.cfg.TLS)
		},
		ConnectUsername: b.cfg.Username,
		ConnectPassword: []byte(b.cfg.Password),
		ConnectPacketBuilder: func(c *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			// Bound the messages in flight to the bridge (see Config.ReceiveMaximum).
			if c.Properties == nil {
				c.Properties = &paho.ConnectProperties{}
			}
			c.Properties.ReceiveMaximum = &recvMax
			return c, nil
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, ca *paho.Connack) {
			gen := b.gen.Add(1)
			b.connected.Store(true)
			b.m.connected.Set(1)
			b.m.connections.Inc()
			b.log.Info("bridge: connected", "session_present", ca.SessionPresent, "connection", gen)
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.subscribe(ctx, cm, gen)
			}()
		},
		OnConnectionDown: func() bool {
			b.connected.Store(false)
			b.subscribed.Store(false)
			b.m.connected.Set(0)
			if ctx.Err() == nil {
				b.log.Warn("bridge: connection lost, reconnecting")
			}
			return true
		},
		OnConnectError: func(err error) {
			b.rl.warn("connect", "bridge: connection attempt failed", "err", err.Error())
		},
		ClientConfig: paho.ClientConfig{
			ClientID:                   b.cfg.ClientID,
			OnPublishReceived:          []func(paho.PublishReceived) (bool, error){b.onPublish},
			EnableManualAcknowledgment: true,
			SendAcksInterval:           b.cfg.AckInterval,
			OnClientError: func(err error) {
				if ctx.Err() == nil {
					b.rl.warn("client", "bridge: client error", "err", err.Error())
				}
			},
			OnServerDisconnect: func(d *paho.Disconnect) {
				b.log.Warn("bridge: broker disconnected us", "reason_code", d.ReasonCode)
			},
		},
	}
}

// subscribe subscribes on connection gen, retrying with backoff while that connection is up.
func (b *Bridge) subscribe(ctx context.Context, cm *autopaho.ConnectionManager, gen uint64) {
	topic := b.cfg.subscription()
	for attempt := 0; ctx.Err() == nil && b.gen.Load() == gen && b.connected.Load(); attempt++ {
		sctx, cancel := context.WithTimeout(ctx, b.cfg.ConnectTimeout)
		sa, err := cm.Subscribe(sctx, &paho.Subscribe{
			Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}},
		})
		cancel()
		switch {
		case err == nil && len(sa.Reasons) == 1 && sa.Reasons[0] <= 2:
			if b.gen.Load() == gen {
				b.subscribed.Store(true)
				b.log.Info("bridge: subscribed", "topic", topic, "qos", sa.Reasons[0])
			}
			return
		case err == nil:
			b.log.Error("bridge: subscription refused by the broker", "topic", topic, "reasons", fmt.Sprint(sa.Reasons))
			return
		}
		b.log.Warn("bridge: subscribe failed, retrying", "topic", topic, "err", err.Error())
		t := time.NewTimer(backoff(attempt, b.cfg.ReconnectMin, b.cfg.ReconnectMax))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// onPublish is autopaho's OnPublishReceived: it hands the message to its worker's queue,
// waiting while that queue is full. Messages refused during shutdown are not acknowledged.
func (b *Bridge) onPublish(pr paho.PublishReceived) (bool, error) {
	b.m.received.Inc()
	p := pr.Packet
	var ct string
	if p.Properties != nil {
		ct = p.Properties.ContentType
	}
	msg := message{topic: p.Topic, contentType: ct, payload: p.Payload, received: time.Now(), pub: p}
	if pr.Client != nil {
		msg.ack = pr.Client
	}
	if !b.p.submit(msg) {
		b.m.handedBack.Inc()
	}
	return true, nil
}
