package transport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/meshcast/meshcast/edge/session"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/grpc/codes"
)

// Transport names: the label of the connection and rejection metrics.
const (
	nameGRPC    = "grpc"
	nameGRPCWeb = "grpc_web"
	nameWS      = "ws"
	nameSSE     = "sse"
)

// transportHeader marks gRPC-Web requests for the handlers (ServeHTTP sets it, replacing
// whatever the client sent), so the metrics tell gRPC-Web from native gRPC.
const transportHeader = "x-meshcast-transport"

// Grant is what a verified token allows a rider.
type Grant struct {
	// Subject identifies the rider in logs (the token's sub).
	Subject string
	// MaxRadiusM, when not 0, lowers the largest radius_m this rider may watch.
	MaxRadiusM uint32
}

// Authenticator checks a rider's bearer token (without "Bearer "; "" when the client sent
// none) and says what it allows. Its error message is sent to the client.
type Authenticator func(token string) (Grant, error)

// client is what admission knows of a new stream.
type client struct {
	transport string
	remote    string              // the connection's remote address
	header    func(string) string // a request header (HTTP) or metadata value (gRPC)
	token     string
	requestID string
}

// authError refuses a stream whose token is missing or invalid: gRPC UNAUTHENTICATED, HTTP 401.
type authError struct{ err error }

func (e *authError) Error() string { return "unauthenticated: " + e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

// limitError refuses a stream over a limit: gRPC code, HTTP 503 with Retry-After.
type limitError struct {
	reason string // the rejected metric's label
	code   codes.Code
	msg    string
}

func (e *limitError) Error() string { return e.msg }

var (
	errDraining = &limitError{"draining", codes.Unavailable, "server draining: reconnect to another instance"}
	errRate     = &limitError{"rate", codes.Unavailable, "too many new connections: try again later"}
	errMaxConns = &limitError{"max_connections", codes.Unavailable, "server full: try again later"}
	errMaxPerIP = &limitError{"max_per_ip", codes.ResourceExhausted, "too many connections from this address"}

	// Why a stream is told to go away (WebSocket 1001, end of SSE, gRPC UNAVAILABLE).
	errMaxAge   = errors.New("max connection age reached: reconnect")
	errDrainEnd = errors.New("server draining: reconnect to another instance")
)

// bucket is a token bucket: rate tokens per second, at most burst.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.tokens = b.burst
	} else {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// stream is one admitted rider stream. ctx ends when the stream must go away (max age, its
// drain offset, shutdown); context.Cause says which.
type stream struct {
	s         *Server
	sess      *session.Session
	ctx       context.Context
	cancel    context.CancelCauseFunc
	age       *time.Timer
	drain     *time.Timer // its drain moment (guarded by s.mu)
	transport string
	ip        netip.Addr
	rider     string
	requestID string
	grant     Grant
	once      sync.Once
}

// end releases the stream: the counts drop, the metric of why it ended (err: what ended the
// session's Next or the write) is counted, then the session closes. The session closes last:
// leaving the hub may wait on the bus (an unsubscribe while Redis is unreachable), which must
// not hold up Shutdown (it closes the hub and the bus, which ends that wait). A stream whose
// session never opened (refused or cut before its request) is released without counting an end.
func (st *stream) end(err error) {
	st.once.Do(func() {
		if st.age != nil {
			st.age.Stop()
		}
		st.cancel(context.Canceled)
		s := st.s
		s.mu.Lock()
		if st.drain != nil {
			st.drain.Stop() // a stream gone before its drain moment holds no timer
		}
		sess := st.sess
		delete(s.live, st)
		if st.ip.IsValid() {
			if s.perIP[st.ip]--; s.perIP[st.ip] <= 0 {
				delete(s.perIP, st.ip)
			}
		}
		s.mu.Unlock()
		if sess != nil {
			defer sess.Close()
		}
		s.m.connections.WithLabelValues(st.transport).Dec()
		if sess != nil {
			reason := endReason(err)
			s.m.ended.WithLabelValues(reason).Inc()
			s.o.Logger.Debug("rider stream ended", "request_id", st.requestID, "rider", st.rider,
				"transport", st.transport, "reason", reason)
		}
		s.streams.Done()
	})
}

// endReason labels how a stream ended.
func endReason(err error) string {
	switch {
	case err == nil, errors.Is(err, errReadFailed):
		return "client"
	case errors.Is(err, errMaxAge):
		return "max_age"
	case errors.Is(err, errDrainEnd):
		return "drain"
	case errors.Is(err, errStopping):
		return "shutdown"
	}
	switch classify(err) {
	case kindInvalid:
		return "invalid"
	case kindTooSlow:
		return "too_slow"
	case kindGone:
		return "client"
	}
	if errors.Is(err, errWriteFailed) {
		return "write_failed"
	}
	return "error"
}

// clientIP is the address limits count: the connection's peer, or, when the peer is a trusted
// proxy and a proxy header is configured, the right-most address in that header that is not a
// trusted proxy.
func (s *Server) clientIP(c client) netip.Addr {
	host, _, err := net.SplitHostPort(c.remote)
	if err != nil {
		host = c.remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	ip = ip.Unmap()
	if s.o.TrustedProxyHeader == "" || c.header == nil || !s.trusted(ip) {
		return ip
	}
	hops := strings.Split(c.header(s.o.TrustedProxyHeader), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return ip // a malformed header: count the proxy itself
		}
		hop = hop.Unmap()
		if !s.trusted(hop) {
			return hop
		}
		ip = hop
	}
	return ip
}

func (s *Server) trusted(ip netip.Addr) bool {
	for _, p := range s.o.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// newSession admits a rider's stream whose request is already known (WebSocket, SSE: the query)
// and opens its session (firstSeq > 1 continues an SSE stream's numbering). The caller must call
// end when the stream is over.
func (s *Server) newSession(req *meshcastv1.WatchRequest, firstSeq uint64, c client) (*stream, error) {
	st, err := s.admit(c)
	if err != nil {
		return nil, err
	}
	if err := st.open(req, firstSeq); err != nil {
		st.end(nil)
		return nil, err
	}
	return st, nil
}

// admit counts a new stream against the limits from its headers, before anything waits on its
// request: refused while draining or stopping, over the connection rate, without a valid token
// when auth is on, over the process or per-address limit. From here on the stream counts in
// Streams, the limits and meshcast_edge_connections until end. A gRPC stream has no session
// yet: open it once its request arrives (within the request timeout).
func (s *Server) admit(c client) (*stream, error) {
	st, err := s.admitStream(c)
	if err != nil {
		var le *limitError
		var ae *authError
		switch {
		case errors.As(err, &le):
			s.m.rejected.WithLabelValues(le.reason).Inc()
		case errors.As(err, &ae):
			s.m.rejected.WithLabelValues("unauthenticated").Inc()
		}
	}
	return st, err
}

func (s *Server) admitStream(c client) (*stream, error) {
	s.mu.Lock()
	stopping := s.shutdown || s.draining
	s.mu.Unlock()
	if stopping {
		return nil, errDraining
	}
	if s.rate != nil && !s.rate.take(time.Now()) {
		return nil, errRate
	}
	var grant Grant
	if s.o.Authenticate != nil {
		g, err := s.o.Authenticate(c.token)
		if err != nil {
			return nil, &authError{err}
		}
		grant = g
	}
	ip := s.clientIP(c)

	st := &stream{s: s, transport: c.transport, ip: ip, rider: grant.Subject, requestID: c.requestID, grant: grant}
	st.ctx, st.cancel = context.WithCancelCause(s.stop) // before Drain can see it in live
	s.mu.Lock()
	switch {
	case s.shutdown || s.draining:
		s.mu.Unlock()
		st.cancel(nil)
		return nil, errDraining
	case s.o.MaxConns > 0 && len(s.live) >= s.o.MaxConns:
		s.mu.Unlock()
		st.cancel(nil)
		return nil, errMaxConns
	case s.o.MaxConnsPerIP > 0 && ip.IsValid() && s.perIP[ip] >= s.o.MaxConnsPerIP:
		s.mu.Unlock()
		st.cancel(nil)
		return nil, errMaxPerIP
	}
	s.live[st] = struct{}{}
	if ip.IsValid() {
		s.perIP[ip]++
	}
	s.streams.Add(1)
	s.mu.Unlock()
	s.m.connections.WithLabelValues(c.transport).Inc()
	return st, nil
}

// open opens the admitted stream's session for its request (firstSeq > 1 continues an SSE
// stream's numbering); the token's radius limit applies. On error the caller ends the stream.
func (st *stream) open(req *meshcastv1.WatchRequest, firstSeq uint64) error {
	s := st.s
	o := s.o.Session
	if g := st.grant; g.MaxRadiusM > 0 && g.MaxRadiusM < o.MaxRadiusM {
		o.MaxRadiusM = g.MaxRadiusM
		o.DefaultRadiusM = min(o.DefaultRadiusM, o.MaxRadiusM)
	}
	if firstSeq > 1 {
		o.FirstSeq = firstSeq
	}
	sess, err := session.New(s.hub, req, o)
	if err != nil {
		return err
	}
	s.mu.Lock()
	st.sess = sess // read by the queue collector under mu
	s.mu.Unlock()
	if s.o.MaxConnAge > 0 {
		st.age = time.AfterFunc(jitter(s.o.MaxConnAge), func() { st.cancel(errMaxAge) })
	}
	return nil
}

// jitter spreads an age over [d, d*1.1) so that riders connected together do not all
// reconnect together.
func jitter(d time.Duration) time.Duration {
	return d + rand.N(d/10+1)
}

// Drain starts a drain: new streams are refused (UNAVAILABLE, HTTP 503), health turns
// NOT_SERVING, and every open stream is told to go away at its own random moment in
// [0, window), so that the riders reconnect elsewhere spread over the window instead of all at
// once. Shutdown ends whatever is left. Drain returns at once; calling it again does nothing.
func (s *Server) Drain(window time.Duration) {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return
	}
	s.draining = true
	live := make([]*stream, 0, len(s.live))
	for st := range s.live {
		live = append(live, st)
	}
	s.mu.Unlock()
	s.health.Shutdown()
	for _, st := range live {
		if window <= 0 {
			st.cancel(errDrainEnd)
			continue
		}
		t := time.AfterFunc(rand.N(window), func() { st.cancel(errDrainEnd) })
		s.mu.Lock()
		if _, ok := s.live[st]; ok {
			st.drain = t
		} else {
			t.Stop() // it ended meanwhile
		}
		s.mu.Unlock()
	}
}

// Streams returns how many rider streams are open.
func (s *Server) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

// endCause turns the error that ended a session's Next into the cause to report. Streams wait
// in Next on their own context and their session is closed when the client goes away, so a
// cancelled context or a closed session means: the stream was told to go away (max age,
// drain, shutdown: the context's cause), or the client left.
func (st *stream) endCause(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, session.ErrClosed) {
		if st.ctx.Err() != nil {
			switch cause := context.Cause(st.ctx); {
			case errors.Is(cause, errMaxAge), errors.Is(cause, errDrainEnd):
				return cause
			case st.s.stop.Err() != nil:
				return errStopping
			}
		}
		return context.Canceled
	}
	return err
}

// String describes a grant for logs.
func (g Grant) String() string { return fmt.Sprintf("sub=%q max_radius_m=%d", g.Subject, g.MaxRadiusM) }

// WaitIdle waits until no rider stream is open, or ctx ends (its error then).
func (s *Server) WaitIdle(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for s.Streams() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
