package edge

import (
	"context"
	"flag"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/meshcast/meshcast/core/config"
	"github.com/meshcast/meshcast/edge/transport"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestFlagsAndEnv(t *testing.T) {
	c := Defaults()
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	c.RegisterFlags(fs)
	env := map[string]string{
		"MESHCAST_MAX_RADIUS":      "5000",
		"MESHCAST_ALLOWED_ORIGINS": "https://a.example.com, https://*.b.example.com",
		"MESHCAST_HEARTBEAT":       "5s",
		"MESHCAST_LISTEN":          "0.0.0.0:1", // the flag below wins
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := config.Parse(fs, []string{"-listen", "127.0.0.1:9000", "-bus", "memory://"}, lookup); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9000" || c.Bus != "memory://" || c.MaxRadiusM != 5000 || c.Heartbeat != 5*time.Second ||
		strings.Join(c.AllowedOrigins, "|") != "https://a.example.com|https://*.b.example.com" {
		t.Fatalf("parsed %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// Every field but Logger, Ready, SharedBus and Pages (set by code, not by an operator) has a flag.
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if want := reflect.TypeFor[Config]().NumField() - 4; n != want {
		t.Errorf("%d flags, want %d (one per setting)", n, want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		flag string
		mod  func(*Config)
	}{
		{"listen", func(c *Config) { c.Listen = "" }},
		{"bus", func(c *Config) { c.Bus = "" }},
		{"ttl", func(c *Config) { c.TTL = time.Millisecond }},
		{"hub-shards", func(c *Config) { c.HubShards = 0 }},
		{"max-radius", func(c *Config) { c.MaxRadiusM = 0 }},
		{"default-radius", func(c *Config) { c.DefaultRadiusM = 4000 }},
		{"heartbeat", func(c *Config) { c.Heartbeat = time.Millisecond }},
		{"queue-limit", func(c *Config) { c.QueueLimit = 0 }},
		{"max-batch", func(c *Config) { c.MaxBatch = -1 }},
		{"write-delay", func(c *Config) { c.WriteDelay = 2 * time.Second }},
		{"write-delay", func(c *Config) { c.WriteDelay = -time.Millisecond }},
		{"write-timeout", func(c *Config) { c.WriteTimeout = 0 }},
		{"shutdown-timeout", func(c *Config) { c.ShutdownTimeout = -time.Second }},
		{"max-message-bytes", func(c *Config) { c.MaxMessageBytes = 10 }},
		{"max-streams-per-conn", func(c *Config) { c.MaxStreamsPerConn = 0 }},
		{"max-header-bytes", func(c *Config) { c.MaxHeaderBytes = 100 }},
		{"auth-jwks-file", func(c *Config) { c.AuthKeyFile, c.AuthJWKSFile = "k.pem", "jwks.json" }},
		{"auth-leeway", func(c *Config) { c.AuthLeeway = -time.Second }},
		{"max-conns", func(c *Config) { c.MaxConns = -1 }},
		{"max-conns-per-ip", func(c *Config) { c.MaxConnsPerIP = -1 }},
		{"conn-rate", func(c *Config) { c.ConnRate = -1 }},
		{"conn-burst", func(c *Config) { c.ConnBurst = -1 }},
		{"trusted-proxies", func(c *Config) { c.TrustedProxyHeader = "X-Forwarded-For" }},
		{"max-conn-age", func(c *Config) { c.MaxConnAge = time.Millisecond }},
		{"max-conn-age-grace", func(c *Config) { c.MaxConnAgeGrace = -time.Second }},
		// the old base value: 30s against 15m would cut a proxy's shared connection's streams together
		{"max-conn-age-grace", func(c *Config) { c.MaxConnAge, c.MaxConnAgeGrace = 15*time.Minute, 30*time.Second }},
		{"drain-window", func(c *Config) { c.DrainWindow = -time.Second }},
	}
	for _, tt := range tests {
		c := Defaults()
		tt.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "-"+tt.flag+":") {
			t.Errorf("%s: Validate() = %v, want an error naming -%s", tt.flag, err, tt.flag)
		}
	}
	if err := Defaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

// TestRunServesAndStops runs an edge on the in-memory bus: the rider port answers gRPC health
// and a WebSocket rider gets its snapshot, the admin port serves health, readiness and metrics;
// cancelling the context stops it cleanly (the rider gets 1001) without leaking goroutines.
func TestRunServesAndStops(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c := Defaults()
	c.Listen, c.Admin, c.Bus = "127.0.0.1:0", "127.0.0.1:0", "memory://"
	c.DrainWindow = 200 * time.Millisecond
	type addrs struct{ listen, admin net.Addr }
	readyc := make(chan addrs, 1)
	c.Ready = func(l, a net.Addr) { readyc <- addrs{l, a} }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- Run(ctx, c) }()
	var a addrs
	select {
	case a = <-readyc:
	case err := <-runErr:
		t.Fatalf("Run: %v", err)
	}

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	get := func(path string) (int, string) {
		resp, err := client.Get("http://" + a.admin.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz: %d", code)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics: %d, %d bytes", code, len(body))
	}

	cc, err := grpc.NewClient(a.listen.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
	defer hcancel()
	hr, err := healthpb.NewHealthClient(cc).Check(hctx, &healthpb.HealthCheckRequest{Service: "meshcast.v1.RiderService"})
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hr, err)
	}

	ws, _, err := websocket.Dial(hctx, "ws://"+a.listen.String()+transport.PathWebSocket+"?lat=35.68&lon=139.76", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if _, msg, err := ws.Read(hctx); err != nil || !strings.Contains(string(msg), `"snapshot":{}`) {
		t.Fatalf("first message %s, %v", msg, err)
	}

	cancel()
	_, _, err = ws.Read(context.Background())
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("rider ended with %v, want 1001", err)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	cc.Close()
}

func TestRunRefusesBadConfig(t *testing.T) {
	c := Defaults()
	c.MaxBatch = 0
	if err := Run(context.Background(), c); err == nil || !strings.Contains(err.Error(), "-max-batch") {
		t.Fatalf("Run = %v", err)
	}
	c = Defaults()
	c.Bus = "carrier-pigeon://"
	if err := Run(context.Background(), c); err == nil || !strings.Contains(err.Error(), "bus") {
		t.Fatalf("Run = %v", err)
	}
	c = Defaults()
	c.Bus, c.Admin, c.Listen = "memory://", "", "256.0.0.1:1"
	if err := Run(context.Background(), c); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("Run = %v", err)
	}
}

func TestTrustedProxiesFlag(t *testing.T) {
	c := Defaults()
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"-trusted-proxies", "10.0.0.0/8, 192.0.2.7,fd00::/8"}); err != nil {
		t.Fatal(err)
	}
	if got := (*prefixList)(&c.TrustedProxies).String(); got != "10.0.0.0/8,192.0.2.7/32,fd00::/8" {
		t.Errorf("parsed %s", got)
	}
	if err := fs.Parse([]string{"-trusted-proxies", "nope"}); err == nil {
		t.Error("accepted a bad CIDR")
	}
}
