package bridge

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshcast/meshcast/core/telemetry"
)

// processingBuckets are the upper bounds of meshcast_bridge_processing_seconds: fine below 10 ms,
// where a fix's time in the bridge normally is and where the bus batching's added delay shows
// (its p99 is read from them), coarse above.
var processingBuckets = []float64{
	0.0001, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0007, 0.0008, 0.0009, 0.001,
	0.00125, 0.0015, 0.00175, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.0075, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// metrics are the bridge's Prometheus collectors (see the package doc).
type metrics struct {
	received    prometheus.Counter
	rejected    map[telemetry.Reason]prometheus.Counter
	rejectedVec *prometheus.CounterVec
	applied     prometheus.Counter
	stale       prometheus.Counter
	events      prometheus.Counter
	busErrors   prometheus.Counter
	handedBack  prometheus.Counter
	queueDepth  prometheus.GaugeFunc
	processing  prometheus.Histogram
	fixAge      prometheus.Histogram
	connected   prometheus.Gauge
	connections prometheus.Counter
	all         []prometheus.Collector
}

func newMetrics(queueDepth func() float64) *metrics {
	m := &metrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshcast_bridge_messages_received_total",
			Help: "MQTT messages delivered to the bridge by the broker (redeliveries included).",
		}),
		rejectedVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshcast_bridge_messages_rejected_total",
			Help: "Messages rejected as invalid, by reason; they are acknowledged and dropped.",
		}, []string{"reason"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshcast_bridge_events_published_total",
			Help: "Mesh events published on the bus by the bridge's applies.",
		}),
		busErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshcast_bridge_bus_errors_total",
			Help: "Failed bus.Apply attempts; each is retried with backoff until it succeeds or the bridge stops.",
		}),
		handedBack: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshcast_bridge_messages_handed_back_total",
			Help: "Messages left unacknowledged at shutdown, for the broker to redeliver.",
		}),
		queueDepth: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meshcast_bridge_queue_depth",
			Help: "Messages waiting in the worker queues.",
		}, queueDepth),
		processing: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshcast_bridge_processing_seconds",
			Help:    "Time from a message's receipt to its acknowledgement (queueing, decoding, classification, bus).",
			Buckets: processingBuckets,
		}),
		fixAge: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meshcast_bridge_fix_age_seconds",
			Help: "Time from a fix's ts (the terminal's clock, ms) to its acknowledgement, for fixes applied to the bus: the delay riders see when the clocks agree.",
			// The same fine buckets as processing (the delay added before receipt shows there too),
			// wider at the top: a terminal may send a fix late.
			Buckets: append(processingBuckets[:len(processingBuckets):len(processingBuckets)], 30, 60),
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshcast_bridge_connected",
			Help: "1 while the bridge is connected to the MQTT broker.",
		}),
		connections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshcast_bridge_connections_total",
			Help: "Connections to the MQTT broker established (the first and every reconnect).",
		}),
	}
	applied := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshcast_bridge_messages_applied_total",
		Help: "Valid messages written to the bus, by result: applied (newest fix of its vehicle) or stale (older or duplicate fix: nothing changed).",
	}, []string{"result"})
	m.applied = applied.WithLabelValues("applied")
	m.stale = applied.WithLabelValues("stale")
	m.rejected = make(map[telemetry.Reason]prometheus.Counter)
	for _, r := range append(telemetry.Reasons(), telemetry.ReasonUnknown) {
		m.rejected[r] = m.rejectedVec.WithLabelValues(string(r))
	}
	m.all = []prometheus.Collector{m.received, m.rejectedVec, applied, m.events, m.busErrors,
		m.handedBack, m.queueDepth, m.processing, m.fixAge, m.connected, m.connections}
	return m
}

// register registers every collector with r (nil: nothing).
func (m *metrics) register(r prometheus.Registerer) error {
	if r == nil {
		return nil
	}
	for _, c := range m.all {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// reject counts one rejected message.
func (m *metrics) reject(r telemetry.Reason) {
	c, ok := m.rejected[r]
	if !ok {
		c = m.rejected[telemetry.ReasonUnknown]
	}
	c.Inc()
}
