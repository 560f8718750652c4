package hub

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshcast/meshcast/core/ops"
)

// metrics are the hub's Prometheus collectors (names in the package doc).
type metrics struct {
	meshes     prometheus.Gauge
	received   prometheus.Counter
	deliveries prometheus.Counter
	skipped    prometheus.Counter
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
			Help: "Events handed to riders' sessions (one per rider per event, not counting the riders the circle pre-filter skipped).",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshcast_hub_skipped_total",
			Help: "Riders the fan-out's circle pre-filter did not hand an upsert to: the vehicle's new and previous positions were both outside the rider's circle (deliveries + skipped = riders watching the mesh, summed over events).",
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
		m.meshes = ops.Register(reg, m.meshes)
		m.received = ops.Register(reg, m.received)
		m.deliveries = ops.Register(reg, m.deliveries)
		m.skipped = ops.Register(reg, m.skipped)
		m.dropped = ops.Register(reg, m.dropped)
		m.expired = ops.Register(reg, m.expired)
		m.resyncs = ops.Register(reg, m.resyncs)
	}
	return m
}
