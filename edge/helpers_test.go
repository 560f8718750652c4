package edge

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/meshcast/meshcast/core/testwait"
)

// runningEdge is an edge.Run in this process on loopback port 0.
type runningEdge struct {
	listen, admin string
	stop          context.CancelFunc
	errc          chan error
}

func startEdge(t *testing.T, c Config) *runningEdge {
	t.Helper()
	c.Listen, c.Admin = "127.0.0.1:0", "127.0.0.1:0"
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Bus == "" || c.Bus == Defaults().Bus {
		c.Bus = "memory://"
	}
	up := make(chan [2]net.Addr, 1)
	c.Ready = func(l, a net.Addr) { up <- [2]net.Addr{l, a} }
	ctx, cancel := context.WithCancel(context.Background())
	e := &runningEdge{stop: cancel, errc: make(chan error, 1)}
	go func() { e.errc <- Run(ctx, c) }()
	select {
	case a := <-up:
		e.listen, e.admin = a[0].String(), a[1].String()
	case err := <-e.errc:
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-e.errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return e
}

// scrape reads the admin /metrics with the Prometheus text parser.
func scrape(t *testing.T, admin string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}

// sum adds the values (counter, gauge, or histogram count) of a family's series whose labels
// contain every name=value pair of match ("k=v").
func sum(mfs map[string]*dto.MetricFamily, name string, match ...string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
	total := 0.0
next:
	for _, m := range mf.GetMetric() {
		for _, kv := range match {
			k, v, _ := strings.Cut(kv, "=")
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
	}
	return total, true
}

// waitFor polls cond until it holds or the limit passes (a bound, not a speed assertion).
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, limit, what, cond)
}
