package transport

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/meshcast/meshcast/core/auth"
	"github.com/meshcast/meshcast/core/bus"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

var testSecret = []byte("transport-test-secret-0123456789abcdef")

// authenticator adapts a core/auth Verifier as the edge does.
func authenticator(v *auth.Verifier) Authenticator {
	return func(tok string) (Grant, error) {
		c, err := v.Verify(tok)
		if err != nil {
			return Grant{}, err
		}
		return Grant{Subject: c.Subject, MaxRadiusM: c.MaxRadiusM}, nil
	}
}

func newTestVerifier(t *testing.T) *auth.Verifier {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, testSecret, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := auth.New(auth.Config{KeyFile: p, Audience: "meshcast", Leeway: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func testToken(t *testing.T, key []byte, aud string, exp time.Time, maxRadius uint32) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, &auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "rider-7", Audience: jwt.ClaimStrings{aud}, ExpiresAt: jwt.NewNumericDate(exp)},
		MaxRadiusM:       maxRadius,
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// outcome is what a client got when it opened a stream: a first event, or a refusal.
type outcome struct {
	snapshot bool
	code     codes.Code // gRPC and gRPC-Web refusals
	status   int        // HTTP refusals
	errCode  string     // the JSON error code of an HTTP refusal
	msg      string
}

// openers open one Watch stream per transport with a bearer token ("": none) and report the
// first thing that came back.
var openers = map[string]func(t *testing.T, ts *testServer, req *meshcastv1.WatchRequest, tok string) outcome{
	"grpc": func(t *testing.T, ts *testServer, req *meshcastv1.WatchRequest, tok string) outcome {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if tok != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
		}
		st, err := meshcastv1.NewRiderServiceClient(dialGRPC(t, ts.addr)).Watch(ctx, req)
		if err == nil {
			var ev *meshcastv1.RiderEvent
			if ev, err = st.Recv(); err == nil {
				return outcome{snapshot: ev.GetSnapshot() != nil}
			}
		}
		s := status.Convert(err)
		return outcome{code: s.Code(), msg: s.Message()}
	},
	"grpc-web": func(t *testing.T, ts *testServer, req *meshcastv1.WatchRequest, tok string) outcome {
		msg, _ := proto.Marshal(req)
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		hr, _ := http.NewRequestWithContext(ctx, "POST", ts.base+meshcastv1.RiderService_Watch_FullMethodName,
			strings.NewReader(base64.StdEncoding.EncodeToString(grpcWebFrame(msg))))
		hr.Header.Set("Content-Type", "application/grpc-web-text")
		hr.Header.Set("X-Grpc-Web", "1")
		if tok != "" {
			hr.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if st := headerStatus(resp.Header); st != nil {
			return outcome{code: st.code, msg: st.msg}
		}
		flag, payload, err := webFrameReader{&base64Chunks{r: bufio.NewReader(resp.Body)}}.next()
		if err != nil {
			t.Fatalf("grpc-web: %v", err)
		}
		if flag&0x80 != 0 {
			var ws *webStatus
			errors.As(parseWebTrailers(payload), &ws)
			return outcome{code: ws.code, msg: ws.msg}
		}
		ev := new(meshcastv1.RiderEvent)
		if err := proto.Unmarshal(payload, ev); err != nil {
			t.Fatal(err)
		}
		return outcome{snapshot: ev.GetSnapshot() != nil}
	},
	"grpc-web-binary": func(t *testing.T, ts *testServer, req *meshcastv1.WatchRequest, tok string) outcome {
		// Binary over plain HTTP/1.1: the direct path (grpcweb.go).
		hdr := http.Header{}
		if tok != "" {
			hdr.Set("Authorization", "Bearer "+tok)
		}
		r, _ := webBinRider(t, ts.base, req, nil, hdr, nil)
		defer r.close()
		select {
		case ev := <-r.events:
			return outcome{snapshot: ev.GetSnapshot() != nil}
		case <-r.done:
			code, msg := statusOf(r.end)
			return outcome{code: code, msg: msg}
		case <-time.After(waitLimit):
			t.Fatal("grpc-web-binary: no answer")
		}
		return outcome{}
	},
	"grpc-web-websocket": func(t *testing.T, ts *testServer, req *meshcastv1.WatchRequest, tok string) outcome {
		// improbable's grpc-websockets transport (Track): the metadata travels in the first message.
		u := "ws" + strings.TrimPrefix(ts.base, "http") + meshcastv1.RiderService_Track_FullMethodName
		c, resp, err := wsDial(t, u, "grpc-websockets")
		if err != nil {
			t.Fatalf("dial grpc-websockets: %v (%v)", err, resp)
		}
		defer c.CloseNow()
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		hdr := "content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n"
		if tok != "" {
			hdr += "authorization: Bearer " + tok + "\r\n"
		}
		msg, _ := proto.Marshal(req)
		if err := c.Write(ctx, websocket.MessageBinary, []byte(hdr)); err != nil {
			t.Fatal(err)
		}
		if err := c.Write(ctx, websocket.MessageBinary, append([]byte{0}, grpcWebFrame(msg)...)); err != nil {
			t.Fatal(err)
		}
		fr := webFrameReader{&wsStream{c: c}}
		for {
			flag, payload, err := fr.next()
			if err != nil {
				t.Fatalf("grpc-websockets: %v", err)
			}
			if flag&0x80 != 0 {
				if h := http.Header(mustMIME(payload)); h.Get("Grpc-Status") == "" {
					continue // the response headers
				}
				var ws *webStatus
				errors.As(parseWebTrailers(payload), &ws)
				return outcome{code: ws.code, msg: ws.msg}
			}
			ev := new(meshcastv1.RiderEvent)
			if err := proto.Unmarshal(payload, ev); err != nil {
				t.Fatal(err)
			}
			return outcome{snapshot: ev.GetSnapshot() != nil}
		}
	},
	"ws": func(t *testing.T, ts *testServer, req *meshcastv1.WatchRequest, tok string) outcome {
		extra := url.Values{}
		if tok != "" {
			extra.Set("access_token", tok) // browsers cannot set headers on a WebSocket
		}
		c, resp, err := wsDial(t, watchURL(ts.base, PathWebSocket, req, extra))
		if err != nil {
			return httpOutcome(t, resp)
		}
		defer c.CloseNow()
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("ws read: %v", err)
		}
		evs, err := splitWSMessage(websocket.MessageText, data, false)
		if err != nil {
			t.Fatal(err)
		}
		return outcome{snapshot: evs[0].GetSnapshot() != nil}
	},
	"sse": func(t *testing.T, ts *testServer, req *meshcastv1.WatchRequest, tok string) outcome {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		hr, _ := http.NewRequestWithContext(ctx, "GET", watchURL(ts.base, PathSSE, req, nil), nil)
		if tok != "" {
			hr.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return httpOutcome(t, resp)
		}
		r := newRider("sse")
		go readSSE(resp.Body, r, func(string) {})
		select {
		case ev := <-r.events:
			return outcome{snapshot: ev.GetSnapshot() != nil}
		case <-ctx.Done():
			t.Fatal("sse: no event")
		}
		return outcome{}
	},
}

// httpOutcome reads a refused HTTP request's JSON error.
func httpOutcome(t *testing.T, resp *http.Response) outcome {
	t.Helper()
	if resp == nil {
		t.Fatal("no HTTP answer")
	}
	b, _ := io.ReadAll(resp.Body)
	var e httpError
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("HTTP %d body %q: %v", resp.StatusCode, b, err)
	}
	return outcome{status: resp.StatusCode, errCode: e.Error.Code, msg: e.Error.Message}
}

// TestAuthMatrix: on every transport, only a valid token opens a stream; no token, an expired
// one, a wrong signature or a wrong audience get UNAUTHENTICATED (gRPC, gRPC-Web) or HTTP 401
// {"error":{"code":"unauthenticated"}} before any upgrade.
func TestAuthMatrix(t *testing.T) {
	ts := startServer(t, bus.NewMemory(bus.Options{}), nil, Options{Authenticate: authenticator(newTestVerifier(t))})
	req := &meshcastv1.WatchRequest{Lat: 35.68, Lon: 139.76}
	hour := time.Now().Add(time.Hour)
	tokens := []struct {
		name, tok, msg string
	}{
		{"no token", "", "missing bearer token"},
		{"expired", testToken(t, testSecret, "meshcast", time.Now().Add(-time.Hour), 0), "token is expired"},
		{"wrong signature", testToken(t, []byte("another-secret-of-enough-length-0123456789"), "meshcast", hour, 0), "signature is invalid"},
		{"wrong audience", testToken(t, testSecret, "someone-else", hour, 0), "invalid audience"},
		{"valid", testToken(t, testSecret, "meshcast", hour, 0), ""},
	}
	for name, open := range openers {
		for _, tc := range tokens {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				got := open(t, ts, req, tc.tok)
				switch {
				case tc.msg == "":
					if !got.snapshot {
						t.Fatalf("valid token: %+v, want a Snapshot", got)
					}
				case strings.HasPrefix(name, "grpc"):
					if got.code != codes.Unauthenticated || !strings.Contains(got.msg, tc.msg) {
						t.Fatalf("got %+v, want UNAUTHENTICATED containing %q", got, tc.msg)
					}
				default:
					if got.status != http.StatusUnauthorized || got.errCode != "unauthenticated" || !strings.Contains(got.msg, tc.msg) {
						t.Fatalf("got %+v, want HTTP 401 unauthenticated containing %q", got, tc.msg)
					}
				}
			})
		}
	}
}

// TestTokenRadiusLimit: mc_max_radius_m lowers the largest radius the rider may ask for.
func TestTokenRadiusLimit(t *testing.T) {
	ts := startServer(t, bus.NewMemory(bus.Options{}), nil, Options{Authenticate: authenticator(newTestVerifier(t))})
	tok := testToken(t, testSecret, "meshcast", time.Now().Add(time.Hour), 500)
	for _, tc := range []struct {
		radius uint32
		ok     bool
	}{{500, true}, {0, true}, {501, false}} {
		got := openers["grpc"](t, ts, &meshcastv1.WatchRequest{Lat: 35.68, Lon: 139.76, RadiusM: tc.radius}, tok)
		if tc.ok != got.snapshot || (!tc.ok && got.code != codes.InvalidArgument) {
			t.Errorf("radius %d with mc_max_radius_m 500: %+v", tc.radius, got)
		}
		got = openers["ws"](t, ts, &meshcastv1.WatchRequest{Lat: 35.68, Lon: 139.76, RadiusM: tc.radius}, tok)
		if tc.ok != got.snapshot || (!tc.ok && got.status != http.StatusBadRequest) {
			t.Errorf("ws radius %d with mc_max_radius_m 500: %+v", tc.radius, got)
		}
	}
}
