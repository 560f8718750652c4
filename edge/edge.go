// Package edge runs one edge process: it opens the bus, starts the shared subscription hub and
// serves the rider stream (package transport: gRPC, gRPC-Web, WebSocket, SSE on one port), with
// auth (core/auth), limits, max connection age and the operations middleware (core/ops), plus an
// admin listener (/metrics, /healthz, /readyz, /debug/pprof/). It owns the process's
// configuration (Config: every setting with a flag, a MESHCAST_* variable through core/config,
// a default that works and validation) and the order of start-up, drain and graceful stop.
package edge

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/meshcast/meshcast/core/auth"
	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/mesh"
	"github.com/meshcast/meshcast/core/ops"
	"github.com/meshcast/meshcast/core/redact"
	"github.com/meshcast/meshcast/core/telemetry"
	"github.com/meshcast/meshcast/edge/hub"
	"github.com/meshcast/meshcast/edge/session"
	"github.com/meshcast/meshcast/edge/transport"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
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
	// WriteDelay holds a rider's updates for this long after the first, so that those arriving
	// meanwhile leave in the same write (each vehicle's latest only): fewer writes per event for
	// at most this much more latency. 0: every update at once.
	WriteDelay time.Duration

	// AllowedOrigins are the browser origins allowed cross-origin (path.Match patterns on
	// "scheme://host[:port]", "*" for any).
	AllowedOrigins []string
	// WriteTimeout bounds each write to a WebSocket, SSE or gRPC-Web client, and how long a
	// native gRPC stream's send may stay blocked by flow control.
	WriteTimeout time.Duration
	// SendBuffer is how many unacknowledged bytes a WebSocket, SSE or gRPC-Web rider's socket may
	// hold before the rider is cut as too slow (0: off); see transport.Options.SendBuffer.
	SendBuffer int
	// HandshakeTimeout bounds a new connection's first bytes and HTTP request headers, and a
	// gRPC or gRPC-Web stream's time from its headers to its complete request message.
	HandshakeTimeout time.Duration
	// MaxStreamsPerConn caps the concurrent streams of one HTTP/2 connection; MaxHeaderBytes the
	// request headers (HTTP) and metadata (gRPC) of one request.
	MaxStreamsPerConn, MaxHeaderBytes int
	// SSERetry is the reconnect delay suggested to EventSource clients.
	SSERetry time.Duration
	// MaxMessageBytes limits one client message (WebSocket frame, gRPC request).
	MaxMessageBytes int
	// KeepaliveTime, KeepaliveTimeout and KeepaliveMinTime configure gRPC keepalive: ping an idle
	// connection after KeepaliveTime, close it when the answer takes longer than
	// KeepaliveTimeout; clients may ping at most every KeepaliveMinTime.
	KeepaliveTime, KeepaliveTimeout, KeepaliveMinTime time.Duration
	// Reflection serves the gRPC reflection service on the rider port (grpcurl); turn it off on a
	// public production endpoint.
	Reflection bool
	// ShutdownTimeout bounds the graceful stop after the drain: streams end, then the servers
	// stop; whatever is left afterwards is closed.
	ShutdownTimeout time.Duration

	// AuthKeyFile (PEM public keys or an HMAC secret) or AuthJWKSFile (a JWKS) turn auth on: every
	// rider needs a bearer JWT (core/auth), checked against AuthAudience and AuthIssuer when set,
	// with AuthLeeway of clock skew. The file is reloaded when it changes.
	AuthKeyFile, AuthJWKSFile, AuthAudience, AuthIssuer string
	AuthLeeway                                          time.Duration
	// InsecureNoAuth lets the edge command serve without auth (Run itself serves without auth
	// whenever no key file is set: the demo).
	InsecureNoAuth bool
	// MaxConns and MaxConnsPerIP limit open rider streams per process and per client address
	// (0: none); ConnRate limits new streams per second with bursts of ConnBurst (0: none).
	MaxConns, MaxConnsPerIP int
	ConnRate                float64
	ConnBurst               int
	// TrustedProxyHeader names the client address (e.g. X-Forwarded-For) when the peer is in
	// TrustedProxies; otherwise the peer address is the client's.
	TrustedProxyHeader string
	TrustedProxies     []netip.Prefix
	// MaxConnAge ends every stream after this age (+ up to 10% jitter) with its "going away", so
	// that riders spread over new instances; 0: no max age. The edge times each stream itself,
	// so streams that share one HTTP/2 connection (a proxy such as Envoy multiplexes hundreds of
	// riders on one) each end at their own age. A native gRPC connection also gets grpc-go's
	// MaxConnectionAge (GOAWAY: no new streams on it) and is closed MaxConnAgeGrace later:
	// 0 (the default) picks the shortest grace that never cuts a stream before its own age
	// (transport.MinConnAgeGrace); a shorter explicit grace is refused.
	MaxConnAge, MaxConnAgeGrace time.Duration
	// DrainWindow is how long a drain (SIGTERM) spreads the riders' reconnects over: readiness
	// turns false, new streams are refused, and each open stream goes away at its own random
	// moment in the window; then the graceful stop (ShutdownTimeout) begins.
	DrainWindow time.Duration

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
		WriteDelay:       50 * time.Millisecond,
		WriteTimeout:     10 * time.Second,
		SendBuffer:       256 << 10,
		HandshakeTimeout: 10 * time.Second,
		SSERetry:         2 * time.Second,
		MaxMessageBytes:  4096,
		KeepaliveTime:    30 * time.Second,
		KeepaliveTimeout: 20 * time.Second,
		KeepaliveMinTime: 10 * time.Second,
		Reflection:       true,
		ShutdownTimeout:  15 * time.Second,
		AuthLeeway:       30 * time.Second,
		MaxConnAge:       15 * time.Minute,
		MaxConnAgeGrace:  0, // long enough for every stream's own age (transport.MinConnAgeGrace)
		DrainWindow:      10 * time.Second,

		MaxStreamsPerConn: 100,
		MaxHeaderBytes:    16 << 10,
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
	fs.DurationVar(&c.WriteDelay, "write-delay", c.WriteDelay, "hold a rider's updates this long after the first so that those arriving meanwhile leave in one write (latest per vehicle); 0: at once")
	fs.Var((*commaList)(&c.AllowedOrigins), "allowed-origins", `browser origins allowed cross-origin, comma-separated patterns such as "https://*.example.com" ("*": any)`)
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "bound of each write to a WebSocket, SSE or gRPC-Web client, and of a native gRPC send blocked by flow control (a slow client is cut)")
	fs.IntVar(&c.SendBuffer, "send-buffer", c.SendBuffer, "bytes a WebSocket, SSE or gRPC-Web rider's socket may hold unread by the client: past it writes wait, and a rider that acknowledges nothing for -write-timeout meanwhile is cut as too slow (4008); also its SO_SNDBUF; 0: off")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", c.HandshakeTimeout, "bound of a new connection's first bytes and request headers, and of a gRPC or gRPC-Web stream's request message (stalled ones are cut)")
	fs.IntVar(&c.MaxStreamsPerConn, "max-streams-per-conn", c.MaxStreamsPerConn, "most concurrent streams of one HTTP/2 connection (native gRPC and h2c)")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", c.MaxHeaderBytes, "largest request headers (HTTP) and metadata (gRPC) of one request")
	fs.DurationVar(&c.SSERetry, "sse-retry", c.SSERetry, "reconnect delay suggested to EventSource clients")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", c.MaxMessageBytes, "largest client message (WebSocket frame, gRPC request)")
	fs.DurationVar(&c.KeepaliveTime, "keepalive-time", c.KeepaliveTime, "ping an idle gRPC connection after this long")
	fs.DurationVar(&c.KeepaliveTimeout, "keepalive-timeout", c.KeepaliveTimeout, "close a gRPC connection whose ping is not answered within this")
	fs.DurationVar(&c.KeepaliveMinTime, "keepalive-min-time", c.KeepaliveMinTime, "shortest ping interval allowed to gRPC clients")
	fs.BoolVar(&c.Reflection, "reflection", c.Reflection, "serve the gRPC reflection service on the rider port (grpcurl); false on a public production endpoint")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "bound of the graceful stop after the drain")
	fs.StringVar(&c.AuthKeyFile, "auth-key-file", c.AuthKeyFile, "rider JWT keys: PEM public keys (RS256, ES256) or an HMAC secret (HS256); reloaded on change")
	fs.StringVar(&c.AuthJWKSFile, "auth-jwks-file", c.AuthJWKSFile, "rider JWT keys as a JWKS file (instead of -auth-key-file); reloaded on change")
	fs.StringVar(&c.AuthAudience, "auth-audience", c.AuthAudience, "required JWT aud (empty: not checked)")
	fs.StringVar(&c.AuthIssuer, "auth-issuer", c.AuthIssuer, "required JWT iss (empty: not checked)")
	fs.DurationVar(&c.AuthLeeway, "auth-leeway", c.AuthLeeway, "clock skew allowed on JWT exp and nbf")
	fs.BoolVar(&c.InsecureNoAuth, "insecure-no-auth", c.InsecureNoAuth, "serve riders without auth (the edge refuses to start without -auth-key-file or -auth-jwks-file otherwise)")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "most open rider streams in this process (0: no limit)")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", c.MaxConnsPerIP, "most open rider streams per client address (0: no limit)")
	fs.Float64Var(&c.ConnRate, "conn-rate", c.ConnRate, "most new rider streams per second (0: no limit)")
	fs.IntVar(&c.ConnBurst, "conn-burst", c.ConnBurst, "burst of new rider streams above -conn-rate (0: one second's worth)")
	fs.StringVar(&c.TrustedProxyHeader, "trusted-proxy-header", c.TrustedProxyHeader, "header naming the client address behind a trusted proxy, e.g. X-Forwarded-For (empty: the peer address)")
	fs.Var((*prefixList)(&c.TrustedProxies), "trusted-proxies", "CIDRs of the proxies whose -trusted-proxy-header is believed, comma-separated")
	fs.DurationVar(&c.MaxConnAge, "max-conn-age", c.MaxConnAge, "end every rider stream after this age (+ up to 10% jitter) so riders rebalance (0: never)")
	fs.DurationVar(&c.MaxConnAgeGrace, "max-conn-age-grace", c.MaxConnAgeGrace, "after a gRPC connection's -max-conn-age (GOAWAY), how long its streams may go on before it is closed; 0: the shortest that never cuts a stream before its own age (max age + 10% + -write-timeout); shorter values are refused (behind a proxy they would end many riders' streams together)")
	fs.DurationVar(&c.DrainWindow, "drain-window", c.DrainWindow, "on SIGTERM, spread the riders' reconnects over this window before stopping")
}

// prefixList is a flag.Value of comma-separated CIDRs.
type prefixList []netip.Prefix

func (l *prefixList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, p := range *l {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (l *prefixList) Set(v string) error {
	*l = nil
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		pr, err := netip.ParsePrefix(p)
		if err != nil {
			ip, err2 := netip.ParseAddr(p)
			if err2 != nil {
				return fmt.Errorf("%q is not a CIDR or an address", p)
			}
			pr = netip.PrefixFrom(ip, ip.BitLen())
		}
		*l = append(*l, pr.Masked())
	}
	return nil
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
	if c.SendBuffer < 0 {
		bad("send-buffer", "%d is negative (0 turns it off)", c.SendBuffer)
	} else if c.SendBuffer > 0 && c.SendBuffer < 4096 {
		bad("send-buffer", "%d is below 4096 bytes (0 turns it off)", c.SendBuffer)
	}
	if c.QueueLimit < 1 {
		bad("queue-limit", "%d is below 1", c.QueueLimit)
	}
	if c.WriteDelay < 0 || c.WriteDelay > time.Second {
		bad("write-delay", "%v out of range [0, 1s]", c.WriteDelay)
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
	if c.AuthKeyFile != "" && c.AuthJWKSFile != "" {
		bad("auth-jwks-file", "set -auth-key-file or -auth-jwks-file, not both")
	}
	if c.AuthLeeway < 0 || c.AuthLeeway > 10*time.Minute {
		bad("auth-leeway", "%v out of range [0, 10m]", c.AuthLeeway)
	}
	for _, l := range []struct {
		flag string
		v    int
	}{{"max-conns", c.MaxConns}, {"max-conns-per-ip", c.MaxConnsPerIP}, {"conn-burst", c.ConnBurst}} {
		if l.v < 0 {
			bad(l.flag, "%d is negative", l.v)
		}
	}
	if c.ConnRate < 0 {
		bad("conn-rate", "%v is negative", c.ConnRate)
	}
	if c.TrustedProxyHeader != "" && len(c.TrustedProxies) == 0 {
		bad("trusted-proxies", "empty while -trusted-proxy-header is set")
	}
	if c.MaxConnAge != 0 && c.MaxConnAge < time.Second {
		bad("max-conn-age", "%v is below 1s (0: off)", c.MaxConnAge)
	}
	if c.MaxConnAgeGrace < 0 {
		bad("max-conn-age-grace", "%v is negative", c.MaxConnAgeGrace)
	} else if lo := transport.MinConnAgeGrace(c.MaxConnAge, c.WriteTimeout); c.MaxConnAge > 0 && c.MaxConnAgeGrace != 0 && c.MaxConnAgeGrace < lo {
		bad("max-conn-age-grace", "%v would close a connection before the streams on it reach their own age (a proxy multiplexes many riders on one connection: they would all end together); use 0 (automatic) or at least %v (max age + 10%% jitter + -write-timeout)", c.MaxConnAgeGrace, lo)
	}
	if c.DrainWindow < 0 || c.DrainWindow > time.Hour {
		bad("drain-window", "%v out of range [0, 1h]", c.DrainWindow)
	}
	if c.MaxMessageBytes < 256 || c.MaxMessageBytes > 1<<20 {
		bad("max-message-bytes", "%d out of range [256, 1048576]", c.MaxMessageBytes)
	}
	if c.MaxStreamsPerConn < 1 || c.MaxStreamsPerConn > 100000 {
		bad("max-streams-per-conn", "%d out of range [1, 100000]", c.MaxStreamsPerConn)
	}
	if c.MaxHeaderBytes < 1024 || c.MaxHeaderBytes > 1<<20 {
		bad("max-header-bytes", "%d out of range [1024, 1048576]", c.MaxHeaderBytes)
	}
	return errors.Join(errs...)
}

// transportOptions maps the configuration to the transport's options.
func (c Config) transportOptions(logger *slog.Logger) transport.Options {
	return transport.Options{
		Session: session.Options{
			DefaultRadiusM: uint32(c.DefaultRadiusM), MaxRadiusM: uint32(c.MaxRadiusM),
			Heartbeat: c.Heartbeat, QueueLimit: c.QueueLimit, MaxBatch: c.MaxBatch, WriteDelay: c.WriteDelay,
		},
		AllowedOrigins:   c.AllowedOrigins,
		WriteTimeout:     c.WriteTimeout,
		SendBuffer:       sendBuffer(c.SendBuffer),
		HandshakeTimeout: c.HandshakeTimeout,
		SSERetry:         c.SSERetry,
		MaxMessageBytes:  c.MaxMessageBytes,
		KeepaliveTime:    c.KeepaliveTime,
		KeepaliveTimeout: c.KeepaliveTimeout,
		KeepaliveMinTime: c.KeepaliveMinTime,
		NoReflection:     !c.Reflection,
		Logger:           logger,
		Fallback:         c.Pages,

		MaxConns: c.MaxConns, MaxConnsPerIP: c.MaxConnsPerIP, ConnRate: c.ConnRate, ConnBurst: c.ConnBurst,
		TrustedProxyHeader: c.TrustedProxyHeader, TrustedProxies: c.TrustedProxies,
		MaxConnAge: c.MaxConnAge, MaxConnAgeGrace: c.MaxConnAgeGrace,
		MaxStreamsPerConn: c.MaxStreamsPerConn, MaxHeaderBytes: c.MaxHeaderBytes,
	}
}

// Run serves riders until ctx ends, then drains and stops: readiness turns false at once (/readyz
// 503, gRPC health NOT_SERVING), new streams are refused, every stream is told to go away at its
// own random moment within c.DrainWindow; then, within c.ShutdownTimeout, whatever is left ends
// with its transport's "going away", the servers stop, and the hub and the bus close. It returns
// nil after a clean stop.
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
	opsMetrics := ops.NewMetrics(reg)

	o := c.transportOptions(logger)
	o.Registerer = reg
	o.Session.Metrics = session.NewMetrics(reg)
	o.HTTPMiddleware = ops.HTTP(logger, opsMetrics)
	o.StreamInterceptor = ops.StreamInterceptor(logger, opsMetrics)
	o.UnaryInterceptor = ops.UnaryInterceptor(logger, opsMetrics)
	if c.AuthKeyFile != "" || c.AuthJWKSFile != "" {
		v, err := auth.New(auth.Config{KeyFile: c.AuthKeyFile, JWKSFile: c.AuthJWKSFile,
			Audience: c.AuthAudience, Issuer: c.AuthIssuer, Leeway: c.AuthLeeway, Logger: logger})
		if err != nil {
			return fmt.Errorf("edge: %w", err)
		}
		defer v.Close()
		o.Authenticate = func(tok string) (transport.Grant, error) {
			cl, err := v.Verify(tok)
			if err != nil {
				return transport.Grant{}, err
			}
			return transport.Grant{Subject: cl.Subject, MaxRadiusM: cl.MaxRadiusM}, nil
		}
	} else {
		logger.Warn("edge: auth is off: any client may watch")
	}

	b := c.SharedBus
	if b == nil {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		opened, err := bus.Open(octx, c.Bus, bus.Options{TTL: c.TTL, KeyPrefix: c.BusPrefix, Logger: logger, Registerer: reg})
		cancel()
		if err != nil {
			return fmt.Errorf("edge: bus %s: %w", redact.URL(c.Bus), err)
		}
		defer opened.Close()
		b = opened
	}
	h, err := hub.New(b, hub.Options{TTL: c.TTL, Shards: c.HubShards, Logger: logger, Registerer: reg})
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	defer h.Close()
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meshcast_hub_watchers", Help: "(rider, mesh) subscriptions held by the hub."},
			func() float64 { return float64(h.Stats().Watchers) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meshcast_hub_vehicles", Help: "Vehicles the hub holds (all subscribed meshes)."},
			func() float64 { return float64(h.Stats().Vehicles) }),
	)
	srv, err := transport.New(h, o)
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}

	l, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("edge: listen: %w", err)
	}
	// state: 0 starting, 1 serving, 2 draining.
	var state atomic.Int32
	// The bus keeps no connection state the edge could read: a snapshot read of one mesh, at
	// most once a second, tells whether it answers.
	probeMesh, _ := mesh.Third(35.681236, 139.767125)
	busReady := ops.Cached(time.Second, 500*time.Millisecond, func(ctx context.Context) error {
		if _, err := b.Snapshot(ctx, probeMesh); err != nil {
			return fmt.Errorf("bus: %w", err)
		}
		return nil
	})
	ready := func() error {
		switch state.Load() {
		case 0:
			return errors.New("starting")
		case 2:
			return errors.New("draining")
		}
		return busReady()
	}
	var adminAddr net.Addr
	if c.Admin != "" {
		a, err := ops.ServeAdmin(c.Admin, reg, ready, logger)
		if err != nil {
			l.Close()
			return fmt.Errorf("edge: %w", err)
		}
		defer a.Close()
		adminAddr = a.Addr()
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	state.Store(1)
	logger.Info("edge serving", "listen", l.Addr().String(), "bus", redact.URL(c.Bus), "auth", o.Authenticate != nil)
	if c.Ready != nil {
		c.Ready(l.Addr(), adminAddr)
	}

	var serveErr error
	select {
	case <-ctx.Done():
		state.Store(2)
		srv.Drain(c.DrainWindow)
		logger.Info("edge draining", "window", c.DrainWindow.String(), "riders", srv.Streams())
		// Every stream goes away within the window; a little more for the last writes.
		dctx, cancel := context.WithTimeout(context.Background(), c.DrainWindow+c.WriteTimeout)
		srv.WaitIdle(dctx)
		cancel()
	case serveErr = <-served:
		// The listener failed: stop what is still open and report it.
		state.Store(2)
	}
	logger.Info("edge stopping", "timeout", c.ShutdownTimeout.String(), "riders", srv.Streams())
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

// sendBuffer maps the flag (0: off) to transport.Options.SendBuffer (0: default, negative: off).
func sendBuffer(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
