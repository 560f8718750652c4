package transport

import (
	"time"

	"github.com/meshcast/meshcast/edge/session"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshcast/meshcast/core/ops"
)

// metrics are the transport's collectors:
//
//	meshcast_edge_connections{transport}       rider streams open now (grpc, grpc_web, ws, sse)
//	meshcast_edge_rejected_total{reason}       streams refused: unauthenticated, draining, rate,
//	                                           max_connections, max_per_ip
//	meshcast_edge_streams_ended_total{reason}  streams ended: client, too_slow, invalid,
//	                                           max_age, drain, shutdown, write_failed, error
//	meshcast_edge_stalled_total{reason}        clients cut for not sending in time: first_bytes
//	                                           (a connection's first bytes), grpc_request and
//	                                           grpc_web_request (a stream's first request message)
//	meshcast_edge_delivery_latency_seconds     fix time (Vehicle.observed_at_ms) to write, per
//	                                           upsert written
//	meshcast_edge_stall_watch_off_total        native gRPC streams served without the stall watch
//	                                           (grpc-go's stream lacks WriteStatus: a stalled
//	                                           stream is never cut; also logged as an error)
//	meshcast_edge_queued_updates               vehicles with an update waiting, all riders (at scrape)
//	meshcast_edge_queued_updates_max           the same for the rider with the longest queue
type metrics struct {
	connections *prometheus.GaugeVec
	rejected    *prometheus.CounterVec
	ended       *prometheus.CounterVec
	stalled     *prometheus.CounterVec
	latency     prometheus.Histogram
	// stallWatchOff counts gRPC streams served without a stall watch.
	stallWatchOff prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshcast_edge_connections",
			Help: "Rider streams open now, by transport.",
		}, []string{"transport"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshcast_edge_rejected_total",
			Help: "Rider streams refused before they opened, by reason.",
		}, []string{"reason"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshcast_edge_streams_ended_total",
			Help: "Rider streams ended, by reason (too_slow: cut riders).",
		}, []string{"reason"}),
		stalled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshcast_edge_stalled_total",
			Help: "Clients cut for not sending in time (handshake timeout), by what they had not sent.",
		}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meshcast_edge_delivery_latency_seconds",
			Help: "From a fix's timestamp (observed_at_ms) to the write of its upsert to a rider.",
			// Finer around the write delay (default 50 ms), where most upserts are written.
			Buckets: []float64{.005, .01, .025, .05, .055, .06, .07, .08, .1, .15, .25, .5, 1, 2.5, 5, 10},
		}),
		stallWatchOff: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshcast_edge_stall_watch_off_total",
			Help: "Native gRPC streams served without the stall watch (grpc-go's stream lacks WriteStatus): a stalled one is never cut.",
		}),
	}
	for _, t := range []string{nameGRPC, nameGRPCWeb, nameWS, nameSSE} {
		m.connections.WithLabelValues(t)
	}
	for _, r := range []string{"unauthenticated", "draining", "rate", "max_connections", "max_per_ip"} {
		m.rejected.WithLabelValues(r)
	}
	for _, r := range []string{stalledFirstBytes, stalledGRPCRequest, stalledGRPCWebReqst} {
		m.stalled.WithLabelValues(r)
	}
	if reg != nil {
		m.connections = ops.Register(reg, m.connections)
		m.stalled = ops.Register(reg, m.stalled)
		m.rejected = ops.Register(reg, m.rejected)
		m.ended = ops.Register(reg, m.ended)
		m.latency = ops.Register(reg, m.latency)
		m.stallWatchOff = ops.Register(reg, m.stallWatchOff)
	}
	return m
}

// observeBatch records the delivery latency of every upsert in a batch just written (the session
// reports their observed_at_ms: nothing is decoded again).
func (m *metrics) observeBatch(bt session.Batch) {
	if len(bt.Observed) == 0 {
		return
	}
	now := time.Now()
	for _, ms := range bt.Observed {
		m.latency.Observe(max(0, now.Sub(time.UnixMilli(ms)).Seconds()))
	}
}

// queueCollector reports the riders' queue depths when scraped (one pass over the open streams).
type queueCollector struct {
	s          *Server
	total, max *prometheus.Desc
}

func (q *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- q.total; ch <- q.max }

func (q *queueCollector) Collect(ch chan<- prometheus.Metric) {
	q.s.mu.Lock()
	sessions := make([]*session.Session, 0, len(q.s.live))
	for st := range q.s.live {
		if st.sess != nil {
			sessions = append(sessions, st.sess)
		}
	}
	q.s.mu.Unlock()
	total, most := 0, 0
	for _, sess := range sessions {
		n := sess.Pending()
		total += n
		most = max(most, n)
	}
	ch <- prometheus.MustNewConstMetric(q.total, prometheus.GaugeValue, float64(total))
	ch <- prometheus.MustNewConstMetric(q.max, prometheus.GaugeValue, float64(most))
}

func newQueueCollector(s *Server) *queueCollector {
	return &queueCollector{s: s,
		total: prometheus.NewDesc("meshcast_edge_queued_updates", "Vehicles with an update waiting to be written, over all riders.", nil, nil),
		max:   prometheus.NewDesc("meshcast_edge_queued_updates_max", "Vehicles with an update waiting for the rider with the longest queue.", nil, nil),
	}
}
