package session

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshcast/meshcast/core/ops"
)

// Metrics are the counters of the sessions of a process (Options.Metrics):
//
//	meshcast_session_active               sessions open now
//	meshcast_session_frames_total{kind}   frames returned by Next: snapshot, upsert, remove, heartbeat
//	meshcast_session_moves_total          area moves (Move)
//	meshcast_session_cut_total            riders cut for being too slow (ErrTooSlow)
type Metrics struct {
	active prometheus.Gauge
	frames [KindHeartbeat + 1]prometheus.Counter
	moves  prometheus.Counter
	cuts   prometheus.Counter
}

// NewMetrics makes the session metrics and registers them with reg (nil: not registered;
// registering twice into one registry reuses the first collectors).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	frames := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshcast_session_frames_total",
		Help: "Frames (rider events) returned to the transports, by kind.",
	}, []string{"kind"})
	m := &Metrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshcast_session_active",
			Help: "Rider sessions open now.",
		}),
		moves: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshcast_session_moves_total",
			Help: "Area moves of rider sessions.",
		}),
		cuts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshcast_session_cut_total",
			Help: "Riders cut because more vehicles than the queue limit had an update pending.",
		}),
	}
	if reg != nil {
		m.active = ops.Register(reg, m.active)
		m.moves = ops.Register(reg, m.moves)
		m.cuts = ops.Register(reg, m.cuts)
		frames = ops.Register(reg, frames)
	}
	for k := KindSnapshot; k <= KindHeartbeat; k++ {
		m.frames[k] = frames.WithLabelValues(k.String())
	}
	return m
}
