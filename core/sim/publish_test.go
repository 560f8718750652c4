package sim_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/meshcast/meshcast/core/mosquittotest"
	"github.com/meshcast/meshcast/core/sim"
	"github.com/meshcast/meshcast/core/telemetry"
	"github.com/meshcast/meshcast/core/testwait"
)

// TestDriveAndPublish runs a small fleet in real time through the Publisher to a
// real mosquitto and checks that a subscriber gets valid telemetry from every taxi.
func TestDriveAndPublish(t *testing.T) {
	b := mosquittotest.Start(t)

	var mu sync.Mutex
	seen := map[string]int{}
	conn, err := net.Dial("tcp", b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	sub := paho.NewClient(paho.ClientConfig{ClientID: "watcher", Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			var f telemetry.Fix
			if err := telemetry.Decode(pr.Packet.Topic, "", pr.Packet.Payload, &f); err != nil {
				t.Errorf("%s: %v", pr.Packet.Topic, err)
			}
			mu.Lock()
			seen[f.ID()]++
			mu.Unlock()
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := sub.Connect(ctx, &paho.Connect{ClientID: "watcher", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	defer sub.Disconnect(&paho.Disconnect{})
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "taxi/+/+/state", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	pub, err := sim.Dial(ctx, sim.PublisherConfig{Brokers: []string{b.URL()}, Conns: 2, InFlight: 4})
	if err != nil {
		t.Fatal(err)
	}
	const taxis = 20
	s, err := sim.New(sim.Config{Zones: zones(t), Taxis: taxis, Seed: 1, Interval: 100 * time.Millisecond}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sim.Drive(dctx, s, func(topic string, payload []byte) { pub.Publish(topic, "", payload) })
	}()
	allSeen := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) < taxis {
			return false
		}
		for _, n := range seen {
			if n < 3 {
				return false
			}
		}
		return true
	}
	testwait.For(t, 30*time.Second, "three reports of every taxi", allSeen)
	dcancel()
	<-done
	if err := pub.Close(ctx); err != nil {
		t.Fatal(err)
	}
	n, failed := pub.Stats()
	if n < 3*taxis || failed != 0 || n != s.Reports() {
		t.Fatalf("published %d, failed %d, simulated %d", n, failed, s.Reports())
	}
}
