package ops

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

var quiet = slog.New(slog.DiscardHandler)

func TestAdmin(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"})
	reg.MustRegister(c)
	var readyErr error
	a, err := ServeAdmin("127.0.0.1:0", reg, func() error { return readyErr }, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	base := "http://" + a.Addr().String()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		path, want string
		code       int
		notReady   error
	}{
		{"/healthz", "ok", 200, nil},
		{"/readyz", "ready", 200, nil},
		{"/readyz", "not ready: draining", 503, errors.New("draining")},
		{"/healthz", "ok", 200, errors.New("draining")},
		{"/metrics", "x_total 0", 200, nil},
		{"/debug/pprof/", "goroutine", 200, nil},
	} {
		readyErr = tc.notReady
		code, body := get(tc.path)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s (ready err %v) = %d %q, want %d containing %q", tc.path, tc.notReady, code, body, tc.code, tc.want)
		}
	}
}

func TestHTTPMiddleware(t *testing.T) {
	m := NewMetrics(nil)
	var seen string
	h := HTTP(quiet, m)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = RequestID(r.Context())
		if r.URL.Path == "/panic" {
			panic("boom")
		}
		w.WriteHeader(http.StatusTeapot)
	}))
	for _, tc := range []struct {
		name, path, id string
		code           int
		keepID         bool
	}{
		{"client id kept", "/", "abc-123", http.StatusTeapot, true},
		{"no id: one is made", "/", "", http.StatusTeapot, false},
		{"bad id replaced", "/", "has space", http.StatusTeapot, false},
		{"panic recovered", "/panic", "p1", http.StatusInternalServerError, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tc.path, nil)
			if tc.id != "" {
				r.Header.Set(RequestIDHeader, tc.id)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.code {
				t.Errorf("status %d, want %d", w.Code, tc.code)
			}
			got := w.Header().Get(RequestIDHeader)
			if got != seen || (tc.keepID && got != tc.id) || (!tc.keepID && (got == tc.id || len(got) != 16)) {
				t.Errorf("request id: response %q, handler %q, sent %q", got, seen, tc.id)
			}
		})
	}
	if n := value(m.panics); n != 1 {
		t.Errorf("panics %v, want 1", n)
	}
	if n := value(m.http.WithLabelValues("418")); n != 3 {
		t.Errorf("418 count %v, want 3", n)
	}
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f *fakeStream) Context() context.Context { return f.ctx }

func TestInterceptors(t *testing.T) {
	m := NewMetrics(nil)
	si := StreamInterceptor(quiet, m)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-request-id", "r-1"))
	info := &grpc.StreamServerInfo{FullMethod: "/s/M"}
	var seen string
	err := si(nil, &fakeStream{ctx: ctx}, info, func(_ any, ss grpc.ServerStream) error {
		seen = RequestID(ss.Context())
		return status.Error(codes.Unavailable, "x")
	})
	if status.Code(err) != codes.Unavailable || seen != "r-1" {
		t.Errorf("stream: %v, id %q", err, seen)
	}
	err = si(nil, &fakeStream{ctx: context.Background()}, info, func(any, grpc.ServerStream) error { panic("boom") })
	if status.Code(err) != codes.Internal {
		t.Errorf("stream panic: %v, want INTERNAL", err)
	}
	ui := UnaryInterceptor(quiet, m)
	_, err = ui(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/s/U"}, func(context.Context, any) (any, error) { panic("boom") })
	if status.Code(err) != codes.Internal {
		t.Errorf("unary panic: %v, want INTERNAL", err)
	}
	if n := value(m.panics); n != 2 {
		t.Errorf("panics %v, want 2", n)
	}
	if n := value(m.grpc.WithLabelValues("/s/M", "Unavailable")); n != 1 {
		t.Errorf("calls counted %v, want 1", n)
	}
}

func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	return d.GetCounter().GetValue()
}

func TestCached(t *testing.T) {
	calls := 0
	fail := errors.New("down")
	var answer error
	check := Cached(time.Hour, time.Second, func(ctx context.Context) error {
		calls++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("no timeout on the check")
		}
		return answer
	})
	if err := check(); err != nil || calls != 1 {
		t.Fatalf("first: %v after %d calls", err, calls)
	}
	answer = fail
	if err := check(); err != nil || calls != 1 {
		t.Fatalf("within the interval: %v after %d calls, want the cached nil", err, calls)
	}
	check = Cached(0, time.Second, func(context.Context) error { calls++; return answer })
	if err := check(); !errors.Is(err, fail) {
		t.Fatalf("uncached: %v", err)
	}
}
