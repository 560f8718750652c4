package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/bus/redistest"
	"github.com/meshcast/meshcast/core/geofence"
	"github.com/meshcast/meshcast/core/mesh"
	"github.com/meshcast/meshcast/core/telemetry"
	"github.com/meshcast/meshcast/core/testwait"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

const (
	waitTimeout = 30 * time.Second
	baseMs      = int64(1732260000000)
)

// fakeBus records applies; apply, when set, decides each call's outcome.
type fakeBus struct {
	mu      sync.Mutex
	updates []bus.Update
	apply   func(ctx context.Context, u bus.Update) (bus.Result, error)
	changed chan struct{}
}

func newFakeBus() *fakeBus { return &fakeBus{changed: make(chan struct{}, 1)} }

func (b *fakeBus) Apply(ctx context.Context, u bus.Update) (bus.Result, error) {
	res, err := bus.Result{Applied: true}, error(nil)
	if b.apply != nil {
		res, err = b.apply(ctx, u)
	}
	if err == nil {
		b.mu.Lock()
		b.updates = append(b.updates, u)
		b.mu.Unlock()
		select {
		case b.changed <- struct{}{}:
		default:
		}
	}
	return res, err
}
func (b *fakeBus) Snapshot(context.Context, mesh.Code) ([]*meshcastv1.Vehicle, error) {
	return nil, nil
}
func (b *fakeBus) Subscribe(bus.Handler) (bus.Subscription, error) { return nil, errors.New("no") }
func (b *fakeBus) Close() error                                    { return nil }

func (b *fakeBus) all() []bus.Update {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]bus.Update(nil), b.updates...)
}

// fakeAcker records acknowledged packet ids.
type fakeAcker struct {
	mu    sync.Mutex
	acked []uint16
}

func (a *fakeAcker) Ack(p *paho.Publish) error {
	a.mu.Lock()
	a.acked = append(a.acked, p.PacketID)
	a.mu.Unlock()
	return nil
}

func (a *fakeAcker) ids() []uint16 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]uint16(nil), a.acked...)
}

func testPipeline(t testing.TB, b bus.Bus, workers, queue int) (*pipeline, *metrics) {
	t.Helper()
	return testPipelineWith(t, b, workers, queue, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// testPipelineWith is testPipeline with an apply timeout (0: the default) and a logger.
func testPipelineWith(t testing.TB, b bus.Bus, workers, queue int, applyTimeout time.Duration, logger *slog.Logger) (*pipeline, *metrics) {
	t.Helper()
	zones, err := geofence.LoadFile("../deploy/zones/tokyo.geojson")
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := Config{
		Bus: b, Workers: workers, QueueSize: queue,
		Classifier: &telemetry.Classifier{Zones: zones},
		Now:        func() time.Time { return time.UnixMilli(baseMs) },
		Logger:     logger,
		RetryMin:   time.Millisecond, RetryMax: 2 * time.Millisecond, ApplyTimeout: applyTimeout,
	}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	var p *pipeline
	m := newMetrics(func() float64 { return float64(p.depth()) })
	p = newPipeline(&cfg, m, newRateLog(cfg.Logger, time.Hour, time.Now))
	return p, m
}

func fixJSON(lat, lon float64, ts int64, status string) []byte {
	return fmt.Appendf(nil, `{"lat":%v,"lon":%v,"ts":%d,"status":%q}`, lat, lon, ts, status)
}

func msg(id uint16, topic string, payload []byte, a acker) message {
	return message{topic: topic, payload: payload, received: time.Now(), ack: a, pub: &paho.Publish{PacketID: id, QoS: 1}}
}

func TestPipelineKeepsPerVehicleOrder(t *testing.T) {
	fb := newFakeBus()
	p, _ := testPipeline(t, fb, 8, 4)
	p.start()
	a := &fakeAcker{}
	const vehicles, fixes = 20, 50
	id := uint16(0)
	for i := range fixes {
		for v := range vehicles {
			id++
			if !p.submit(msg(id, fmt.Sprintf("taxi/acme/v%d/state", v), fixJSON(35.681236, 139.767125, baseMs-5000+int64(i), "vacant"), a)) {
				t.Fatal("submit refused")
			}
		}
	}
	p.close(waitTimeout)
	last := map[string]int64{}
	for _, u := range fb.all() {
		if ts := u.Vehicle.ObservedAtMs; ts <= last[u.Vehicle.Id] {
			t.Fatalf("%s: fix %d applied after %d", u.Vehicle.Id, ts, last[u.Vehicle.Id])
		}
		last[u.Vehicle.Id] = u.Vehicle.ObservedAtMs
	}
	if got := len(fb.all()); got != vehicles*fixes {
		t.Fatalf("applied %d updates, want %d", got, vehicles*fixes)
	}
	if got := len(a.ids()); got != vehicles*fixes {
		t.Fatalf("acked %d, want %d", got, vehicles*fixes)
	}
}

func TestPipelineClassifiesAndRejects(t *testing.T) {
	fb := newFakeBus()
	p, m := testPipeline(t, fb, 2, 4)
	p.start()
	a := &fakeAcker{}
	tokyo := fixJSON(35.681236, 139.767125, baseMs-1000, "vacant")
	tests := []struct {
		topic   string
		payload []byte
		reason  telemetry.Reason // "" for a valid message
	}{
		{"taxi/acme/v1/state", tokyo, ""},
		{"taxi/acme/v1/state", []byte(`{"lat":`), telemetry.ReasonMalformed},
		{"taxi/acme/v1/state", []byte(`{"lat":"35","lon":139,"ts":1,"status":"vacant"}`), telemetry.ReasonWrongType},
		{"taxi/acme/v1/state", make([]byte, telemetry.MaxPayloadBytes+1), telemetry.ReasonOversized},
		{"taxi/acme/v.1/state", tokyo, telemetry.ReasonBadTopic},
		{"taxi/acme/v1/state", fixJSON(35.681236, 139.767125, baseMs+60_000, "vacant"), telemetry.ReasonFutureTimestamp},
		{"taxi/acme/v1/state", fixJSON(35.681236, 139.767125, baseMs/1000, "vacant"), telemetry.ReasonStaleTimestamp}, // ts in seconds
		{"taxi/acme/v1/state", fixJSON(35.681236, 139.767125, baseMs-500, "occupied"), ""},
	}
	for i, tt := range tests {
		p.submit(msg(uint16(i+1), tt.topic, tt.payload, a))
	}
	p.close(waitTimeout)
	if got := len(a.ids()); got != len(tests) {
		t.Fatalf("acked %d messages, want all %d", got, len(tests))
	}
	for _, tt := range tests {
		if tt.reason == "" {
			continue
		}
		if got := value(m.rejected[tt.reason]); got != 1 {
			t.Errorf("rejected{reason=%s} = %v, want 1", tt.reason, got)
		}
	}
	ups := fb.all()
	if len(ups) != 2 {
		t.Fatalf("got %d updates, want 2", len(ups))
	}
	if !ups[0].Dispatchable || ups[0].Vehicle.Mesh != "53394611" || ups[0].Vehicle.Id != "acme/v1" {
		t.Errorf("first update %+v: want dispatchable acme/v1 in 53394611", ups[0])
	}
	if ups[1].Dispatchable || ups[1].Reason.String() != "REMOVAL_REASON_NOT_VACANT" {
		t.Errorf("second update %+v: want not dispatchable, NOT_VACANT", ups[1])
	}
	if got := value(m.applied); got != 2 {
		t.Errorf("applied = %v, want 2", got)
	}
	// The fix age (ts to acknowledgement, on the bridge's clock) of the two applied fixes only.
	var h dto.Metric
	if err := m.fixAge.Write(&h); err != nil {
		t.Fatal(err)
	}
	if n, sum := h.Histogram.GetSampleCount(), h.Histogram.GetSampleSum(); n != 2 || sum != 1.5 {
		t.Errorf("fix age: %d samples summing to %vs, want 2 (1s and 0.5s old)", n, sum)
	}
}

func TestPipelineRetriesBusUntilItWorks(t *testing.T) {
	fb := newFakeBus()
	var mu sync.Mutex
	failures := 5
	fb.apply = func(context.Context, bus.Update) (bus.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		if failures > 0 {
			failures--
			return bus.Result{}, errors.New("connection refused")
		}
		return bus.Result{Applied: true, Events: 1}, nil
	}
	p, m := testPipeline(t, fb, 1, 4)
	p.start()
	a := &fakeAcker{}
	p.submit(msg(1, "taxi/acme/v1/state", fixJSON(35.681236, 139.767125, baseMs-1000, "vacant"), a))
	testwait.For(t, waitTimeout, "the update to be applied", func() bool { return len(fb.all()) == 1 })
	p.close(waitTimeout)
	if got := a.ids(); len(got) != 1 {
		t.Fatalf("acked %v, want [1]", got)
	}
	if got := value(m.busErrors); got != 5 {
		t.Errorf("bus errors = %v, want 5", got)
	}
	if got := value(m.events); got != 1 {
		t.Errorf("events = %v, want 1", got)
	}
}

func TestPipelineHandsBackWhatTheBusRefusesAtShutdown(t *testing.T) {
	fb := newFakeBus()
	calls := make(chan struct{}, 100)
	fb.apply = func(ctx context.Context, u bus.Update) (bus.Result, error) {
		calls <- struct{}{}
		return bus.Result{}, errors.New("CLUSTERDOWN")
	}
	p, m := testPipeline(t, fb, 1, 4)
	p.start()
	a := &fakeAcker{}
	for i := range 3 {
		p.submit(msg(uint16(i+1), "taxi/acme/v1/state", fixJSON(35.681236, 139.767125, baseMs-1000+int64(i), "vacant"), a))
	}
	<-calls // the worker is retrying the first message
	p.close(20 * time.Millisecond)
	if got := a.ids(); len(got) != 0 {
		t.Fatalf("acked %v while the bus never accepted anything", got)
	}
	if got := value(m.handedBack); got != 3 {
		t.Errorf("handed back %v, want 3", got)
	}
	if p.submit(msg(9, "taxi/acme/v1/state", nil, a)) {
		t.Error("submit accepted a message after close")
	}
}

func TestPipelineBackpressure(t *testing.T) {
	fb := newFakeBus()
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	fb.apply = func(ctx context.Context, u bus.Update) (bus.Result, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return bus.Result{Applied: true}, nil
	}
	p, _ := testPipeline(t, fb, 1, 2)
	p.start()
	a := &fakeAcker{}
	m := func(id uint16) message {
		return msg(id, "taxi/acme/v1/state", fixJSON(35.681236, 139.767125, baseMs-1000+int64(id), "vacant"), a)
	}
	p.submit(m(1))
	<-entered // the worker holds message 1 in Apply
	p.submit(m(2))
	p.submit(m(3)) // the queue (2) is full now
	if d := p.depth(); d != 2 {
		t.Fatalf("depth %d, want 2", d)
	}
	// The 4th submit must wait until the worker takes message 2, which needs the release.
	var released atomic.Bool
	submitted := make(chan bool)
	go func() {
		ok := p.submit(m(4))
		submitted <- ok && released.Load()
	}()
	released.Store(true)
	close(release)
	if !<-submitted {
		t.Fatal("submit returned before the full queue had room (or refused)")
	}
	p.close(waitTimeout)
	if got := a.ids(); len(got) != 4 {
		t.Fatalf("acked %v, want 4 messages", got)
	}
}

func TestBackoff(t *testing.T) {
	for attempt := range 40 {
		d := backoff(attempt, 10*time.Millisecond, time.Second)
		want := min(10*time.Millisecond<<min(attempt, 30), time.Second)
		if d < want/2 || d > want {
			t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, want/2, want)
		}
	}
}

// value reads a counter or gauge.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	panic("not a counter or gauge")
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// With its real Redis SIGKILLed, the bus gets no answer: each Apply attempt fails at the apply
// timeout and is counted (meshcast_bridge_bus_errors_total), logged and retried, and the message
// is not acknowledged; once Redis is back, a retry applies and acknowledges it. (Before the
// timeout, rueidis retried the dead connection for as long as the worker's context allowed, which
// was for ever: the message sat in Apply, and no error was counted or logged.)
func TestPipelineRetriesADeadRedis(t *testing.T) {
	single := redistest.StartSingle(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	b, err := bus.Open(ctx, single.URL(), bus.Options{TTL: time.Hour, KeyPrefix: "deadredis"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var logs syncBuffer
	p, m := testPipelineWith(t, b, 4, 4, 100*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)))
	p.start()
	a := &fakeAcker{}
	p.submit(msg(1, "taxi/acme/v1/state", fixJSON(35.681236, 139.767125, baseMs-1000, "vacant"), a))
	testwait.For(t, waitTimeout, "the first fix to be applied and acknowledged", func() bool { return len(a.ids()) == 1 })

	single.Kill()
	p.submit(msg(2, "taxi/acme/v2/state", fixJSON(35.681236, 139.767125, baseMs-1000, "vacant"), a))
	testwait.For(t, waitTimeout, "two failed apply attempts to be counted", func() bool { return value(m.busErrors) >= 2 })
	if got := a.ids(); len(got) != 1 {
		t.Fatalf("acknowledged %v with Redis down, want only [1]", got)
	}
	if !strings.Contains(logs.String(), "bus apply failed, retrying") || !strings.Contains(logs.String(), "vehicle=acme/v2") {
		t.Fatalf("no log line for the failing apply:\n%s", logs.String())
	}

	if err := single.Restart(); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, waitTimeout, "the second fix to be acknowledged once Redis is back", func() bool { return len(a.ids()) == 2 })
	p.close(waitTimeout)
	if got := value(m.applied); got != 2 {
		t.Fatalf("applied = %v, want 2", got)
	}
	// The restarted server started empty: the second fix's vehicle state is there, the first's not.
	keys, err := single.Do("KEYS", "deadredis:*:acme/*")
	if err != nil || !strings.HasSuffix(fmt.Sprint(keys), ":acme/v2]") || strings.Count(fmt.Sprint(keys), "acme") != 1 {
		t.Fatalf("vehicle keys after the restart = %v, %v; want acme/v2's alone", keys, err)
	}
}
