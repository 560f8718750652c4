package session

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value reads a counter's or gauge's value.
func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var d dto.Metric
	if err := (<-ch).Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	o := e.o
	o.Metrics = NewMetrics(reg)
	if again := NewMetrics(reg); again.active != o.Metrics.active {
		t.Fatal("registering twice made new collectors")
	}
	o.QueueLimit = 2
	a := newSession(t, e, riderReq(), o)
	b := newSession(t, e, riderReq(), o)
	next(t, a)
	next(t, b)
	if got := value(t, o.Metrics.active); got != 2 {
		t.Fatalf("active %v, want 2", got)
	}
	for i := range 3 {
		e.apply(t, e.vehAt(fmt.Sprint("f/", i), mB, 0.5, 0.05*float64(i+1)))
		if i < 2 {
			next(t, a)
		}
	}
	if _, err := b.Next(context.Background(), nil); !errors.Is(err, ErrTooSlow) {
		t.Fatalf("b: %v, want ErrTooSlow", err)
	}
	next(t, a)
	if err := a.Move(riderReq()); err != nil {
		t.Fatal(err)
	}
	for kind, want := range map[string]float64{"snapshot": 2, "upsert": 3, "remove": 0, "heartbeat": 0} {
		if got := value(t, o.Metrics.frames[kindByName(kind)]); got != want {
			t.Errorf("frames{kind=%s} = %v, want %v", kind, got, want)
		}
	}
	if got := value(t, o.Metrics.cuts); got != 1 {
		t.Errorf("cuts %v, want 1", got)
	}
	if got := value(t, o.Metrics.moves); got != 1 {
		t.Errorf("moves %v, want 1", got)
	}
	a.Close()
	b.Close()
	a.Close()
	if got := value(t, o.Metrics.active); got != 0 {
		t.Fatalf("active %v after Close, want 0", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		n += len(mf.Metric)
	}
	if n != 7 {
		t.Fatalf("registry has %d series, want 7", n)
	}
}

func kindByName(s string) Kind {
	for k := KindSnapshot; k <= KindHeartbeat; k++ {
		if k.String() == s {
			return k
		}
	}
	return 0
}
