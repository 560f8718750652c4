// Package edge runs one edge process: it opens the bus, starts the shared subscription hub and
// serves the rider stream (package transport: gRPC, gRPC-Web, WebSocket, SSE on one port), plus
// an admin listener (/metrics, /healthz, /readyz, /debug/pprof/). It owns the process's
// configuration (Config: every setting with a flag, a MESHCAST_* variable through core/config,
// a default that works and validation) and the order of start-up and graceful stop.
package edge

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/telemetry"
	"github.com/meshcast/meshcast/edge/hub"
	"github.com/meshcast/meshcast/edge/session"
	"github.com/meshcast/meshcast/edge/transport"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config is the configuration of an edge process. Defaults returns the working defaults;
// RegisterFlags binds every field but Logger, Ready, SharedBus and Pages to a flag.
type Config struct {
	// Listen is the rider port: gRPC, gRPC-Web, WebSocket and SSE.
	Listen string
	// Admin is the admin listener (/metrics, /healthz, /readyz, /debug/pprof/); keep it
	// private. Empty: none.
	Admin string
	// Bus is the bus address (see bus.Open): redis://host:port, redis+cluster://host:port,...
	// or memory:// (an in-process bus that nothing publishes to: only for trying the edge alone).
	Bus string
	// BusPrefix is the prefix of every Redis key and channel; the bridges must use the same.
	BusPrefix string
	// TTL is how long a fix keeps a vehicle shown; it must match the bridges' -ttl.
	TTL time.Duration
	// HubShards is the number of lock shards of the hub.
	HubShards int

	// DefaultRadiusM and MaxRadiusM: radius_m when a rider gives none, and the largest accepted.
	DefaultRadiusM, MaxRadiusM uint
	// Heartbeat is how long a stream may stay silent before a Heartbeat event.
	Heartbeat time.Duration
	// QueueLimit is how many vehicles may have an update pending for one rider before the rider
	// is cut as too slow; MaxBatch how many events one write carries at most.
	QueueLimit, MaxBatch int

	// AllowedOrigins are the browser origins allowed cross-origin (path.Match patterns on
	// "scheme://host[:port]", "*" for any).
	AllowedOrigins []string
	// WriteTimeout bounds each write to a WebSocket, SSE or gRPC-Web client.
	WriteTimeout time.Duration
	// HandshakeTimeout bounds a new connection's first bytes and HTTP request headers.
	HandshakeTimeout time.Duration
	// SSERetry is the reconnect delay suggested to EventSource clients.
	SSERetry time.Duration
	// MaxMessageBytes limits one client message (WebSocket frame, gRPC request).
	MaxMessageBytes int
	// KeepaliveTime, KeepaliveTimeout and KeepaliveMinTime configure gRPC keepalive: ping an idle
	// connection after KeepaliveTime, close it when the answer takes longer than
	// KeepaliveTimeout; clients may ping at most every KeepaliveMinTime.
	KeepaliveTime, KeepaliveTimeout, KeepaliveMinTime time.Duration
	// ShutdownTimeout bounds the graceful stop: streams end, then the servers stop; whatever is
	// left afterwards is closed.
	ShutdownTimeout time.Duration

	// Logger gets the process's log lines. Default slog.Default().
	Logger *slog.Logger
	// SharedBus, when set, is used instead of opening Bus, and Run does not close it: the demo
	// shares its in-process bus between the bridge and the edge.
	SharedBus bus.Bus
	// Pages serves the HTTP paths the rider API does not own on the rider port (the demo's map
	// page). Nil: a JSON 404.
	Pages http.Handler
	// Ready, when set, is called once both listeners accept connections, with their addresses
	// (admin nil when off): for logs and tests that listen on port 0.
	Ready func(listen, admin net.Addr)
}

// Defaults returns the default configuration: riders on 127.0.0.1:8080, admin on
// 127.0.0.1:9102, the bus on the local Redis (the bridge's default too).
func Defaults() Config {
	return Config{
		Listen:           "127.0.0.1:8080",
		Admin:            "127.0.0.1:9102",
		Bus:              "redis://127.0.0.1:6379",
		BusPrefix:        "mc",
		TTL:              telemetry.DefaultTTL,
		HubShards:        64,
		DefaultRadiusM:   1000,
		MaxRadiusM:       3000,
		Heartbeat:        15 * time.Second,
		QueueLimit:       256,
		MaxBatch:         64,
		WriteTimeout:     10 * time.Second,
		HandshakeTimeout: 10 * time.Second,
		SSERetry:         2 * time.Second,
		MaxMessageBytes:  4096,
		KeepaliveTime:    30 * time.Second,
		KeepaliveTimeout: 20 * time.Second,
		KeepaliveMinTime: 10 * time.Second,
		ShutdownTimeout:  15 * time.Second,
	}
}

// RegisterFlags binds the configuration to flags on fs, with c's values as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", c.Listen, "rider listener: gRPC, gRPC-Web, WebSocket and SSE on one port")
	fs.StringVar(&c.Admin, "admin", c.Admin, "admin listener: /metrics, /healthz, /readyz, /debug/pprof/ (keep it private; empty: off)")
	fs.StringVar(&c.Bus, "bus", c.Bus, "bus address: redis://host:port, redis+cluster://host:port,host:port, memory:// (alone, nothing arrives)")
	fs.StringVar(&c.BusPrefix, "bus-prefix", c.BusPrefix, "prefix of every Redis key and channel (the bridges' -bus-prefix)")
	fs.DurationVar(&c.TTL, "ttl", c.TTL, "how long a fix keeps a vehicle shown (the bridges' -ttl)")
	fs.IntVar(&c.HubShards, "hub-shards", c.HubShards, "lock shards of the subscription hub")
	fs.UintVar(&c.DefaultRadiusM, "default-radius", c.DefaultRadiusM, "radius_m in metres when a rider gives none")
	fs.UintVar(&c.MaxRadiusM, "max-radius", c.MaxRadiusM, "largest radius_m in metres a rider may ask for")
	fs.DurationVar(&c.Heartbeat, "heartbeat", c.Heartbeat, "a Heartbeat event after this long without events")
	fs.IntVar(&c.QueueLimit, "queue-limit", c.QueueLimit, "vehicles with an update pending for one rider before it is cut as too slow")
	fs.IntVar(&c.MaxBatch, "max-batch", c.MaxBatch, "most events in one write")
	fs.Var((*commaList)(&c.AllowedOrigins), "allowed-origins", `browser origins allowed cross-origin, comma-separated patterns such as "https://*.example.com" ("*": any)`)
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "bound of each write to a WebSocket, SSE or gRPC-Web client (a slow client is cut)")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", c.HandshakeTimeout, "bound of a new connection's first bytes and request headers")
	fs.DurationVar(&c.SSERetry, "sse-retry", c.SSERetry, "reconnect delay suggested to EventSource clients")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", c.MaxMessageBytes, "largest client message (WebSocket frame, gRPC request)")
	fs.DurationVar(&c.KeepaliveTime, "keepalive-time", c.KeepaliveTime, "ping an idle gRPC connection after this long")
	fs.DurationVar(&c.KeepaliveTimeout, "keepalive-timeout", c.KeepaliveTimeout, "close a gRPC connection whose ping is not answered within this")
	fs.DurationVar(&c.KeepaliveMinTime, "keepalive-min-time", c.KeepaliveMinTime, "shortest ping interval allowed to gRPC clients")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "bound of the graceful stop")
}

// commaList is a flag.Value of comma-separated items.
type commaList []string

func (l *commaList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *commaList) Set(s string) error {
	*l = nil
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// Validate checks the configuration and names the flag of the first bad value.
func (c Config) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("-%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	if c.Listen == "" {
		bad("listen", "empty")
	}
	if c.Bus == "" {
		bad("bus", "empty")
	}
	if c.TTL < time.Second {
		bad("ttl", "%v is below 1s", c.TTL)
	}
	if c.HubShards < 1 || c.HubShards > 4096 {
		bad("hub-shards", "%d out of range [1, 4096]", c.HubShards)
	}
	if c.MaxRadiusM < 1 || c.MaxRadiusM > 50000 {
		bad("max-radius", "%d out of range [1, 50000] m", c.MaxRadiusM)
	}
	if c.DefaultRadiusM < 1 || c.DefaultRadiusM > c.MaxRadiusM {
		bad("default-radius", "%d out of range [1, -max-radius %d]", c.DefaultRadiusM, c.MaxRadiusM)
	}
	if c.Heartbeat < 100*time.Millisecond {
		bad("heartbeat", "%v is below 100ms", c.Heartbeat)
	}
	if c.QueueLimit < 1 {
		bad("queue-limit", "%d is below 1", c.QueueLimit)
	}
	if c.MaxBatch < 1 {
		bad("max-batch", "%d is below 1", c.MaxBatch)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"write-timeout", c.WriteTimeout}, {"handshake-timeout", c.HandshakeTimeout}, {"sse-retry", c.SSERetry},
		{"keepalive-time", c.KeepaliveTime}, {"keepalive-timeout", c.KeepaliveTimeout},
		{"keepalive-min-time", c.KeepaliveMinTime}, {"shutdown-timeout", c.ShutdownTimeout},
	} {
		if d.v <= 0 {
			bad(d.flag, "%v must be positive", d.v)
		}
	}
	if c.MaxMessageBytes < 256 || c.MaxMessageBytes > 1<<20 {
		bad("max-message-bytes", "%d out of range [256, 1048576]", c.MaxMessageBytes)
	}
	return errors.Join(errs...)
}

// transportOptions maps the configuration to the transport's options.
func (c Config) transportOptions(logger *slog.Logger) transport.Options {
	return transport.Options{
		Session: session.Options{
			DefaultRadiusM: uint32(c.DefaultRadiusM), MaxRadiusM: uint32(c.MaxRadiusM),
			Heartbeat: c.Heartbeat, QueueLimit: c.QueueLimit, MaxBatch: c.MaxBatch,
		},
		AllowedOrigins:   c.AllowedOrigins,
		WriteTimeout:     c.WriteTimeout,
		HandshakeTimeout: c.HandshakeTimeout,
		SSERetry:         c.SSERetry,
		MaxMessageBytes:  c.MaxMessageBytes,
		KeepaliveTime:    c.KeepaliveTime,
		KeepaliveTimeout: c.KeepaliveTimeout,
		KeepaliveMinTime: c.KeepaliveMinTime,
		Logger:           logger,
		Fallback:         c.Pages,
	}
}

// Run serves riders until ctx ends, then stops gracefully within c.ShutdownTimeout: readiness
// turns false, every stream ends with its transport's "going away", the servers stop, then the
// hub and the bus close. It returns nil after a clean stop.
func Run(ctx context.Context, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	logger := c.Logger
	if logger == nil {
		logger = slog.Default()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	b := c.SharedBus
	if b == nil {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		opened, err := bus.Open(octx, c.Bus, bus.Options{TTL: c.TTL, KeyPrefix: c.BusPrefix, Logger: logger, Registerer: reg})
		cancel()
		if err != nil {
			return fmt.Errorf("edge: bus %s: %w", c.Bus, err)
		}
		defer opened.Close()
		b = opened
	}
	h, err := hub.New(b, hub.Options{TTL: c.TTL, Shards: c.HubShards, Logger: logger, Registerer: reg})
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	defer h.Close()
	srv, err := transport.New(h, c.transportOptions(logger))
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}

	l, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("edge: listen: %w", err)
	}
	var ready atomic.Bool
	var adminAddr net.Addr
	if c.Admin != "" {
		al, stop, err := serveAdmin(c.Admin, reg, ready.Load, logger)
		if err != nil {
			l.Close()
			return err
		}
		defer stop()
		adminAddr = al
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	ready.Store(true)
	logger.Info("edge serving", "listen", l.Addr().String(), "bus", c.Bus)
	if c.Ready != nil {
		c.Ready(l.Addr(), adminAddr)
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
		// The listener failed: stop what is still open and report it.
	}
	ready.Store(false)
	logger.Info("edge stopping", "timeout", c.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer cancel()
	stopErr := srv.Shutdown(sctx)
	if serveErr == nil {
		serveErr = <-served
	}
	if serveErr != nil {
		return fmt.Errorf("edge: %w", serveErr)
	}
	if stopErr != nil {
		return fmt.Errorf("edge: %w", stopErr)
	}
	logger.Info("edge stopped")
	return nil
}

// serveAdmin serves /metrics, /healthz, /readyz and /debug/pprof/ on addr until stop.
func serveAdmin(addr string, g prometheus.Gatherer, ready func() bool, logger *slog.Logger) (net.Addr, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("edge: admin listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin listener", "err", err.Error())
		}
	}()
	return ln.Addr(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}, nil
}
