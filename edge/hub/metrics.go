package hub

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the hub's Prometheus collectors (names in the package doc).
type metrics struct {
	meshes     prometheus.Gauge
	received   prometheus.Counter
	deliveries prometheus.Counter
	dropped    *prometheus.CounterVec // reason: older, expired, bad
	expired    prometheus.Counter
	resyncs    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		meshes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshcast_hub_meshes",
			Help: "Meshes the hub is subscribed to (watched by at least one rider).",
		}),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshcast_hub_events_received_total",
			Help: "Mesh events the hub received from the bus.",
		}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshcast_hub_deliveries_total",
			Help: "Events handed to riders (one per rider per event).",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshcast_hub_events_dropped_total",
			Help: "Mesh events the hub ignored: older than an event already seen for the vehicle (older), already past the TTL (expired), undecodable (bad).",
		}, []string{"reason"}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshcast_hub_expired_total",
			Help: "Vehicles removed as STALE because their last fix is older than the TTL.",
		}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshcast_hub_resyncs_total",
			Help: "Mesh states re-read from the bus snapshot after a possible gap in delivery.",
		}),
	}
	for _, r := range []string{"older", "expired", "bad"} {
		m.dropped.WithLabelValues(r)
	}
	if reg != nil {
		m.meshes = register(reg, m.meshes)
		m.received = register(reg, m.received)
		m.deliveries = register(reg, m.deliveries)
		m.dropped = register(reg, m.dropped)
		m.expired = register(reg, m.expired)
		m.resyncs = register(reg, m.resyncs)
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
		panic("hub: register metrics: " + err.Error())
	}
	return c
}
