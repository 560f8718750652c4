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
	}
	m.applied = m.applies.WithLabelValues("applied")
	m.stale = m.applies.WithLabelValues("stale")
	m.applyErrors = m.applies.WithLabelValues("error")
	return m
}
