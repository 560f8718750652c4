package bus

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the bus's Prometheus collectors (names in the package doc).
type metrics struct {
	resubscriptions *prometheus.CounterVec // reason: reconnect, slot_moved, error
	applies         *prometheus.CounterVec // result: applied, stale, error
	published       prometheus.Counter
	received        prometheus.Counter
	badData         prometheus.Counter
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
		m.resubscriptions = register(reg, m.resubscriptions)
		m.applies = register(reg, m.applies)
		m.published = register(reg, m.published)
		m.received = register(reg, m.received)
		m.badData = register(reg, m.badData)
	}
	return m
}

// register registers c, or returns the collector already registered under its name.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("bus: register metrics: " + err.Error())
	}
	return c
}
