// Package broker is the embedded MQTT broker of `meshcast demo` (and of unit tests that need a
// broker but not a real one): mochi-mqtt/server v2 with one plain TCP listener and every client
// allowed. It is off in every other mode; production uses an external broker (mosquitto,
// EMQX, …). Because it lets anybody in, Start refuses a non-loopback address unless
// Options.AllowRemote is set.
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
