package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/improbable-eng/grpc-web/go/grpcweb"
	"github.com/meshcast/meshcast/edge/hub"
	"github.com/meshcast/meshcast/edge/session"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
)

// Paths of the HTTP transports (API.md §3). gRPC-Web uses the gRPC method paths.
const (
	PathWebSocket = "/v1/ws"
	PathSSE       = "/v1/sse"
)

// Options configure a Server. The zero value is valid: every field has a default.
type Options struct {
	// Session configures every rider's session (radius defaults and limits, heartbeat, queue).
	Session session.Options
	// AllowedOrigins are the browser origins allowed cross-origin on every transport (gRPC-Web
	// CORS, WebSocket and SSE Origin checks). Each is a path.Match pattern against the whole
	// origin, e.g. "https://app.example.com" or "https://*.example.com"; "*" allows any origin.
	// Same-origin requests and requests without an Origin header (native clients) are always
	// allowed. Default: none.
	AllowedOrigins []string
	// WriteTimeout bounds every write to a WebSocket, SSE or gRPC-Web client; a write that does
	// not finish in time closes the connection (a slow consumer's cut). Default 10s.
	WriteTimeout time.Duration
	// SendBuffer is how many bytes a WebSocket, SSE or gRPC-Web rider's socket may hold that the
	// client has not acknowledged: past it the rider is behind and its writes are held; if it
	// then acknowledges nothing for WriteTimeout it is cut with its transport's "too slow"
	// (WebSocket 4008, SSE comment, gRPC-Web RESOURCE_EXHAUSTED), which still fits in the
	// socket. It also sets the socket's SO_SNDBUF (the kernel doubles it). Default 256 KiB;
	// negative: off (kernel autotuning; a stalled rider is cut only when a write times out).
	// Native gRPC riders share connections: a stream whose send blocks (HTTP/2 flow control)
	// for WriteTimeout is cut with RESOURCE_EXHAUSTED instead.
	SendBuffer int
	// HandshakeTimeout bounds how long a new connection may take to send its first bytes and,
	// for HTTP, its request headers, and how long a gRPC or gRPC-Web stream may take from its
	// headers to its complete first request message: a stream still waiting is cut with
	// DEADLINE_EXCEEDED and counted in meshcast_edge_stalled_total. Default 10s.
	HandshakeTimeout time.Duration
	// MaxStreamsPerConn caps the concurrent streams of one HTTP/2 connection (native gRPC, and
	// HTTP/2 for gRPC-Web, SSE and the page): SETTINGS_MAX_CONCURRENT_STREAMS. Default 100.
	MaxStreamsPerConn int
	// MaxHeaderBytes caps a request's headers: HTTP/1.x request line and headers, HTTP/2 and
	// native gRPC header lists (metadata). Default 16 KiB.
	MaxHeaderBytes int
	// SSERetry is the reconnect delay suggested to EventSource clients (the retry: field).
	// Default 2s.
	SSERetry time.Duration
	// MaxMessageBytes limits one client message: a WebSocket frame (1008 when over) or a gRPC
	// request (RESOURCE_EXHAUSTED). Default 4096.
	MaxMessageBytes int
	// KeepaliveTime is how long a gRPC connection may be idle before the server pings it, and
	// KeepaliveTimeout how long it waits for the answer before closing it. Defaults 30s and 20s.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// KeepaliveMinTime is the shortest ping interval a gRPC client may use (pings without
	// streams are allowed); faster pingers are disconnected. Default 10s.
	KeepaliveMinTime time.Duration
	// Authenticate, when set, checks every rider's bearer token before its stream opens
	// (Authorization header or metadata; access_token query parameter on WebSocket and SSE):
	// refused with gRPC UNAUTHENTICATED or HTTP 401. Nil: no auth.
	Authenticate Authenticator
	// MaxConns and MaxConnsPerIP limit the open rider streams of the process and of one client
	// address (0: no limit); over them: UNAVAILABLE / RESOURCE_EXHAUSTED, HTTP 503.
	MaxConns, MaxConnsPerIP int
	// ConnRate limits new rider streams per second, with bursts of ConnBurst (0: no limit);
	// over it: UNAVAILABLE, HTTP 503.
	ConnRate  float64
	ConnBurst int
	// TrustedProxyHeader (e.g. X-Forwarded-For) names the client address when the connection
	// comes from one of TrustedProxies; otherwise the peer address counts.
	TrustedProxyHeader string
	TrustedProxies     []netip.Prefix
	// MaxConnAge, when set, ends every stream after this age plus up to 10% jitter with its
	// "going away" (WebSocket 1001, SSE end, gRPC UNAVAILABLE), each stream timed on its own,
	// and sets grpc-go's MaxConnectionAge (GOAWAY: no new streams on the connection) with
	// MaxConnAgeGrace before the connection is closed: clients reconnect, so new instances get
	// their share. MaxConnAgeGrace 0 is MinConnAgeGrace, so that streams sharing a connection
	// (the riders a proxy multiplexes on one upstream connection) are never cut together
	// before their own age; a shorter grace closes the connection with its young streams.
	MaxConnAge, MaxConnAgeGrace time.Duration
	// NoReflection leaves out the gRPC reflection service (grpcurl's discovery), which a public
	// production endpoint need not offer. Default: served.
	NoReflection bool
	// HTTPMiddleware wraps the HTTP handler (gRPC-Web, WebSocket, SSE, Fallback): the process's
	// request id, access log, metrics and recovery (core/ops). Nil: none.
	HTTPMiddleware func(http.Handler) http.Handler
	// StreamInterceptor and UnaryInterceptor wrap every gRPC (and gRPC-Web) call. Nil: none.
	StreamInterceptor grpc.StreamServerInterceptor
	UnaryInterceptor  grpc.UnaryServerInterceptor
	// Registerer gets the transport metrics. Nil: not registered.
	Registerer prometheus.Registerer
	// Logger gets connection-level failures. Default slog.Default().
	Logger *slog.Logger
	// Fallback serves the HTTP paths the rider API does not own (the demo's map page).
	// Default: a JSON 404.
	Fallback http.Handler
}

func (o Options) withDefaults() (Options, error) {
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.SendBuffer == 0 {
		o.SendBuffer = 256 << 10
	}
	if o.SSERetry == 0 {
		o.SSERetry = 2 * time.Second
	}
	if o.MaxMessageBytes == 0 {
		o.MaxMessageBytes = 4096
	}
	if o.MaxStreamsPerConn == 0 {
		o.MaxStreamsPerConn = 100
	}
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = 16 << 10
	}
	if o.KeepaliveTime == 0 {
		o.KeepaliveTime = 30 * time.Second
	}
	if o.KeepaliveTimeout == 0 {
		o.KeepaliveTimeout = 20 * time.Second
	}
	if o.KeepaliveMinTime == 0 {
		o.KeepaliveMinTime = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	// The session's radius defaults, filled here so that a token's radius limit can lower them.
	if o.Session.MaxRadiusM == 0 {
		o.Session.MaxRadiusM = 3000
	}
	if o.Session.DefaultRadiusM == 0 {
		o.Session.DefaultRadiusM = min(1000, o.Session.MaxRadiusM)
	}
	if o.ConnRate > 0 && o.ConnBurst == 0 {
		o.ConnBurst = max(1, int(o.ConnRate))
	}
	switch {
	case o.WriteTimeout < 0, o.HandshakeTimeout < 0, o.SSERetry < 0, o.KeepaliveTime < 0,
		o.KeepaliveTimeout < 0, o.KeepaliveMinTime < 0:
		return o, errors.New("transport options: negative duration")
	case o.MaxConns < 0, o.MaxConnsPerIP < 0, o.ConnRate < 0, o.ConnBurst < 0, o.MaxConnAge < 0, o.MaxConnAgeGrace < 0:
		return o, errors.New("transport options: negative limit")
	case o.MaxMessageBytes < 256:
		return o, fmt.Errorf("transport options: max message bytes %d below 256", o.MaxMessageBytes)
	case o.MaxStreamsPerConn < 1:
		return o, fmt.Errorf("transport options: max streams per connection %d below 1", o.MaxStreamsPerConn)
	case o.MaxHeaderBytes < 1024 || o.MaxHeaderBytes > 1<<20:
		return o, fmt.Errorf("transport options: max header bytes %d outside [1024, 1 MiB]", o.MaxHeaderBytes)
	}
	for _, p := range o.AllowedOrigins {
		if _, err := path.Match(p, ""); err != nil {
			return o, fmt.Errorf("transport options: allowed origin %q: %w", p, err)
		}
	}
	return o, nil
}

// MinConnAgeGrace is the shortest MaxConnAgeGrace that lets every stream of a connection end
// at its own age: a stream opened just before the connection's GOAWAY lives up to maxAge + 10%
// (its jitter), and its last write may take writeTimeout.
func MinConnAgeGrace(maxAge, writeTimeout time.Duration) time.Duration {
	return maxAge + maxAge/10 + writeTimeout
}

// Server serves the rider stream on one listener: native gRPC (HTTP/2 with prior knowledge)
// and gRPC-Web, WebSocket and SSE (HTTP/1.x; gRPC-Web and SSE also over h2c, see h2route).
// Create it with New, run it with Serve, stop it with Shutdown.
type Server struct {
	o      Options
	hub    *hub.Hub
	grpc   *grpc.Server
	health *health.Server
	web    *grpcweb.WrappedGrpcServer
	// webDirectSrv serves gRPC-Web Watch over plain HTTP/1.1 (binary) without grpc-go: the
	// package's WrapHandler over serveWebWatch (grpcweb.go).
	webDirectSrv *grpcweb.WrappedGrpcServer
	http         *http.Server

	// stop is cancelled when Shutdown begins: every stream waits in Session.Next on a context
	// derived from it (ended earlier by its max age or its drain offset) and ends (WebSocket
	// 1001, SSE end of stream, gRPC UNAVAILABLE).
	stop       context.Context
	cancelStop context.CancelFunc
	rate       *bucket // nil: no rate limit
	m          *metrics

	mu       sync.Mutex
	split    *splitter // set by Serve
	shutdown bool      // Shutdown was called
	draining bool      // Drain was called
	live     map[*stream]struct{}
	perIP    map[netip.Addr]int
	hijacked map[any]func() // open WebSocket and SSE connections (not tracked by http.Server): their CloseNow
	streams  sync.WaitGroup // open sessions, on every transport (Add under mu, never after shutdown)
	served   chan struct{}  // closed when Serve returns

	// The flushers of direct riders (direct.go), started with the first.
	flushOnce sync.Once
	flushers  []*flusher
	flushNext atomic.Uint32
	flushWG   sync.WaitGroup
}

// New returns a server for the hub's riders.
func New(h *hub.Hub, o Options) (*Server, error) {
	if h == nil {
		return nil, errors.New("transport: nil hub")
	}
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{o: o, hub: h, hijacked: map[any]func(){}, served: make(chan struct{}),
		live: map[*stream]struct{}{}, perIP: map[netip.Addr]int{}, m: newMetrics(o.Registerer)}
	s.stop, s.cancelStop = context.WithCancel(context.Background())
	if o.ConnRate > 0 {
		s.rate = &bucket{rate: o.ConnRate, burst: float64(o.ConnBurst)}
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(newQueueCollector(s)); err != nil {
			return nil, fmt.Errorf("transport: register metrics: %w", err)
		}
	}
	ka := keepalive.ServerParameters{Time: o.KeepaliveTime, Timeout: o.KeepaliveTimeout}
	if o.MaxConnAge > 0 {
		// grpc-go adds its own ±10% jitter; the grace lets the streams end with their own
		// "going away" (at MaxConnAge + up to 10%) before the connection is closed.
		ka.MaxConnectionAge = o.MaxConnAge
		ka.MaxConnectionAgeGrace = o.MaxConnAgeGrace
		if ka.MaxConnectionAgeGrace == 0 {
			ka.MaxConnectionAgeGrace = MinConnAgeGrace(o.MaxConnAge, o.WriteTimeout)
		}
	}

	gopts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(newCodec()),
		grpc.MaxRecvMsgSize(o.MaxMessageBytes),
		grpc.KeepaliveParams(ka),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: o.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.ConnectionTimeout(o.HandshakeTimeout),
		grpc.MaxConcurrentStreams(uint32(o.MaxStreamsPerConn)),
		grpc.MaxHeaderListSize(uint32(o.MaxHeaderBytes)),
		grpc.InTapHandle(s.tap),
		// No read buffer: grpc-go reads each connection through a bufio.Reader of 32 KiB by
		// default, kept for the connection's life, and a rider's client sends next to nothing
		// (its request, window updates, pings). bench -fanout, 10,000 gRPC riders with a
		// connection each: 42.8 KB of edge RSS per idle rider against 49.2-50.6 (4 KiB: 49.6).
		grpc.ReadBufferSize(0),
	}
	streamInts := []grpc.StreamServerInterceptor{streamFirstRequest}
	unaryInts := []grpc.UnaryServerInterceptor{unaryFirstRequest}
	if o.StreamInterceptor != nil {
		streamInts = append(streamInts, o.StreamInterceptor)
	}
	if o.UnaryInterceptor != nil {
		unaryInts = append(unaryInts, o.UnaryInterceptor)
	}
	gopts = append(gopts, grpc.ChainStreamInterceptor(streamInts...), grpc.ChainUnaryInterceptor(unaryInts...))
	s.grpc = grpc.NewServer(gopts...)
	s.grpc.RegisterService(s.riderServiceDesc(), s)
	s.health = health.NewServer()
	s.health.SetServingStatus(meshcastv1.RiderService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	if !o.NoReflection {
		reflection.Register(s.grpc)
	}

	s.web = grpcweb.WrapServer(s.grpc,
		grpcweb.WithOriginFunc(s.originAllowed),
		grpcweb.WithWebsockets(true),
		grpcweb.WithWebsocketOriginFunc(s.requestOriginAllowed),
		grpcweb.WithWebsocketsMessageReadLimit(int64(o.MaxMessageBytes)),
	)
	s.webDirectSrv = s.newWebDirect()
	var handler http.Handler = s
	if o.HTTPMiddleware != nil {
		handler = o.HTTPMiddleware(s)
	}
	// net/http serves HTTP/1.x and the plain-text HTTP/2 connections whose first request is not
	// native gRPC (the listener routes them, see h2route). TLS is terminated in front of the edge.
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	s.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: o.HandshakeTimeout,
		IdleTimeout:       2 * o.KeepaliveTime,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ConnContext:       withConn, // gRPC-Web streams find their socket's send queue
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
		Protocols:         protocols,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: o.MaxStreamsPerConn},
	}
	return s, nil
}

// Serve accepts connections on l until Shutdown, routing each by its first bytes: the HTTP/2
// client preface to the native gRPC server, anything else to the HTTP server. It returns nil
// after Shutdown, or the listener's error. Serve may be called once.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.split != nil {
		s.mu.Unlock()
		return errors.New("transport: Serve called twice")
	}
	sp := newSplitter(l, s.o.HandshakeTimeout)
	sp.maxHeader = s.o.MaxHeaderBytes
	sp.onStall = func() { s.m.stalled.WithLabelValues(stalledFirstBytes).Inc() }
	s.split = sp
	down := s.shutdown
	s.mu.Unlock()
	defer close(s.served)
	if down {
		l.Close()
		return nil
	}

	errs := make(chan error, 2)
	go func() { errs <- ignore(s.grpc.Serve(sp.grpc), grpc.ErrServerStopped) }()
	go func() { errs <- ignore(s.http.Serve(sp.http), http.ErrServerClosed) }()
	err := sp.run()
	// The queues are closed now, so both servers return.
	for range 2 {
		if e := <-errs; e != nil && !errors.Is(e, net.ErrClosed) && err == nil {
			err = e
		}
	}
	if err != nil {
		return fmt.Errorf("transport: serve %s: %w", l.Addr(), err)
	}
	return nil
}

func ignore(err, ok error) error {
	if errors.Is(err, ok) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, ends every stream (WebSocket close 1001, SSE end of
// stream, gRPC and gRPC-Web UNAVAILABLE) and waits for them, then stops the gRPC server
// (GOAWAY) and the HTTP server, all until ctx is done; then it closes whatever is left and
// returns an error wrapping ctx's. Health turns NOT_SERVING first. Streams end before the
// servers stop so that every client gets its transport's "going away", not a reset.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	sp := s.split
	s.mu.Unlock()
	if sp != nil {
		sp.close()
	}
	s.health.Shutdown()
	s.cancelStop()

	streamsDone := make(chan struct{})
	go func() { s.streams.Wait(); close(streamsDone) }()
	forced := false
	select {
	case <-streamsDone:
	case <-ctx.Done():
		forced = true
		s.closeHijacked()
	}
	grpcDone := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(grpcDone) }()
	if err := s.http.Shutdown(ctx); err != nil {
		forced = true
		s.http.Close()
	}
	select {
	case <-grpcDone:
	case <-ctx.Done():
		forced = true
		s.grpc.Stop()
		<-grpcDone
	}
	<-streamsDone    // every connection is closed by now: the handlers return
	s.flushWG.Wait() // they end with s.stop
	if sp != nil {
		<-s.served
	}
	if forced {
		return fmt.Errorf("transport: shutdown forced: %w", ctx.Err())
	}
	return nil
}

// closeHijacked drops every open WebSocket and SSE connection at once.
func (s *Server) closeHijacked() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, closeNow := range s.hijacked {
		closeNow()
	}
}

// trackConn records a hijacked connection for Shutdown; false when shutting down.
func (s *Server) trackConn(key any, closeNow func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return false
	}
	s.hijacked[key] = closeNow
	return true
}

func (s *Server) untrackConn(key any) {
	s.mu.Lock()
	delete(s.hijacked, key)
	s.mu.Unlock()
}

// ServeHTTP routes an HTTP request: native gRPC on an h2c connection that began with another
// request, gRPC-Web (including its CORS preflight and websocket transport), then the WebSocket
// and SSE paths.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case s.web.IsGrpcWebSocketRequest(r):
		r.Header.Set(transportHeader, nameGRPCWeb)
		// Counted as a whole: grpc.Server writes the status after the handler returns, and
		// GracefulStop closes ServeHTTP transports at once, so Shutdown must wait for this first.
		if s.enter() {
			defer s.streams.Done()
		}
		r, release := s.webFirstRequest(w, r, true, stalledGRPCWebReqst)
		defer release()
		s.web.ServeHTTP(w, r)
	case r.ProtoMajor == 2 && r.Method == http.MethodPost && isGRPCContentType(r.Header.Get("Content-Type")):
		// Native gRPC on an HTTP/2 connection whose first request was not (see h2route).
		if s.enter() {
			defer s.streams.Done()
		}
		r, release := s.webFirstRequest(w, r, true, stalledGRPCRequest)
		defer release()
		s.grpc.ServeHTTP(w, r)
	case s.web.IsGrpcWebRequest(r):
		if !s.requestOriginAllowed(r) {
			writeJSONError(w, http.StatusForbidden, "permission_denied", "origin not allowed: "+truncate(r.Header.Get("Origin"), 64))
			return
		}
		r.Header.Set(transportHeader, nameGRPCWeb)
		if s.enter() {
			defer s.streams.Done()
		}
		direct := s.webDirect(r)
		r, release := s.webFirstRequest(w, r, false, stalledGRPCWebReqst)
		defer release()
		wr := webRequestFrom(r.Context())
		dw := &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: s.o.WriteTimeout, cut: &wr.cutting}
		if direct {
			s.serveWebDirect(w, r, dw) // binary Watch on plain HTTP/1.1: grpcweb.go
			return
		}
		wr.batchFlush.Store(true)
		dw.skip = &wr.skipFlushes
		s.web.ServeHTTP(dw, r)
	case s.web.IsAcceptableGrpcCorsRequest(r):
		s.web.ServeHTTP(w, r)
	case r.URL.Path == PathWebSocket:
		s.serveWebSocket(w, r)
	case r.URL.Path == PathSSE:
		s.serveSSE(w, r)
	case s.o.Fallback != nil:
		s.o.Fallback.ServeHTTP(w, r)
	default:
		writeJSONError(w, http.StatusNotFound, "not_found", "no such path: "+truncate(r.URL.Path, 64))
	}
}

// deadlineWriter sets a write deadline before every write and flush of a gRPC-Web response, so
// a client that stops reading is cut instead of blocking its stream forever.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	cut     *atomic.Bool // the request's body was cut: the connection closes after the answer
	// skip counts flushes to skip: grpc-go's handler transport flushes after every message, and
	// a batch's messages are flushed once, after its last (the flushes of a batch come in order
	// on the request's goroutine, so the last flush of the last batch is never skipped).
	skip *atomic.Int32
}

func (d *deadlineWriter) WriteHeader(code int) {
	if d.cut.Load() {
		d.Header().Set("Connection", "close")
	}
	d.ResponseWriter.WriteHeader(code)
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.ResponseWriter.Write(p)
}

func (d *deadlineWriter) Flush() {
	if d.skip != nil && d.skip.Load() > 0 && d.skip.Add(-1) >= 0 {
		return
	}
	d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
	d.rc.Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// originAllowed reports whether a browser origin ("scheme://host[:port]") may use the server
// cross-origin.
func (s *Server) originAllowed(origin string) bool {
	for _, p := range s.o.AllowedOrigins {
		if p == "*" {
			return true
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(origin)); ok {
			return true
		}
	}
	return false
}

// requestOriginAllowed allows requests without an Origin header (native clients), same-origin
// requests and the configured origins.
func (s *Server) requestOriginAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if u, err := url.Parse(origin); err == nil && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return s.originAllowed(origin)
}

// enter counts a stream for Shutdown (the caller calls s.streams.Done when it is over); false
// once Shutdown has begun.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return false
	}
	s.streams.Add(1)
	return true
}
