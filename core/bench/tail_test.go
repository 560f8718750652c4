package bench

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// The p99 of a window is read from the counts added during it, not the histogram's total.
func TestBucketQuantileOfAWindow(t *testing.T) {
	le := []float64{0.01, 0.05, 0.1, 10}
	before := bucketCounts{le: le, n: []float64{1000, 1000, 1000, 1000}} // all fast, before the window
	after := bucketCounts{le: le, n: []float64{1010, 1900, 1999, 2000}}  // 1,000 in the window
	if got := after.quantile(before, 0.99); got != 0.1 {
		t.Errorf("p99 of the window = %v, want 0.1 (990 of its 1,000 within 0.1)", got)
	}
	if got := after.quantile(before, 0.5); got != 0.05 {
		t.Errorf("p50 of the window = %v, want 0.05", got)
	}
	if got := after.quantile(bucketCounts{}, 0.5); got != 0.01 {
		t.Errorf("p50 since the start = %v, want 0.01", got)
	}
	if got := before.quantile(before, 0.99); got != 0 {
		t.Errorf("p99 of an empty window = %v, want 0", got)
	}
}

func TestScrapeHistogram(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`# TYPE x_seconds histogram
x_seconds_bucket{le="0.005"} 3
x_seconds_bucket{le="+Inf"} 7
x_seconds_sum 1.5
x_seconds_count 7
y_seconds_bucket{le="1"} 99
`))
	}))
	defer srv.Close()
	h, err := scrapeHistogram(t.Context(), srv.URL, "x_seconds")
	if err != nil {
		t.Fatal(err)
	}
	if len(h.n) != 2 || h.le[0] != 0.005 || h.n[0] != 3 || h.n[1] != 7 {
		t.Errorf("scraped %+v", h)
	}
	if got := h.quantile(bucketCounts{}, 0.99); got != 0.005 {
		t.Errorf("p99 past the last finite bound = %v, want that bound, 0.005", got)
	}
	if _, err := scrapeHistogram(t.Context(), srv.URL, "z_seconds"); err == nil {
		t.Error("no error for a histogram the endpoint does not have")
	}
}

func TestSchedLatenciesCumulative(t *testing.T) {
	h := schedLatencies()
	if len(h.n) == 0 || len(h.le) != len(h.n) {
		t.Fatalf("no scheduler latency histogram: %+v", h)
	}
	for i := 1; i < len(h.n); i++ {
		if h.n[i] < h.n[i-1] || h.le[i] < h.le[i-1] {
			t.Fatalf("not cumulative at %d: %v %v", i, h.le[i-1:i+1], h.n[i-1:i+1])
		}
	}
}
