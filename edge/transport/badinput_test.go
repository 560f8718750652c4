package transport

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/meshcast/meshcast/core/bus"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Bad input on every transport gets the error API.md names, before any event: gRPC
// INVALID_ARGUMENT, HTTP 400 {"error":{"code":"invalid_argument",...}} before any upgrade, and
// for what a WebSocket client sends after the upgrade, close 1008 (oversized frames too).

var tokyo = &meshcastv1.WatchRequest{Lat: 35.681236, Lon: 139.767125}

func badServer(t *testing.T) *testServer {
	t.Helper()
	b := bus.NewMemory(bus.Options{})
	t.Cleanup(func() { b.Close() })
	return startServer(t, b, nil, Options{AllowedOrigins: []string{"https://app.example.com"}})
}

// badRequests are WatchRequests every transport must refuse, with the field the error names.
var badRequests = []struct {
	name  string
	req   *meshcastv1.WatchRequest
	query string // the same for WebSocket and SSE
	field string
}{
	{"missing lat and lon", &meshcastv1.WatchRequest{}, "radius_m=500", "lat"},
	{"lat out of range", &meshcastv1.WatchRequest{Lat: 91, Lon: 139.7}, "lat=91&lon=139.7", "lat"},
	{"lon out of range", &meshcastv1.WatchRequest{Lat: 35.6, Lon: 200}, "lat=35.6&lon=200", "lon"},
	{"radius over the max", &meshcastv1.WatchRequest{Lat: 35.6, Lon: 139.7, RadiusM: 5000}, "lat=35.6&lon=139.7&radius_m=5000", "radius_m"},
	{"unknown class", &meshcastv1.WatchRequest{Lat: 35.6, Lon: 139.7, Classes: []meshcastv1.VehicleClass{99}}, "lat=35.6&lon=139.7&classes=limousine", "classes"},
	{"outside the served area", &meshcastv1.WatchRequest{Lat: 48.85, Lon: 2.35}, "lat=48.85&lon=2.35", "lat,lon"},
}

// noEvents fails if the rider got an event.
func noEvents(t *testing.T, r *rider) {
	t.Helper()
	select {
	case ev := <-r.events:
		t.Fatalf("%s: got an event before the error: %v", r.name, ev)
	default:
	}
}

func wantCode(t *testing.T, r *rider, want codes.Code, field string) {
	t.Helper()
	err := r.endError(t)
	noEvents(t, r)
	code, msg := statusOf(err)
	if code != want || (field != "" && !strings.Contains(msg, field)) {
		t.Fatalf("%s: ended with %v %q, want %v naming %q", r.name, code, msg, want, field)
	}
}

func TestBadInputGRPC(t *testing.T) {
	ts := badServer(t)
	cc := dialGRPC(t, ts.addr)
	for _, tt := range badRequests {
		t.Run("watch/"+tt.name, func(t *testing.T) {
			field := tt.field
			if field == "lat" && tt.req.Lat == 0 {
				field = "lat,lon" // 0,0 is a place, outside the served area
			}
			wantCode(t, grpcWatch(t, cc, tt.req), codes.InvalidArgument, field)
		})
		t.Run("track/"+tt.name, func(t *testing.T) {
			field := tt.field
			if field == "lat" && tt.req.Lat == 0 {
				field = "lat,lon"
			}
			wantCode(t, grpcTrack(t, cc, tt.req), codes.InvalidArgument, field)
		})
	}
	raw := rawClient(t, cc)
	t.Run("garbage request", func(t *testing.T) {
		code, msg := raw(meshcastv1.RiderService_Watch_FullMethodName, []byte{0xff, 0xff, 0xff})
		if code != codes.InvalidArgument || !strings.Contains(msg, "request") {
			t.Fatalf("got %v %q, want INVALID_ARGUMENT naming the request", code, msg)
		}
	})
	t.Run("wrong message type", func(t *testing.T) {
		// A string where lat (a double) belongs.
		b := protowire.AppendTag(nil, 1, protowire.BytesType)
		b = protowire.AppendString(b, "north")
		code, _ := raw(meshcastv1.RiderService_Track_FullMethodName, b)
		if code != codes.InvalidArgument {
			t.Fatalf("got %v, want INVALID_ARGUMENT", code)
		}
	})
	t.Run("oversized request", func(t *testing.T) {
		req := proto.CloneOf(tokyo)
		for range 5000 {
			req.Classes = append(req.Classes, meshcastv1.VehicleClass_VEHICLE_CLASS_VAN)
		}
		r := grpcWatch(t, cc, req)
		wantCode(t, r, codes.ResourceExhausted, "")
	})
	t.Run("track without a request", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		st, err := meshcastv1.NewRiderServiceClient(cc).Track(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st.CloseSend()
		_, err = st.Recv()
		if code, msg := statusOf(err); code != codes.InvalidArgument || !strings.Contains(msg, "request") {
			t.Fatalf("got %v %q, want INVALID_ARGUMENT", code, msg)
		}
	})
	t.Run("track bad move", func(t *testing.T) {
		r := &tracked{rider: grpcTrack(t, cc, tokyo)}
		r.expect(t, "snapshot []")
		if err := r.move(&meshcastv1.WatchRequest{Lat: 35.6, Lon: 139.7, RadiusM: 9999}); err != nil {
			t.Fatal(err)
		}
		err := r.endError(t)
		if code, msg := statusOf(err); code != codes.InvalidArgument || !strings.Contains(msg, "radius_m") {
			t.Fatalf("got %v %q, want INVALID_ARGUMENT on radius_m", code, msg)
		}
	})
}

// bytesCodec sends and receives raw bytes (a client that can send anything).
type bytesCodec struct{}

func (bytesCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (bytesCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}
func (bytesCodec) Name() string { return "proto" }

// rawClient returns a function that opens a stream on method, sends msg as the request and
// returns the status the stream ends with.
func rawClient(t *testing.T, cc *grpc.ClientConn) func(method string, msg []byte) (codes.Code, string) {
	return func(method string, msg []byte) (codes.Code, string) {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
		st, err := cc.NewStream(ctx, desc, method, grpc.ForceCodecV2(bytesCodec{}))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.SendMsg(msg); err != nil {
			t.Fatal(err)
		}
		st.CloseSend()
		var out []byte
		err = st.RecvMsg(&out)
		if err == nil {
			t.Fatalf("%s: got a message %x, want an error", method, out)
		}
		return statusOf(err)
	}
}

// httpErrorOf checks an HTTP error answer: the status and the JSON body naming the field.
func httpErrorOf(t *testing.T, resp *http.Response, status int, code, field string) {
	t.Helper()
	if resp == nil {
		t.Fatal("no HTTP response")
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("HTTP %d %s, want %d", resp.StatusCode, b, status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	var e httpError
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("body %s: %v", b, err)
	}
	if e.Error.Code != code || !strings.Contains(e.Error.Message, field) {
		t.Fatalf("body %s, want code %s naming %q", b, code, field)
	}
}

func TestBadInputWebSocket(t *testing.T) {
	ts := badServer(t)
	ws := "ws://" + ts.addr + PathWebSocket
	for _, tt := range badRequests {
		t.Run("query/"+tt.name, func(t *testing.T) {
			c, resp, err := wsDial(t, ws+"?"+tt.query)
			if err == nil {
				c.CloseNow()
				t.Fatal("upgraded")
			}
			httpErrorOf(t, resp, 400, "invalid_argument", tt.field)
		})
	}
	for _, q := range []struct{ name, query, field string }{
		{"lat not a number", "lat=north&lon=139.7", "lat"},
		{"lat twice", "lat=35&lat=36&lon=139.7", "lat"},
		{"negative radius", "lat=35.6&lon=139.7&radius_m=-1", "radius_m"},
		{"min interval too long", "lat=35.6&lon=139.7&min_interval_ms=3600000", "min_interval_ms"},
	} {
		t.Run("query/"+q.name, func(t *testing.T) {
			_, resp, err := wsDial(t, ws+"?"+q.query)
			if err == nil {
				t.Fatal("upgraded")
			}
			httpErrorOf(t, resp, 400, "invalid_argument", q.field)
		})
	}
	t.Run("wrong subprotocol", func(t *testing.T) {
		_, resp, err := wsDial(t, ws+"?lat=35.68&lon=139.76", "meshcast.v2.json", "graphql-ws")
		if err == nil {
			t.Fatal("upgraded")
		}
		httpErrorOf(t, resp, 400, "invalid_argument", "subprotocol")
	})
	t.Run("foreign origin", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		_, resp, err := websocket.Dial(ctx, ws+"?lat=35.68&lon=139.76", &websocket.DialOptions{
			HTTPHeader: http.Header{"Origin": {"https://evil.example.net"}}})
		if err == nil {
			t.Fatal("upgraded")
		}
		httpErrorOf(t, resp, 403, "permission_denied", "origin")
	})
	t.Run("allowed origin", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		c, _, err := websocket.Dial(ctx, ws+"?lat=35.68&lon=139.76", &websocket.DialOptions{
			HTTPHeader: http.Header{"Origin": {"https://app.example.com"}}})
		if err != nil {
			t.Fatal(err)
		}
		c.CloseNow()
	})
	t.Run("not an upgrade", func(t *testing.T) {
		resp, err := http.Get(ts.base + PathWebSocket + "?lat=35.68&lon=139.76")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		httpErrorOf(t, resp, http.StatusUpgradeRequired, "invalid_argument", "upgrade")
	})

	// After the upgrade: what the client sends.
	frames := []struct {
		name   string
		typ    websocket.MessageType
		data   []byte
		code   websocket.StatusCode
		reason string
	}{
		{"binary frame", websocket.MessageBinary, []byte{1, 2, 3}, closePolicy, "binary"},
		{"garbage text", websocket.MessageText, []byte("hello"), closePolicy, "WatchRequest"},
		{"json of another shape", websocket.MessageText, []byte(`{"latitude":35}`), closePolicy, "WatchRequest"},
		{"invalid move", websocket.MessageText, []byte(`{"lat":91,"lon":139.7}`), closePolicy, "lat"},
		{"oversized frame", websocket.MessageText, []byte(`{"lat":35.6,"lon":139.7,"classes":[` + strings.Repeat(`"VEHICLE_CLASS_VAN",`, 300) + `"VEHICLE_CLASS_VAN"]}`), closePolicy, "over 4096 bytes"},
	}
	for _, f := range frames {
		for _, sub := range []string{SubprotocolJSON, SubprotocolProto} {
			t.Run(f.name+"/"+sub, func(t *testing.T) {
				r := &tracked{rider: wsRider(t, ts.base, tokyo, sub)}
				r.expect(t, "snapshot []")
				ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
				defer cancel()
				if err := r.send(ctx, f.typ, f.data); err != nil {
					t.Fatal(err)
				}
				end, ok := r.endError(t).(*wsEnd)
				if !ok || end.code != f.code || !strings.Contains(end.reason, f.reason) {
					t.Fatalf("ended with %v, want close %d naming %q", r.end, f.code, f.reason)
				}
			})
		}
	}
}

func TestBadInputSSE(t *testing.T) {
	ts := badServer(t)
	get := func(query string, h http.Header) *http.Response {
		req, _ := http.NewRequest("GET", ts.base+PathSSE+"?"+query, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for _, tt := range badRequests {
		t.Run(tt.name, func(t *testing.T) {
			httpErrorOf(t, get(tt.query, nil), 400, "invalid_argument", tt.field)
		})
	}
	t.Run("bad Last-Event-ID", func(t *testing.T) {
		httpErrorOf(t, get("lat=35.68&lon=139.76", http.Header{"Last-Event-Id": {"yesterday"}}), 400, "invalid_argument", "Last-Event-ID")
	})
	t.Run("bad lastEventId", func(t *testing.T) {
		httpErrorOf(t, get("lat=35.68&lon=139.76&lastEventId=-3", nil), 400, "invalid_argument", "lastEventId")
	})
	t.Run("foreign origin", func(t *testing.T) {
		httpErrorOf(t, get("lat=35.68&lon=139.76", http.Header{"Origin": {"https://evil.example.net"}}), 403, "permission_denied", "origin")
	})
	t.Run("POST", func(t *testing.T) {
		resp, err := http.Post(ts.base+PathSSE+"?lat=35.68&lon=139.76", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		httpErrorOf(t, resp, 405, "invalid_argument", "GET")
	})
	t.Run("unknown path", func(t *testing.T) {
		httpErrorOf(t, get("", nil), 400, "invalid_argument", "lat") // sanity: the path exists
		resp, err := http.Get(ts.base + "/v1/nothing")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		httpErrorOf(t, resp, 404, "not_found", "/v1/nothing")
	})
}

func TestBadInputGRPCWeb(t *testing.T) {
	ts := badServer(t)
	for _, tt := range badRequests {
		t.Run("text/"+tt.name, func(t *testing.T) {
			field := tt.field
			if tt.req.Lat == 0 {
				field = "lat,lon"
			}
			wantCode(t, webTextRider(t, ts.base, tt.req, nil), codes.InvalidArgument, field)
		})
		t.Run("websocket-track/"+tt.name, func(t *testing.T) {
			field := tt.field
			if tt.req.Lat == 0 {
				field = "lat,lon"
			}
			wantCode(t, webSocketTrack(t, ts.base, tt.req), codes.InvalidArgument, field)
		})
	}
	t.Run("text/garbage frame", func(t *testing.T) {
		wantCode(t, webTextRider(t, ts.base, nil, grpcWebFrame([]byte{0xff, 0xff})), codes.InvalidArgument, "request")
	})
	t.Run("node/lat out of range", func(t *testing.T) {
		desc := descriptorSet(t)
		wantCode(t, nodeWebRider(t, ts.base, desc, &meshcastv1.WatchRequest{Lat: 91, Lon: 139.7}), codes.InvalidArgument, "lat")
	})
	t.Run("cors preflight", func(t *testing.T) {
		for _, o := range []struct {
			origin  string
			allowed bool
		}{{"https://app.example.com", true}, {"https://evil.example.net", false}} {
			req, _ := http.NewRequest("OPTIONS", ts.base+meshcastv1.RiderService_Watch_FullMethodName, nil)
			req.Header.Set("Origin", o.origin)
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "content-type,x-grpc-web,x-user-agent")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := resp.Header.Get("Access-Control-Allow-Origin")
			if (got == o.origin) != o.allowed {
				t.Errorf("preflight from %s: Access-Control-Allow-Origin %q, allowed %v", o.origin, got, o.allowed)
			}
		}
	})
}
