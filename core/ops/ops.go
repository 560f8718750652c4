// Package ops is what every meshcast process shares for operations (API.md §4): the admin
// listener (/healthz, /readyz, /metrics, /debug/pprof/, kept off the public port) and the
// cross-cutting middleware of the public ports, for net/http (request id, panic recovery,
// access log, request metrics) and for gRPC (the same as stream and unary interceptors). It owns
// none of the process's logic: readiness is a function the process passes in.
package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Admin is a running admin listener.
type Admin struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// AdminHandler serves
//
//	GET /healthz   200 "ok": the process is alive
//	GET /readyz    200 "ready", or 503 with ready's error (not connected, draining, ...)
//	GET /metrics   g in the Prometheus text format
//	/debug/pprof/  the runtime profiles
//
// ready nil means always ready.
func AdminHandler(g prometheus.Gatherer, ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				w.Header().Set("Cache-Control", "no-store")
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		io.WriteString(w, "ready\n")
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// ServeAdmin listens on addr and serves AdminHandler until Close.
func ServeAdmin(addr string, g prometheus.Gatherer, ready func() error, logger *slog.Logger) (*Admin, error) {
	if logger == nil {
		logger = slog.Default()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	a := &Admin{ln: ln, done: make(chan struct{}),
		srv: &http.Server{Handler: Recover(logger, nil)(AdminHandler(g, ready)), ReadHeaderTimeout: 5 * time.Second}}
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin listener", "err", err.Error())
		}
	}()
	return a, nil
}

// Addr is the address the admin listener listens on (useful with port 0).
func (a *Admin) Addr() net.Addr { return a.ln.Addr() }

// Close stops the admin listener (open requests get 5 s).
func (a *Admin) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if a.srv.Shutdown(ctx) != nil {
		a.srv.Close()
	}
	<-a.done
}

// Cached returns a readiness check that runs check (bounded by timeout) at most once per every
// and otherwise answers its last result: /readyz may be polled often, the check (a Redis round
// trip) should not be.
func Cached(every, timeout time.Duration, check func(context.Context) error) func() error {
	var (
		mu   sync.Mutex
		at   time.Time
		last error
	)
	return func() error {
		mu.Lock()
		defer mu.Unlock()
		if !at.IsZero() && time.Since(at) < every {
			return last
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		last, at = check(ctx), time.Now()
		return last
	}
}
