package bridge_test

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/meshcast/meshcast/bridge"
	"github.com/meshcast/meshcast/core/mesh"
	"github.com/meshcast/meshcast/core/mosquittotest"
	"github.com/meshcast/meshcast/core/telemetry"
)

// TestTwoReplicasShareTheLoad runs two bridges in one shared subscription group: both get
// work, every message is delivered to one of them, and the bus ends in the state of each
// vehicle's newest fix (replicas may apply one vehicle's fixes out of order; the bus's time
// guards make that harmless).
func TestTwoReplicasShareTheLoad(t *testing.T) {
	const base = int64(1732260000000)
	clk := &clock{}
	clk.ms.Store(base)
	broker := mosquittotest.Start(t)
	prefix := uniquePrefix()
	var bridges []*bridge.Bridge
	var gatherers []func(name string, labels ...string) float64
	for i := range 2 {
		br, reg, _ := runBridge(t, bridge.Config{
			Brokers: []string{broker.URL()}, ClientID: fmt.Sprintf("replica-%d", i), Group: "g1",
			Bus: openBus(t, prefix, clk.Now), Classifier: classifier(t), Now: clk.Now, Workers: 8, QueueSize: 16,
		})
		bridges = append(bridges, br)
		gatherers = append(gatherers, func(name string, labels ...string) float64 { return metric(t, reg, name, labels...) })
	}
	places := [][2]float64{tokyoStation, shinjuku, tokyoTower, nearStation, marunouchi, yokohama}
	statuses := []string{"vacant", "vacant", "dispatched", "vacant", "occupied"}
	const vehicles, fixes, publishers = 40, 25, 4
	type fix struct {
		topic   string
		payload []byte
		f       telemetry.Fix
	}
	last := map[string]telemetry.Fix{}
	var all [publishers][]fix
	for v := range vehicles {
		for i := range fixes {
			p := places[(v+i*(v%5+1))%len(places)]
			st := statuses[(v*7+i)%len(statuses)]
			ts := base - 9000 + int64(i)*10
			f := telemetry.Fix{Fleet: "acme", Vehicle: fmt.Sprintf("v%d", v), Lat: p[0], Lon: p[1], TS: ts}
			if st == "vacant" {
				f.Status = 1
			}
			all[v%publishers] = append(all[v%publishers], fix{fmt.Sprintf("taxi/acme/v%d/state", v), fixJSON(p[0], p[1], ts, st), f})
			last[f.Vehicle] = f
		}
	}
	var wg sync.WaitGroup
	for i := range publishers {
		pub := newPublisher(t, broker.Addr, fmt.Sprintf("terminals-%d", i))
		wg.Go(func() {
			for _, m := range all[i] {
				if err := pub.try(m.topic, "", m.payload); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	total := vehicles * fixes
	sum := func(name string, labels ...string) float64 {
		return gatherers[0](name, labels...) + gatherers[1](name, labels...)
	}
	waitFor(t, "every message to be processed", func() bool {
		return sum("meshcast_bridge_processing_seconds") == float64(total)
	})
	for i := range bridges {
		if got := gatherers[i]("meshcast_bridge_messages_received_total"); got == 0 {
			t.Errorf("replica %d received nothing", i)
		} else {
			t.Logf("replica %d received %v of %d messages", i, got, total)
		}
	}
	if got := sum("meshcast_bridge_messages_received_total"); got != float64(total) {
		t.Errorf("received %v messages in all, want each of the %d once", got, total)
	}
	// The final state: each vehicle where its newest fix puts it.
	want := map[mesh.Code][]string{}
	cls := classifier(t)
	for _, f := range last {
		r, err := cls.Classify(&f, base)
		if err != nil {
			t.Fatal(err)
		}
		if r.Dispatchable {
			want[r.Mesh] = append(want[r.Mesh], fmt.Sprintf("%s@%d", f.ID(), f.TS))
		}
	}
	b := openBus(t, prefix, clk.Now)
	for _, p := range places {
		m, _ := mesh.Third(p[0], p[1])
		snap, err := b.Snapshot(t.Context(), m)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, v := range snap {
			got = append(got, fmt.Sprintf("%s@%d", v.GetId(), v.GetObservedAtMs()))
		}
		sort.Strings(got)
		w := slices.Sorted(slices.Values(want[m]))
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("mesh %s snapshot\n %v\nwant\n %v", m, got, w)
		}
	}
}
