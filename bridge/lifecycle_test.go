package bridge_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/meshcast/meshcast/bridge"
	"github.com/meshcast/meshcast/core/mosquittotest"
)

// TestReconnectAndResubscribe kills the broker (losing every session: no persistence) and
// starts it again: the bridge reconnects by itself and subscribes again, so fixes published
// afterwards are applied.
func TestReconnectAndResubscribe(t *testing.T) {
	clk := &clock{}
	clk.ms.Store(time.Now().UnixMilli())
	broker := mosquittotest.Start(t)
	prefix := uniquePrefix()
	br, reg, _ := runBridge(t, bridge.Config{
		Brokers: []string{broker.URL()}, ClientID: "bridge-reconnect", Bus: openBus(t, prefix, clk.Now),
		Classifier: classifier(t), Now: clk.Now, Workers: 2, QueueSize: 4,
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 100 * time.Millisecond,
	})
	rec := &recorder{}
	subscribe(t, openBus(t, prefix, clk.Now), rec, meshStation)
	ts := clk.ms.Load() - 5000
	send := func() {
		t.Helper()
		ts++
		pub := newPublisher(t, broker.Addr, fmt.Sprintf("terminal-%d", ts))
		pub.publish(t, "taxi/acme/r1/state", "", fixJSON(tokyoStation[0], tokyoStation[1], ts, "vacant"))
		want := fmt.Sprintf("53394611 upsert acme/r1 @%d", ts)
		waitFor(t, want, func() bool {
			for _, e := range rec.all() {
				if e == want {
					return true
				}
			}
			return false
		})
	}
	send()
	for i := range 2 {
		broker.Kill()
		waitFor(t, "the bridge to notice", func() bool { return !br.Connected() && !br.Ready() })
		if err := broker.Restart(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the bridge to reconnect and subscribe", br.Ready)
		send()
		if got := metric(t, reg, "meshcast_bridge_connections_total"); got != float64(i+2) {
			t.Errorf("connections_total = %v, want %d", got, i+2)
		}
	}
	if got := metric(t, reg, "meshcast_bridge_connected"); got != 1 {
		t.Errorf("connected = %v, want 1", got)
	}
}

// TestStopHandsBackAndRestartCatchesUp stops a bridge (a clean shutdown) in the middle of a
// stream and starts another with the same client id: every fix is applied, none lost.
func TestStopHandsBackAndRestartCatchesUp(t *testing.T) {
	clk := &clock{}
	clk.ms.Store(time.Now().UnixMilli())
	broker := mosquittotest.Start(t)
	prefix := uniquePrefix()
	cfg := bridge.Config{
		Brokers: []string{broker.URL()}, ClientID: "bridge-stop", Bus: openBus(t, prefix, clk.Now),
		Classifier: classifier(t), Now: clk.Now, Workers: 4, QueueSize: 8,
	}
	_, reg1, stop1 := runBridge(t, cfg)
	rec := &recorder{}
	subscribe(t, openBus(t, prefix, clk.Now), rec, meshStation, meshShinjuk)
	const vehicles, fixes = 20, 50
	total := vehicles * fixes
	base := clk.ms.Load() - 9000
	pub := newPublisher(t, broker.Addr, "terminals-stop")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range fixes {
			for v := range vehicles {
				p := [2][2]float64{tokyoStation, shinjuku}[(i+v)%2]
				if err := pub.try(fmt.Sprintf("taxi/acme/s%d/state", v), "", fixJSON(p[0], p[1], base+int64(i*vehicles+v), "vacant")); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	upserts := func() int {
		seen := map[string]bool{}
		for _, ev := range rec.allEvents() {
			if u := ev.GetUpsert(); u != nil {
				seen[fmt.Sprint(u.GetId(), ev.GetObservedAtMs())] = true
			}
		}
		return len(seen)
	}
	waitFor(t, "a fifth of the fixes to be applied", func() bool { return upserts() >= total/5 })
	stop1()
	t.Logf("first bridge: received %v, applied %v, handed back %v",
		metric(t, reg1, "meshcast_bridge_messages_received_total"),
		metric(t, reg1, "meshcast_bridge_messages_applied_total", "result", "applied"),
		metric(t, reg1, "meshcast_bridge_messages_handed_back_total"))
	runBridge(t, cfg)
	<-done
	waitFor(t, "every fix to be applied", func() bool { return upserts() == total })
}
