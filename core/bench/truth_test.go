package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/meshcast/meshcast/core/sim"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
)

// Tokyo Station, where the controlled vehicles are and the watching riders look.
const stationLat, stationLon = 35.681236, 139.767125

// truth is a set of controlled vehicles whose last fixes the test knows.
type truth struct {
	pub    *sim.Publisher
	n      int
	base   [][2]float64
	mu     sync.Mutex
	last   map[string][2]float64 // id → position of the last fix
	ts     int64
	rounds int
}

func newTruth(t *testing.T, d *deployment) *truth {
	t.Helper()
	pub, err := sim.Dial(context.Background(), sim.PublisherConfig{Brokers: []string{d.broker.URL()}, ClientID: "truth", QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pub.Close(ctx)
	})
	zones := tokyo(t)
	tr := &truth{pub: pub, n: 50, last: map[string][2]float64{}}
	r := rand.New(rand.NewPCG(5, 5))
	for len(tr.base) < tr.n {
		lat, lon := stationLat+(r.Float64()-0.5)*0.02, stationLon+(r.Float64()-0.5)*0.024
		if zones.Classify(lat, lon).Dispatchable() && zones.Classify(lat+0.001, lon).Dispatchable() {
			tr.base = append(tr.base, [2]float64{lat, lon})
		}
	}
	return tr
}

// round publishes one fix for every controlled vehicle, a little north of the last one.
func (tr *truth) round(t *testing.T) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.rounds++
	tr.ts = max(tr.ts+1, time.Now().UnixMilli())
	for i, b := range tr.base {
		lat := b[0] + float64(tr.rounds%100)*0.00001
		p := fmt.Sprintf(`{"lat":%s,"lon":%s,"ts":%d,"status":"vacant"}`,
			strconv.FormatFloat(lat, 'f', -1, 64), strconv.FormatFloat(b[1], 'f', -1, 64), tr.ts)
		tr.pub.Publish(fmt.Sprintf("taxi/truth/v%d/state", i), "", []byte(p))
		tr.last[fmt.Sprintf("truth/v%d", i)] = [2]float64{lat, b[1]}
	}
}

// flush waits until the broker acknowledged every fix published so far (QoS 1).
func (tr *truth) flush(t *testing.T) {
	t.Helper()
	want := int64(tr.rounds * tr.n)
	waitFor(t, "the broker to acknowledge the truth's fixes", func() bool {
		n, _ := tr.pub.Stats()
		return n >= want
	})
}

// view is a rider that keeps the full view of its area and reconnects when its stream ends.
type view struct {
	n     int
	mu    sync.Mutex
	cars  map[string][2]float64
	recon int
}

func (v *view) reconnects() int { v.mu.Lock(); defer v.mu.Unlock(); return v.recon }

func (v *view) apply(ev *meshcastv1.RiderEvent) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch k := ev.Kind.(type) {
	case *meshcastv1.RiderEvent_Snapshot:
		v.cars = map[string][2]float64{}
		for _, c := range k.Snapshot.Vehicles {
			v.cars[c.Id] = [2]float64{c.Lat, c.Lon}
		}
	case *meshcastv1.RiderEvent_Upsert:
		v.cars[k.Upsert.Id] = [2]float64{k.Upsert.Lat, k.Upsert.Lon}
	case *meshcastv1.RiderEvent_Remove:
		delete(v.cars, k.Remove.Id)
	}
}

// diff describes how the view differs from the truth ("" when equal).
func (v *view) diff(tr *truth) string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	v.mu.Lock()
	defer v.mu.Unlock()
	missing, wrong := 0, 0
	var example string
	for id, want := range tr.last {
		got, ok := v.cars[id]
		if !ok {
			missing++
			example = id + " missing"
		} else if got != want {
			wrong++
			example = fmt.Sprintf("%s at %v, want %v", id, got, want)
		}
	}
	if missing+wrong == 0 {
		return ""
	}
	return fmt.Sprintf("%d missing, %d at an old position (e.g. %s)", missing, wrong, example)
}

// watchView starts view i: even ones over native gRPC, odd ones over WebSocket (json).
func watchView(t *testing.T, d *deployment, i int) *view {
	v := &view{n: i, cars: map[string][2]float64{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	req := &meshcastv1.WatchRequest{Lat: stationLat, Lon: stationLon, RadiusM: 3000}
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			addr := d.addr()
			if i%2 == 0 {
				watchGRPC(ctx, addr, req, v.apply)
			} else {
				watchWS(ctx, addr, req, v.apply)
			}
			v.mu.Lock()
			v.recon++
			v.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond): // reconnect back-off, as a client would
			}
		}
	}()
	return v
}

func watchGRPC(ctx context.Context, addr string, req *meshcastv1.WatchRequest, apply func(*meshcastv1.RiderEvent)) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return
	}
	defer cc.Close()
	st, err := meshcastv1.NewRiderServiceClient(cc).Watch(ctx, req)
	if err != nil {
		return
	}
	for {
		ev, err := st.Recv()
		if err != nil {
			return
		}
		apply(ev)
	}
}

func watchWS(ctx context.Context, addr string, req *meshcastv1.WatchRequest, apply func(*meshcastv1.RiderEvent)) {
	u := fmt.Sprintf("ws://%s/v1/ws?lat=%v&lon=%v&radius_m=%d", addr, req.Lat, req.Lon, req.RadiusM)
	c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{Subprotocols: []string{"meshcast.v1.json"}})
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(16 << 20)
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return
		}
		for line := range bytes.SplitSeq(b, []byte("\n")) {
			ev := new(meshcastv1.RiderEvent)
			if protojson.Unmarshal(line, ev) == nil {
				apply(ev)
			}
		}
	}
}

func newHTTPClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

// badWS opens a WebSocket and sends a malformed frame: binary junk, or text that is not a
// WatchRequest, or an invalid move.
func badWS(addr string, junk []byte, i int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://%s/v1/ws?lat=%v&lon=%v", addr, stationLat, stationLon), nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	switch i % 3 {
	case 0:
		c.Write(ctx, websocket.MessageBinary, junk)
	case 1:
		c.Write(ctx, websocket.MessageText, junk)
	case 2:
		c.Write(ctx, websocket.MessageText, []byte(`{"lat":123,"lon":999,"radiusM":-1}`))
	}
	for {
		if _, _, err := c.Read(ctx); err != nil {
			return
		}
	}
}

// badGRPCWeb posts a gRPC-Web request whose body is junk.
func badGRPCWeb(hc *http.Client, addr string, junk []byte) {
	body := make([]byte, 5+len(junk))
	binary.BigEndian.PutUint32(body[1:5], uint32(len(junk)+7)) // a length that lies
	copy(body[5:], junk)
	req, _ := http.NewRequest("POST", "http://"+addr+meshcastv1.RiderService_Watch_FullMethodName, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	resp, err := hc.Do(req)
	if err == nil {
		resp.Body.Close()
	}
}
