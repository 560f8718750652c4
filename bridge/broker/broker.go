// Package broker is the embedded MQTT broker of `meshcast demo` (and of unit tests that need a
// broker but not a real one): mochi-mqtt/server v2 with one plain TCP listener and every client
// allowed. It is off in every other mode; production uses an external broker (mosquitto,
// EMQX, …). Because it lets anybody in, Start refuses a non-loopback address unless
// Options.AllowRemote is set.
//
// # No outbound flow control (mochi's quota path)
//
// mochi-mqtt v2.7.9 mishandles a client's MQTT v5 Receive Maximum in two ways. A message for a
// client whose send quota is used up is parked in its inflight map and sent only from that
// client's read goroutine, one per packet the client sends afterwards: a subscriber that has
// acknowledged everything then receives the parked messages one per keep-alive ping. And that
// read goroutine, after every packet while the client has messages in flight and quota left,
// calls Inflight.NextImmediate, which holds the map's read lock and calls GetAll, which
// read-locks it again; a publisher's goroutine delivering to the client calls Inflight.Set (the
// write lock) in between, Go's RWMutex blocks the second read lock behind the waiting writer
// and the writer behind the first read lock, and the subscriber and every publisher behind
// them hang for good. Both need a send quota, which mochi keeps only for clients that announce
// a Receive Maximum (the bridge does: Config.ReceiveMaximum). So this broker treats every
// client as announcing none (noFlowControl, an OnConnect hook): its send quota stays 0, nothing
// is parked and NextImmediate is never called. What is lost is the broker's own bound on
// unacknowledged deliveries per client, which nothing here relies on: the bridge's
// backpressure is TCP (a full queue stops it reading), and the broker still caps a client's
// in-flight messages (mochi's MaximumInflight, 8192) and pending writes.
package broker

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// DefaultAddr is where the embedded broker listens by default.
const DefaultAddr = "127.0.0.1:1883"

// Options configure Start.
type Options struct {
	// Addr is the TCP listen address; port 0 picks a free port. Default DefaultAddr.
	Addr string
	// AllowRemote lets Addr be a non-loopback address (anybody reaching it may publish).
	AllowRemote bool
	// Logger gets the broker's warnings and errors. Default: discarded.
	Logger *slog.Logger
}

// Broker is a running embedded broker.
type Broker struct {
	srv  *mqtt.Server
	tcp  *listeners.TCP
	addr string
}

// Start starts a broker listening on o.Addr and returns once it accepts connections.
func Start(o Options) (*Broker, error) {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, fmt.Errorf("broker: address %q: %w", o.Addr, err)
	}
	if !o.AllowRemote {
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("broker: address %q is not loopback: the embedded broker lets every client in", o.Addr)
		}
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv := mqtt.New(&mqtt.Options{Logger: logger, InlineClient: false})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("broker: auth hook: %w", err)
	}
	if err := srv.AddHook(new(noFlowControl), nil); err != nil {
		return nil, fmt.Errorf("broker: flow control hook: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{Type: "tcp", ID: "tcp", Address: o.Addr})
	if err := srv.AddListener(tcp); err != nil { // binds the socket
		return nil, fmt.Errorf("broker: listen on %s: %w", o.Addr, err)
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return nil, fmt.Errorf("broker: serve: %w", err)
	}
	return &Broker{srv: srv, tcp: tcp, addr: tcp.Address()}, nil
}

// noFlowControl drops every client's announced Receive Maximum as it connects, so that mochi
// keeps no send quota for it and never takes its deadlocking quota path (see the package doc).
type noFlowControl struct{ mqtt.HookBase }

func (*noFlowControl) ID() string { return "meshcast-no-flow-control" }

func (*noFlowControl) Provides(b byte) bool { return b == mqtt.OnConnect }

// OnConnect runs after mochi parsed CONNECT (and set the send quota from it) and before the
// session is inherited (which sets the quota of an inherited inflight map from the same
// property), so both see 0.
func (*noFlowControl) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	cl.Properties.Props.ReceiveMaximum = 0
	cl.State.Inflight.ResetSendQuota(0)
	return nil
}

// Addr returns the address the broker listens on (with the real port when Options.Addr had 0).
func (b *Broker) Addr() string { return b.addr }

// URL returns "mqtt://" + Addr(), the form the bridge and the simulator take.
func (b *Broker) URL() string { return "mqtt://" + b.addr }

// Close disconnects every client and stops the broker.
func (b *Broker) Close() error {
	if b == nil || b.srv == nil {
		return errors.New("broker: not started")
	}
	return b.srv.Close()
}
