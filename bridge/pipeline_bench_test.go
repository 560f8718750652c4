package bridge

import (
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/meshcast/meshcast/core/bus"
)

// nopAcker counts nothing: the cost of acknowledging is paho's (measured end to end).
type nopAcker struct{}

func (nopAcker) Ack(*paho.Publish) error { return nil }

// BenchmarkPipeline measures the bridge's own per-message work without MQTT and Redis:
// queueing by topic hash, decode, classify against the Tokyo zones, an in-memory bus Apply,
// metrics. One op is one message; the first 200,000 are new fixes (applied), later ones repeat
// them (stale), so run it with -benchtime 200000x.
func BenchmarkPipeline(b *testing.B) {
	mem := bus.NewMemory(bus.Options{TTL: time.Hour, Now: func() time.Time { return time.UnixMilli(baseMs) }})
	defer mem.Close()
	p, _ := testPipeline(b, mem, 8, 64)
	const vehicles = 10000
	msgs := make([]message, vehicles*20)
	for i := range msgs {
		v, k := i%vehicles, i/vehicles
		msgs[i] = msg(uint16(i), fmt.Sprintf("taxi/acme/v%d/state", v),
			fixJSON(35.60+float64(v%100)*0.002, 139.70+float64(v/100)*0.001, baseMs-60_000+int64(k), "vacant"), nopAcker{})
	}
	p.start()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		p.submit(msgs[i%len(msgs)])
	}
	p.close(time.Minute)
}
