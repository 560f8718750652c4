package bridge

import (
	"strings"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/telemetry"
)

func TestConfigDefaultsAndValidation(t *testing.T) {
	mem := bus.NewMemory(bus.Options{})
	defer mem.Close()
	c, urls, err := Config{Bus: mem}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if len(urls) != 1 || urls[0].String() != "mqtt://127.0.0.1:1883" || c.Group != DefaultGroup ||
		c.Workers != DefaultWorkers() || c.QueueSize != DefaultQueueSize || c.ReceiveMaximum != DefaultReceiveMaximum ||
		c.SessionExpiry != DefaultSessionExpiry || !strings.HasPrefix(c.ClientID, "meshcast-bridge-") {
		t.Fatalf("defaults: %+v %v", c, urls)
	}
	if got := c.subscription(); got != "$share/meshcast/taxi/+/+/state" {
		t.Errorf("subscription %q", got)
	}
	c.NoShare = true
	if got := c.subscription(); got != "taxi/+/+/state" {
		t.Errorf("subscription without share %q", got)
	}
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no bus", Config{}, "no bus"},
		{"bad scheme", Config{Bus: mem, Brokers: []string{"http://x:1"}}, "scheme"},
		{"websocket", Config{Bus: mem, Brokers: []string{"ws://x:1/mqtt"}}, "scheme"},
		{"no host", Config{Bus: mem, Brokers: []string{"127.0.0.1:1883"}}, "scheme://host:port"},
		{"group", Config{Bus: mem, Group: "a/b"}, "share group"},
		{"workers", Config{Bus: mem, Workers: -1}, "workers"},
		{"queue", Config{Bus: mem, QueueSize: -3}, "queue size"},
		{"bus batch delay", Config{Bus: mem, BusBatchDelay: 3 * time.Millisecond}, "bus batch delay"},
		{"negative bus batch delay", Config{Bus: mem, BusBatchDelay: -time.Millisecond}, "bus batch delay"},
		{"read delay", Config{Bus: mem, ReadDelay: 6 * time.Millisecond}, "read delay"},
		{"negative read delay", Config{Bus: mem, ReadDelay: -time.Millisecond}, "read delay"},
		{"receive maximum", Config{Bus: mem, ReceiveMaximum: 70000}, "receive maximum"},
		{"session expiry", Config{Bus: mem, SessionExpiry: time.Millisecond}, "session expiry"},
		{"retry", Config{Bus: mem, RetryMin: time.Second, RetryMax: time.Millisecond}, "retry max"},
		{"ttl", Config{Bus: mem, Classifier: &telemetry.Classifier{TTL: -time.Second}}, "ttl"},
		{"max payload", Config{Bus: mem, Decoder: telemetry.Decoder{MaxPayloadBytes: 2 << 20}}, "max payload"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := tt.cfg.withDefaults()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// TestNewNeedsBus: a bus address is enough for Run (which opens it), not for New.
func TestNewNeedsBus(t *testing.T) {
	c := Config{BusAddr: "memory://"}
	if _, _, err := c.withDefaults(); err != nil {
		t.Fatalf("a config with BusAddr only: %v", err)
	}
	if _, err := New(c); err == nil || !strings.Contains(err.Error(), "New needs Config.Bus") {
		t.Fatalf("New without Bus: %v", err)
	}
}

func TestRateLog(t *testing.T) {
	now := time.Unix(0, 0)
	r := newRateLog(nil, time.Second, func() time.Time { return now })
	if ok, _ := r.allow("a"); !ok {
		t.Fatal("first line refused")
	}
	for range 5 {
		if ok, _ := r.allow("a"); ok {
			t.Fatal("line allowed within the interval")
		}
	}
	if ok, _ := r.allow("b"); !ok {
		t.Fatal("another key refused")
	}
	now = now.Add(time.Second)
	if ok, n := r.allow("a"); !ok || n != 5 {
		t.Fatalf("after the interval: ok %v, suppressed %d, want true, 5", ok, n)
	}
}
