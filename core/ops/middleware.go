package ops

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Middleware wraps an http.Handler.
type Middleware func(http.Handler) http.Handler

// Chain applies the middleware so that the first is the outermost.
func Chain(h http.Handler, mw ...Middleware) http.Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// RequestIDHeader carries the request id (HTTP header, gRPC metadata key in lower case).
const RequestIDHeader = "X-Request-Id"

type ctxKey struct{}

// RequestID returns the request id stored in ctx ("" when none).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// WithRequestID stores a request id in ctx.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// NewRequestID returns a random 16-hex-digit id.
func NewRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validID accepts a client's request id when it is short and printable ASCII (it goes into logs).
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < '!' || c > '~' {
			return false
		}
	}
	return true
}

// Metrics are the request counters of the middleware and interceptors:
//
//	meshcast_http_requests_total{code}          HTTP requests answered, by status code
//	meshcast_grpc_requests_total{method,code}   gRPC calls ended, by method and status code
//	meshcast_panics_total                       panics recovered in handlers
type Metrics struct {
	http   *prometheus.CounterVec
	grpc   *prometheus.CounterVec
	panics prometheus.Counter
}

// NewMetrics makes the counters and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		http: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshcast_http_requests_total",
			Help: "HTTP requests answered, by status code (101 and 200 for accepted streams)."}, []string{"code"}),
		grpc: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshcast_grpc_requests_total",
			Help: "gRPC calls ended, by method and status code."}, []string{"method", "code"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshcast_panics_total",
			Help: "Panics recovered in request handlers."}),
	}
	if reg != nil {
		reg.MustRegister(m.http, m.grpc, m.panics)
	}
	return m
}

// HTTP returns the middleware chain of a public HTTP port: panic recovery (500 when nothing
// was written), a request id (the client's X-Request-Id when sane, else a new one, echoed in
// the response and stored in the context), an access log line at debug level and the request
// counter. m may be nil.
func HTTP(logger *slog.Logger, m *Metrics) Middleware {
	return func(h http.Handler) http.Handler {
		return Chain(h, Recover(logger, m), requestID, accessLog(logger, m))
	}
}

func requestID(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !validID(id) {
			id = NewRequestID()
			r.Header.Set(RequestIDHeader, id) // handlers that forward headers (gRPC-Web) see it
		}
		w.Header().Set(RequestIDHeader, id)
		h.ServeHTTP(w, r.WithContext(WithRequestID(r.Context(), id)))
	})
}

func accessLog(logger *slog.Logger, m *Metrics) Middleware {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rw := &recorder{ResponseWriter: w}
			h.ServeHTTP(rw, r)
			code := rw.status()
			if m != nil {
				m.http.WithLabelValues(strconv.Itoa(code)).Inc()
			}
			logger.LogAttrs(r.Context(), slog.LevelDebug, "http request",
				slog.String("request_id", RequestID(r.Context())), slog.String("method", r.Method),
				slog.String("path", r.URL.Path), slog.Int("status", code),
				slog.String("remote", r.RemoteAddr), slog.Duration("duration", time.Since(start)))
		})
	}
}

// Recover turns a panic in h into a logged error, a counted panic and, when nothing was written
// yet, a 500. http.ErrAbortHandler is passed on (net/http's way to drop a connection).
func Recover(logger *slog.Logger, m *Metrics) Middleware {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rw := &recorder{ResponseWriter: w}
			defer func() {
				p := recover()
				if p == nil {
					return
				}
				if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(p)
				}
				if m != nil {
					m.panics.Inc()
				}
				logger.Error("panic in HTTP handler", "request_id", RequestID(r.Context()), "path", r.URL.Path,
					"panic", p, "stack", string(debug.Stack()))
				if rw.code == 0 && !rw.hijacked {
					http.Error(w, `{"error":{"code":"internal","message":"internal error"}}`, http.StatusInternalServerError)
				}
			}()
			h.ServeHTTP(rw, r)
		})
	}
}

// recorder notes the status of a response. It keeps the writer's Flush and Hijack (gRPC needs
// http.Flusher; WebSocket upgrades hijack) and unwraps for http.ResponseController.
type recorder struct {
	http.ResponseWriter
	code     int
	hijacked bool
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.hijacked = true
		if r.code == 0 {
			r.code = http.StatusSwitchingProtocols
		}
	}
	return c, brw, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) status() int {
	if r.code == 0 {
		if r.hijacked {
			return http.StatusSwitchingProtocols
		}
		return http.StatusOK
	}
	return r.code
}
