package broker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/goleak"

	"github.com/meshcast/meshcast/bridge"
	"github.com/meshcast/meshcast/bridge/broker"
	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/geofence"
	"github.com/meshcast/meshcast/core/mesh"
	"github.com/meshcast/meshcast/core/telemetry"
	"github.com/meshcast/meshcast/core/testwait"
)

func TestRefusesRemoteAddress(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:1883"} {
		if b, err := broker.Start(broker.Options{Addr: addr}); err == nil {
			b.Close()
			t.Errorf("Start(%q) succeeded; want a refusal", addr)
		}
	}
	if _, err := broker.Start(broker.Options{Addr: "nonsense"}); err == nil {
		t.Error("Start(nonsense) succeeded")
	}
}

// TestBridgesOverEmbeddedBroker runs two bridges in one shared subscription on the embedded
// broker with an in-memory bus, as `meshcast demo` does: every fix is applied once.
func TestBridgesOverEmbeddedBroker(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	b, err := broker.Start(broker.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	zones, err := geofence.LoadFile("../../deploy/zones/tokyo.geojson")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	mem := bus.NewMemory(bus.Options{Now: func() time.Time { return now }})
	defer mem.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var bridges []*bridge.Bridge
	for i := range 2 {
		br, err := bridge.New(bridge.Config{Brokers: []string{b.URL()}, ClientID: fmt.Sprintf("demo-%d", i),
			Bus: mem, Classifier: &telemetry.Classifier{Zones: zones}, Now: func() time.Time { return now },
			Logger: quiet, Workers: 4, QueueSize: 8})
		if err != nil {
			t.Fatal(err)
		}
		bridges = append(bridges, br)
		wg.Go(func() { br.Run(ctx) })
	}
	defer func() { cancel(); wg.Wait() }()
	testwait.For(t, 30*time.Second, "both bridges ready", func() bool { return bridges[0].Ready() && bridges[1].Ready() })

	conn, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	pub := paho.NewClient(paho.ClientConfig{ClientID: "terminal", Conn: conn})
	if _, err := pub.Connect(ctx, &paho.Connect{ClientID: "terminal", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	defer pub.Disconnect(&paho.Disconnect{})
	const n = 200
	ts := now.UnixMilli() - 5000
	for i := range n {
		payload := fmt.Appendf(nil, `{"lat":35.681236,"lon":139.767125,"ts":%d,"status":"vacant"}`, ts+int64(i))
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("taxi/acme/e%d/state", i), QoS: 1, Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	m := mustThird(t)
	testwait.For(t, 30*time.Second, "every fix in the bus", func() bool {
		snap, err := mem.Snapshot(ctx, m)
		return err == nil && len(snap) == n
	})
}

func mustThird(t *testing.T) mesh.Code {
	t.Helper()
	m, err := mesh.Third(35.681236, 139.767125)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
