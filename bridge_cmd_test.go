package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshcast/meshcast/bridge/broker"
	"github.com/meshcast/meshcast/core/testwait"
)

// syncBuffer is a strings.Builder safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestBridgeCommandServesAdminAndStops(t *testing.T) {
	b, err := broker.Start(broker.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runBridge(ctx, []string{"-broker", b.URL(), "-bus", "memory://", "-admin", "127.0.0.1:0",
			"-client-id", "cmd-test", "-log-level", "error"}, out)
	}()
	var admin string
	get := func(path string) (int, string) {
		resp, err := http.Get(admin + path)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	testwait.For(t, 30*time.Second, "the bridge's /readyz 200", func() bool {
		if a, ok := strings.CutPrefix(strings.TrimSpace(out.String()), "admin listening on "); ok && admin == "" {
			admin = a
		}
		if admin == "" {
			return false
		}
		code, _ := get("/readyz")
		return code == 200
	})
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "meshcast_bridge_connected 1") {
		t.Errorf("/metrics: %d, connected gauge missing", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("runBridge: %v", err)
	}
}

func TestBridgeCommandRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-max-payload", "0"},
		{"-ttl", "0s"},
		{"-log-level", "loud"},
		{"-zones", "/nonexistent.geojson"},
		{"-bus", "memory://", "-broker", "http://x", "-admin", ""},
	} {
		if err := runBridge(context.Background(), args, io.Discard); err == nil {
			t.Errorf("runBridge(%q) succeeded", args)
		}
	}
}
