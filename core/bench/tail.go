package bench

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"runtime/metrics"
	"strconv"
	"strings"
)

// Where a step's latency tail comes from: the edge's own histogram of the time from a fix's
// timestamp to the write of its upsert (meshcast_edge_delivery_latency_seconds) says what the
// edge and the path to it (publisher, Redis) add; the rest of the riders' latency is the
// kernel and this harness reading the sockets, which on one shared CPU can queue its own
// goroutines: its scheduler latency (runtime/metrics /sched/latencies:seconds) says how much.

// bucketCounts is a cumulative Prometheus histogram: upper bounds and counts.
type bucketCounts struct {
	le []float64
	n  []float64
}

// quantile returns the upper bound of the bucket holding quantile q of the counts
// added from a to b (b - a), in seconds: the last finite bound when it is past it, 0 with no
// counts.
func (b bucketCounts) quantile(a bucketCounts, q float64) float64 {
	if len(b.n) == 0 {
		return 0
	}
	if len(a.n) != len(b.n) {
		a = bucketCounts{le: b.le, n: make([]float64, len(b.n))}
	}
	total := b.n[len(b.n)-1] - a.n[len(a.n)-1]
	if total <= 0 {
		return 0
	}
	i := 0
	for i < len(b.n)-1 && b.n[i]-a.n[i] < q*total {
		i++
	}
	for i > 0 && math.IsInf(b.le[i], 1) {
		i--
	}
	return b.le[i]
}

// scrapeHistogram reads histogram name's buckets from a Prometheus text endpoint.
func scrapeHistogram(ctx context.Context, url, name string) (bucketCounts, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return bucketCounts{}, err
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return bucketCounts{}, fmt.Errorf("bench: scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	var out bucketCounts
	prefix := name + `_bucket{le="`
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		le, count, ok := strings.Cut(line, `"} `)
		if !ok {
			return bucketCounts{}, fmt.Errorf("bench: scrape %s: bad bucket line %q", url, sc.Text())
		}
		bound, err1 := strconv.ParseFloat(le, 64)
		n, err2 := strconv.ParseFloat(count, 64)
		if err1 != nil || err2 != nil {
			return bucketCounts{}, fmt.Errorf("bench: scrape %s: bad bucket line %q", url, sc.Text())
		}
		out.le, out.n = append(out.le, bound), append(out.n, n)
	}
	if err := sc.Err(); err != nil {
		return bucketCounts{}, fmt.Errorf("bench: scrape %s: %w", url, err)
	}
	if len(out.n) == 0 {
		return bucketCounts{}, fmt.Errorf("bench: scrape %s: no histogram %s", url, name)
	}
	return out, nil
}

// schedLatencies reads this process's scheduler latency histogram (how long goroutines waited
// to run once runnable), as cumulative buckets.
func schedLatencies() bucketCounts {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return bucketCounts{}
	}
	h := s[0].Value.Float64Histogram()
	out := bucketCounts{le: make([]float64, len(h.Counts)), n: make([]float64, len(h.Counts))}
	var sum float64
	for i, c := range h.Counts {
		sum += float64(c)
		out.le[i] = h.Buckets[i+1]
		out.n[i] = sum
	}
	return out
}

// tailProbe takes the two readings around a step's window.
type tailProbe struct {
	url          string
	edge0, edge1 bucketCounts
	sch0, sch1   bucketCounts
	err          error
}

func (p *tailProbe) start(ctx context.Context, admin string) {
	p.url = "http://" + admin + "/metrics"
	p.edge0, p.err = scrapeHistogram(ctx, p.url, "meshcast_edge_delivery_latency_seconds")
	p.sch0 = schedLatencies()
}

func (p *tailProbe) stop(ctx context.Context) {
	p.sch1 = schedLatencies()
	if p.err == nil {
		p.edge1, p.err = scrapeHistogram(ctx, p.url, "meshcast_edge_delivery_latency_seconds")
	}
}

// ms returns the window's p99 of the edge's write latency (a bucket's upper bound) and of this
// process's scheduler latency, in milliseconds (0: not measured).
func (p *tailProbe) ms() (edgeWrite, benchSched float64) {
	if p.err == nil {
		edgeWrite = p.edge1.quantile(p.edge0, 0.99) * 1e3
	}
	return edgeWrite, p.sch1.quantile(p.sch0, 0.99) * 1e3
}
