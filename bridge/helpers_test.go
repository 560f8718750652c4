package bridge_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshcast/meshcast/bridge"
	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/bus/redistest"
	"github.com/meshcast/meshcast/core/geofence"
	"github.com/meshcast/meshcast/core/mesh"
	"github.com/meshcast/meshcast/core/telemetry"
	"github.com/meshcast/meshcast/core/testwait"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// waitTimeout bounds every condition wait (a failure, not a pace).
const waitTimeout = 60 * time.Second

// cluster is the 3-master Redis Cluster shared by the tests of this package; each test uses its
// own key prefix.
var cluster *redistest.Cluster

func TestMain(m *testing.M) {
	c, err := redistest.StartClusterWith(redistest.ClusterOptions{Masters: 3})
	if err != nil {
		log.Fatal(err)
	}
	cluster = c
	code := m.Run()
	c.Stop()
	os.Exit(code)
}

var zonesOnce = sync.OnceValues(func() (*geofence.Set, error) {
	return geofence.LoadFile("../deploy/zones/tokyo.geojson")
})

func tokyoZones(t testing.TB) *geofence.Set {
	t.Helper()
	z, err := zonesOnce()
	if err != nil {
		t.Fatal(err)
	}
	return z
}

var prefixSeq atomic.Int64

func uniquePrefix() string {
	return fmt.Sprintf("bt%d-%d", time.Now().UnixNano()%1e9, prefixSeq.Add(1))
}

func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// openBus opens a bus on the shared cluster with the given key prefix and clock.
func openBus(t testing.TB, prefix string, now func() time.Time) bus.Bus {
	t.Helper()
	b, err := bus.Open(context.Background(), cluster.URL(), bus.Options{KeyPrefix: prefix, Now: now, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// clock is a settable clock.
type clock struct{ ms atomic.Int64 }

func (c *clock) Now() time.Time { return time.UnixMilli(c.ms.Load()) }

// runBridge starts a bridge and stops it (waiting for Run to return) at cleanup.
func runBridge(t testing.TB, cfg bridge.Config) (*bridge.Bridge, *prometheus.Registry, func()) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	b, err := bridge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("bridge Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	waitFor(t, "the bridge to be ready", b.Ready)
	return b, reg, stop
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, waitTimeout, what, cond)
}

// metric returns the value of the counter or gauge name{labels} in reg (0 if absent).
func metric(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

// publisher is a plain paho client publishing QoS 1 and waiting for each PUBACK.
type publisher struct {
	c *paho.Client
}

func newPublisher(t testing.TB, addr, id string) *publisher {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatal(err)
	}
	if ca.ReasonCode != 0 {
		t.Fatalf("connect: reason %d", ca.ReasonCode)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return &publisher{c: c}
}

func (p *publisher) publish(t testing.TB, topic, contentType string, payload []byte) {
	t.Helper()
	if err := p.try(topic, contentType, payload); err != nil {
		t.Fatal(err)
	}
}

// try publishes with QoS 1 and waits for the PUBACK (safe to call from any goroutine).
func (p *publisher) try(topic, contentType string, payload []byte) error {
	pub := &paho.Publish{Topic: topic, QoS: 1, Payload: payload}
	if contentType != "" {
		pub.Properties = &paho.PublishProperties{ContentType: contentType}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := p.c.Publish(ctx, pub); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

func fixJSON(lat, lon float64, ts int64, status string) []byte {
	return fmt.Appendf(nil, `{"lat":%v,"lon":%v,"ts":%d,"status":%q,"heading":90,"speed":20}`, lat, lon, ts, status)
}

// recorder is a bus.Handler that records events as short strings.
type recorder struct {
	mu     sync.Mutex
	events []string
	raw    []*meshcastv1.MeshEvent
}

func (r *recorder) OnEvent(m mesh.Code, ev *meshcastv1.MeshEvent, raw []byte) {
	r.mu.Lock()
	r.events = append(r.events, eventString(m, ev))
	r.raw = append(r.raw, ev)
	r.mu.Unlock()
}

func (r *recorder) OnResync(mesh.Code) {}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func (r *recorder) allEvents() []*meshcastv1.MeshEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.raw)
}

// eventString renders an event as "<mesh> upsert <id> @<ts>" or
// "<mesh> remove <id> <REASON> [-> <moved_to>] @<ts>".
func eventString(m mesh.Code, ev *meshcastv1.MeshEvent) string {
	switch {
	case ev.GetUpsert() != nil:
		return fmt.Sprintf("%s upsert %s @%d", m, ev.GetUpsert().GetId(), ev.GetObservedAtMs())
	case ev.GetRemove() != nil:
		s := fmt.Sprintf("%s remove %s %s", m, ev.GetRemove().GetId(),
			strings.TrimPrefix(ev.GetRemove().GetReason().String(), "REMOVAL_REASON_"))
		if ev.GetMovedTo() != "" {
			s += " -> " + ev.GetMovedTo()
		}
		return s + fmt.Sprintf(" @%d", ev.GetObservedAtMs())
	}
	return fmt.Sprintf("%s ? %v", m, ev)
}

// subscribe subscribes rec to the meshes on b.
func subscribe(t testing.TB, b bus.Bus, rec bus.Handler, meshes ...string) {
	t.Helper()
	sub, err := b.Subscribe(rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	var ms []mesh.Code
	for _, s := range meshes {
		m, err := mesh.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := sub.Add(ctx, ms...); err != nil {
		t.Fatal(err)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// classifier returns the Tokyo classifier with a long TTL (tests control time by ts).
func classifier(t testing.TB) *telemetry.Classifier {
	return &telemetry.Classifier{Zones: tokyoZones(t)}
}
