package bus

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshcast/meshcast/core/ops"
)

// metrics are the bus's Prometheus collectors (names in the package doc).
type metrics struct {
	resubscriptions             *prometheus.CounterVec // reason: reconnect, slot_moved, error
	applies                     *prometheus.CounterVec // result: applied, stale, error
	applied, stale, applyErrors prometheus.Counter     // applies' children, looked up once
	published                   prometheus.Counter
	received                    prometheus.Counter
	badData                     prometheus.Counter
	batchWait                   prometheus.Histogram
}

// batchWaitBuckets are the upper bounds of meshcast_bus_batch_wait_seconds: fine up to a few
// milliseconds (Options.BatchDelay is at most 2ms), coarse beyond.
var batchWaitBuckets = []float64{
	0.00005, 0.0001, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0007, 0.0008, 0.0009, 0.001,
	0.00125, 0.0015, 0.00175, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.0075, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1,
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		resubscriptions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshcast_bus_resubscriptions_total",
			Help: "Mesh channel subscriptions re-established after a dropped connection or failover (reconnect), a slot migration (slot_moved) or a failed subscribe (error).",
		}, []string{"reason"}),
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshcast_bus_applies_total",
			Help: "Vehicle fixes given to Apply, by result: applied, stale (not newer than the last applied fix) or error.",
		}, []string{"result"}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshcast_bus_events_published_total",
			Help: "Mesh events published by Apply.",
		}),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshcast_bus_events_received_total",
			Help: "Mesh events received by subscriptions (once per mesh channel, however many handlers).",
		}),
		badData: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshcast_bus_bad_data_total",
			Help: "Undecodable events or snapshot entries read from the bus (dropped).",
		}),
		batchWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshcast_bus_batch_wait_seconds",
			Help:    "Time a step of Apply (vehicle compare-and-set, mesh write) waited in its bucket's queue before its script call was sent (Redis): the batch delay and any call of the bucket in flight.",
			Buckets: batchWaitBuckets,
		}),
	}
	for _, r := range []string{"reconnect", "slot_moved", "error"} {
		m.resubscriptions.WithLabelValues(r)
	}
	for _, r := range []string{"applied", "stale", "error"} {
		m.applies.WithLabelValues(r)
	}
	if reg != nil {
		m.resubscriptions = ops.Register(reg, m.resubscriptions)
		m.applies = ops.Register(reg, m.applies)
		m.published = ops.Register(reg, m.published)
		m.received = ops.Register(reg, m.received)
		m.badData = ops.Register(reg, m.badData)
		m.batchWait = ops.Register(reg, m.batchWait)
	}
	m.applied = m.applies.WithLabelValues("applied")
	m.stale = m.applies.WithLabelValues("stale")
	m.applyErrors = m.applies.WithLabelValues("error")
	return m
}
