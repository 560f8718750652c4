package bridge_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/meshcast/meshcast/bridge"
	"github.com/meshcast/meshcast/core/mesh"
	"github.com/meshcast/meshcast/core/mosquittotest"
	"github.com/meshcast/meshcast/core/telemetry"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// Places in deploy/zones/tokyo.geojson and their third-order meshes.
var (
	tokyoStation = [2]float64{35.681236, 139.767125} // 53394611
	nearStation  = [2]float64{35.6790, 139.7640}     // 53394611, another spot
	shinjuku     = [2]float64{35.6895, 139.6917}     // 53394525
	tokyoTower   = [2]float64{35.6585, 139.7454}     // 53393599
	yokohama     = [2]float64{35.443708, 139.638026} // 53391531, outside the service area
	marunouchi   = [2]float64{35.6812, 139.7648}     // 53394611, Marunouchi taxi pool (no dispatch)
)

const (
	meshStation = "53394611"
	meshShinjuk = "53394525"
	meshTower   = "53393599"
	meshYokoham = "53391531"
)

// TestBridgeScript drives one vehicle through every transition and every kind of bad input
// over a real mosquitto and the 3-master Redis Cluster, and checks the exact mesh events.
func TestBridgeScript(t *testing.T) {
	const base = int64(1732260000000)
	clk := &clock{}
	clk.ms.Store(base)
	broker := mosquittotest.Start(t)
	prefix := uniquePrefix()
	b := openBus(t, prefix, clk.Now)
	rec := &recorder{}
	subscribe(t, openBus(t, prefix, clk.Now), rec, meshStation, meshShinjuk, meshTower, meshYokoham)
	_, reg, _ := runBridge(t, bridge.Config{
		Brokers: []string{broker.URL()}, ClientID: "bridge-script", Bus: b,
		Classifier: classifier(t), Now: clk.Now, Workers: 4, QueueSize: 8,
		// mosquitto sends at most 2 unacknowledged messages to the bridge: if a rejected (or
		// any) message were not acknowledged, every later one would wait for ever, so each
		// step passing proves the messages before it were acknowledged.
		ReceiveMaximum: 2,
	})
	pub := newPublisher(t, broker.Addr, "terminal-script")
	const topic = "taxi/acme/v1/state"

	ts := base - 5000
	next := func() int64 { ts += 100; return ts }
	var want []string
	sent := 0
	// expect publishes a message and waits for exactly the given events (in any order across
	// meshes), or, with none given, for the metric to reach its value.
	send := func(topic, ct string, payload []byte) {
		t.Helper()
		pub.publish(t, topic, ct, payload)
		sent++
	}
	expect := func(step string, events ...string) {
		t.Helper()
		want = append(want, events...)
		waitFor(t, step+": "+strings.Join(events, ", "), func() bool { return rec.len() >= len(want) })
		got := rec.all()
		if fmt.Sprint(sorted(got[len(want)-len(events):])) != fmt.Sprint(sorted(events)) || len(got) != len(want) {
			t.Fatalf("%s: events\n%s\nwant\n%s", step, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	expectMetric := func(step, name string, value float64, labels ...string) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%s: %s%v = %v", step, name, labels, value), func() bool {
			return metric(t, reg, name, labels...) == value
		})
	}
	at := func(p [2]float64, status string) (string, string, []byte) {
		return topic, "", fixJSON(p[0], p[1], next(), status)
	}

	send(at(tokyoStation, "vacant"))
	expect("appear", fmt.Sprintf("53394611 upsert acme/v1 @%d", ts))
	send(at(nearStation, "vacant"))
	expect("move within a mesh", fmt.Sprintf("53394611 upsert acme/v1 @%d", ts))
	send(at(shinjuku, "vacant"))
	expect("move to another mesh",
		fmt.Sprintf("53394611 remove acme/v1 LEFT_AREA -> 53394525 @%d", ts),
		fmt.Sprintf("53394525 upsert acme/v1 @%d", ts))
	send(at(shinjuku, "occupied"))
	expect("become occupied", fmt.Sprintf("53394525 remove acme/v1 NOT_VACANT @%d", ts))
	send(at(shinjuku, "vacant"))
	expect("vacant again", fmt.Sprintf("53394525 upsert acme/v1 @%d", ts))

	// An older fix than the last applied one (out of order): nothing happens.
	send(topic, "", fixJSON(tokyoTower[0], tokyoTower[1], base-9000, "vacant"))
	expectMetric("out-of-order fix", "meshcast_bridge_messages_applied_total", 1, "result", "stale")

	// Bad input: counted by reason, acknowledged, and the pipeline keeps going.
	bad := []struct {
		reason          telemetry.Reason
		topic, ct, body string
	}{
		{telemetry.ReasonMalformed, topic, "", `{"lat":35.68,"lon":139.76,`},
		{telemetry.ReasonWrongType, topic, "", `{"lat":"35.68","lon":139.76,"ts":1732259999000,"status":"vacant"}`},
		{telemetry.ReasonOversized, topic, "", `{"lat":35.68,"lon":139.76,"ts":1732259999000,"status":"vacant","pad":"` + strings.Repeat("x", telemetry.MaxPayloadBytes) + `"}`},
		{telemetry.ReasonFutureTimestamp, topic, "", string(fixJSON(tokyoStation[0], tokyoStation[1], base+60_000, "vacant"))},
		{telemetry.ReasonMissingField, topic, "", `{"lat":35.68,"lon":139.76,"status":"vacant"}`},
		{telemetry.ReasonOutOfRange, topic, "", `{"lat":95,"lon":139.76,"ts":1732259999000,"status":"vacant"}`},
		{telemetry.ReasonBadEnum, topic, "", `{"lat":35.68,"lon":139.76,"ts":1732259999000,"status":"parked"}`},
		{telemetry.ReasonBadContentType, topic, "text/plain", string(fixJSON(tokyoStation[0], tokyoStation[1], base-100, "vacant"))},
		{telemetry.ReasonMalformed, topic, telemetry.ContentTypeProtobuf, "\xff\xff\xff"},
		{telemetry.ReasonBadTopic, "taxi/acme/v.1/state", "", string(fixJSON(tokyoStation[0], tokyoStation[1], base-100, "vacant"))},
	}
	wantRejected := map[telemetry.Reason]float64{}
	for _, m := range bad {
		send(m.topic, m.ct, []byte(m.body))
		wantRejected[m.reason]++
	}
	for r, n := range wantRejected {
		expectMetric("bad input", "meshcast_bridge_messages_rejected_total", n, "reason", string(r))
	}

	send(at(yokohama, "vacant"))
	expect("leave the service area", fmt.Sprintf("53394525 remove acme/v1 OUTSIDE_SERVICE_AREA @%d", ts))
	pb, err := proto.Marshal(&meshcastv1.Telemetry{Lat: tokyoTower[0], Lon: tokyoTower[1], Ts: next(),
		Status: meshcastv1.VehicleStatus_VEHICLE_STATUS_VACANT, Class: meshcastv1.VehicleClass_VEHICLE_CLASS_PREMIUM})
	if err != nil {
		t.Fatal(err)
	}
	send(topic, telemetry.ContentTypeProtobuf, pb)
	expect("come back (protobuf)", fmt.Sprintf("53393599 upsert acme/v1 @%d", ts))
	send(at(marunouchi, "vacant"))
	expect("enter a no-dispatch zone", fmt.Sprintf("53393599 remove acme/v1 IN_NO_DISPATCH_ZONE @%d", ts))
	send(at(tokyoStation, "vacant"))
	expect("leave the no-dispatch zone", fmt.Sprintf("53394611 upsert acme/v1 @%d", ts))

	// A fix older than the TTL (the terminal was offline) would never be shown: rejected as
	// stale_timestamp, acknowledged, nothing published; so is a ts in seconds (a terminal bug).
	clk.ms.Add((telemetry.DefaultTTL + 5*time.Second).Milliseconds())
	send(at(tokyoStation, "vacant"))
	expectMetric("stale fix", "meshcast_bridge_messages_rejected_total", 1, "reason", string(telemetry.ReasonStaleTimestamp))
	send(topic, "", fixJSON(tokyoStation[0], tokyoStation[1], clk.ms.Load()/1000, "vacant"))
	expectMetric("ts in seconds", "meshcast_bridge_messages_rejected_total", 2, "reason", string(telemetry.ReasonStaleTimestamp))
	ts = clk.ms.Load() - 200
	send(at(tokyoStation, "vacant"))
	expect("fresh again", fmt.Sprintf("53394611 upsert acme/v1 @%d", ts))
	const staleFixes = 2

	expectMetric("all received", "meshcast_bridge_messages_received_total", float64(sent))
	expectMetric("all processed", "meshcast_bridge_processing_seconds", float64(sent-len(bad)-staleFixes))
	if got := metric(t, reg, "meshcast_bridge_messages_applied_total", "result", "applied"); got != float64(sent-len(bad)-staleFixes-1) {
		t.Errorf("applied = %v, want %d", got, sent-len(bad)-staleFixes-1)
	}
	if got := metric(t, reg, "meshcast_bridge_events_published_total"); got != float64(len(want)) {
		t.Errorf("events published = %v, want %d", got, len(want))
	}
	m, _ := mesh.Parse(meshStation)
	snap, err := b.Snapshot(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap) != 1 || snap[0].GetId() != "acme/v1" || snap[0].GetObservedAtMs() != ts {
		t.Fatalf("snapshot of %s: %v, want acme/v1 @%d", meshStation, snap, ts)
	}
}
