package bridge_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// procMetric reads one series of a bridge process's /metrics with the Prometheus text parser
// (label "k=v" pairs select the series; none: the sum of all).
func procMetric(t testing.TB, admin, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, m := range mfs[name].GetMetric() {
		ok := true
		for _, kv := range labels {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName()+"="+lp.GetValue() == kv {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return total
}

// TestSIGTERMFinishesAndAcknowledges stops `meshcast bridge` with SIGTERM in the middle of a
// stream: the process exits 0, and what it had applied was acknowledged:
// the next bridge with the same client id gets no fix again that was already applied (no
// "stale" result) and every fix ends up applied exactly once.
func TestSIGTERMFinishesAndAcknowledges(t *testing.T) {
	rc := startRestartCase(t, "bridge-sigterm", 8)
	bin, broker, args, first, rec := rc.bin, rc.broker, rc.args, rc.first, rc.rec

	places := [2][2]float64{tokyoStation, shinjuku}

	const vehicles, fixes = 40, 50
	total := vehicles * fixes
	base := time.Now().UnixMilli() - 30*60*1000
	pub := newPublisher(t, broker.Addr, "terminals-sigterm")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range fixes {
			for v := range vehicles {
				p := places[(i+v)%2]
				if err := pub.try(fmt.Sprintf("taxi/acme/s%d/state", v), "", fixJSON(p[0], p[1], base+int64(i*vehicles+v), "vacant")); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
		}
	}()
	upserts := func() map[string]int {
		seen := map[string]int{}
		for _, ev := range rec.allEvents() {
			if u := ev.GetUpsert(); u != nil {
				seen[fmt.Sprintf("%s@%d", u.GetId(), ev.GetObservedAtMs())]++
			}
		}
		return seen
	}
	waitFor(t, "a fifth of the fixes to be applied", func() bool { return len(upserts()) >= total/5 })
	first.stop(t) // SIGTERM; fails unless the exit status is 0
	stoppedAt := len(upserts())

	second := startBridgeProc(t, bin, args...)
	<-done
	waitFor(t, "every fix to be applied", func() bool { return len(upserts()) >= total })
	if stale := procMetric(t, second.admin, "meshcast_bridge_messages_applied_total", "result=stale"); stale != 0 {
		t.Errorf("the second bridge got %v fixes that were already applied: the first did not acknowledge them", stale)
	}
	for k, n := range upserts() {
		if n != 1 {
			t.Errorf("fix %s published %d times", k, n)
		}
	}
	t.Logf("SIGTERM after %d of %d fixes applied; the second bridge received %v and applied the rest", stoppedAt, total,
		procMetric(t, second.admin, "meshcast_bridge_messages_received_total"))
}
