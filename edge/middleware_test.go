package edge

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/meshcast/meshcast/core/ops"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/protobuf/proto"
)

// TestGRPCWebThroughMiddleware: with the operations middleware in front (request id, access
// log, metrics, recovery), a gRPC-Web call still streams (the middleware keeps Flush) and the
// response carries the request id.
func TestGRPCWebThroughMiddleware(t *testing.T) {
	c := Defaults()
	c.DrainWindow = 100 * time.Millisecond
	e := startEdge(t, c)
	msg, _ := proto.Marshal(&meshcastv1.WatchRequest{Lat: 35.68, Lon: 139.76})
	frame := append([]byte{0, 0, 0, 0, 0}, msg...)
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+e.listen+meshcastv1.RiderService_Watch_FullMethodName,
		strings.NewReader(base64.StdEncoding.EncodeToString(frame)))
	req.Header.Set("Content-Type", "application/grpc-web-text")
	req.Header.Set("X-Grpc-Web", "1")
	req.Header.Set(ops.RequestIDHeader, "web-42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get(ops.RequestIDHeader) != "web-42" {
		t.Fatalf("HTTP %d, request id %q", resp.StatusCode, resp.Header.Get(ops.RequestIDHeader))
	}
	// The first frame (base64 of 5 header bytes + the Snapshot event) arrives while the stream
	// stays open: 8 base64 characters decode the header.
	head := make([]byte, 8)
	if _, err := io.ReadFull(bufio.NewReader(resp.Body), head); err != nil {
		t.Fatalf("first frame: %v", err)
	}
	b, err := base64.StdEncoding.DecodeString(string(head))
	if err != nil || b[0] != 0 {
		t.Fatalf("first frame header %q: %v", head, err)
	}
}

// TestRunWithAuth: -auth-key-file turns auth on for every rider: 401 without a token, a stream
// with a valid one (access_token), and a new key file is picked up without a restart.
func TestRunWithAuth(t *testing.T) {
	secret := []byte("edge-test-secret-0123456789abcdef-0123")
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	c.AuthKeyFile, c.AuthAudience, c.DrainWindow = p, "meshcast", 100*time.Millisecond
	e := startEdge(t, c)
	token := func(key []byte) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
			Audience: jwt.ClaimStrings{"meshcast"}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	status := func(tok string) int {
		u := "http://" + e.listen + "/v1/sse" + riderQuery
		if tok != "" {
			u += "&access_token=" + tok
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(""); got != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", got)
	}
	if got := status(token(secret)); got != http.StatusOK {
		t.Errorf("valid token: %d, want 200", got)
	}
	newSecret := []byte(strings.Repeat("k", 40))
	if err := os.WriteFile(p, newSecret, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(p, time.Now().Add(time.Second), time.Now().Add(time.Second))
	waitFor(t, 20*time.Second, "the new key to be accepted", func() bool { return status(token(newSecret)) == http.StatusOK })
}
