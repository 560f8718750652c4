package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestWriteFloor: a short run over a few connections makes its writes, one step per rate, and
// reports the writing thread's CPU per write from the CPU and the writes it counted.
func TestWriteFloor(t *testing.T) {
	steps, err := WriteFloor(context.Background(), WriteFloorConfig{Conns: 20, Rates: []int{2000, 4000},
		Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond, WriterCPU: -1, LoadCPU: -1})
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 2 || steps[0].Rate != 2000 || steps[1].Rate != 4000 {
		t.Fatalf("steps %+v, want one per rate", steps)
	}
	for _, st := range steps {
		if st.Writes <= 0 || st.CPUSeconds < 0 {
			t.Fatalf("step %+v: want writes and a CPU time", st)
		}
		if want := st.CPUSeconds / float64(st.Writes) * 1e6; st.CPUPerWrite != want {
			t.Fatalf("step %+v: µs per write %v, want %v", st, st.CPUPerWrite, want)
		}
		t.Logf("%d writes/s asked: %d writes, %.2f µs per write", st.Rate, st.Writes, st.CPUPerWrite)
	}
}

// TestWriteFloorRefusesBadConfig: a rate, size or connection count out of range is an error that
// says which.
func TestWriteFloorRefusesBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  WriteFloorConfig
		want string
	}{
		{WriteFloorConfig{Rates: []int{0}, Conns: 1}, "rate 0"},
		{WriteFloorConfig{Conns: -1}, "conns ≥ 1 (-1)"},
		{WriteFloorConfig{Conns: 1, Size: -5}, "size ≥ 1 (-5)"},
	} {
		_, err := WriteFloor(context.Background(), c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one naming %q", c.cfg, err, c.want)
		}
	}
}
