package bench

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"
)

// TestFanoutHarness runs the fan-out harness small (60 riders over the five transports, one
// step) against a real redis-server and a real `meshcast edge`: every rider connects and stays,
// the riders receive about what the publisher's geometry predicts (each fix goes to the riders
// within the radius, a removal to those it left), and the edge's CPU, writes and RSS are read.
func TestFanoutHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and an edge")
	}
	var log strings.Builder
	res, err := Fanout(context.Background(), FanoutConfig{
		EdgeBin: meshcastBinary(t), EdgeCPU: -1, LoadCPU: -1, Riders: 60, Rates: []int{600},
		Warmup: time.Second, Duration: 2 * time.Second, Seed: 1, Log: &log,
	})
	t.Log(log.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range Transports {
		if res.RidersBy[tr] != 12 {
			t.Errorf("%s riders: %d, want 12", tr, res.RidersBy[tr])
		}
	}
	if len(res.Steps) != 1 {
		t.Fatalf("steps: %d, want 1", len(res.Steps))
	}
	st := res.Steps[0]
	if st.Connected != 60 || st.Cuts != 0 || st.Drops != 0 || st.SeqErrors != 0 {
		t.Errorf("riders: %d connected, %d cut, %d dropped, %d seq errors; want 60 and no loss", st.Connected, st.Cuts, st.Drops, st.SeqErrors)
	}
	if st.Predicted <= 0 || st.Delivered <= 0 || math.Abs(st.Delivered-st.Predicted) > 0.25*st.Predicted {
		t.Errorf("delivered %.0f/s, predicted %.0f/s: want both positive and within 25%%", st.Delivered, st.Predicted)
	}
	if st.Latency.Samples == 0 || st.EdgeCores <= 0 || st.EventsPerWrite <= 0 || st.RSSMB <= 0 || res.PerRiderKB <= 0 {
		t.Errorf("step %+v, per rider %.2f KB: want latency samples, edge CPU, writes and RSS", st, res.PerRiderKB)
	}
	if st.EdgeWriteP99ms <= 0 || st.BenchSchedP99ms <= 0 {
		t.Errorf("the tail's sources: edge write p99 %v ms, harness scheduler p99 %v ms; want both read", st.EdgeWriteP99ms, st.BenchSchedP99ms)
	}
}
