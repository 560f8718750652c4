package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/edge/session"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// goroutinesIn counts the goroutines whose stack has a frame of fn (e.g.
// "transport.(*directRider).run").
func goroutinesIn(fns ...string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		for _, fn := range fns {
			if strings.Contains(g, fn+"(") {
				count++
				break
			}
		}
	}
	return count
}

// writers counts the goroutines writing to a rider: a direct rider's own goroutine, a pump.
func writers() int {
	return goroutinesIn("transport.(*directRider).run", "transport.(*Server).pump")
}

// TestIdleDirectRiderHasNoWriterGoroutine: a WebSocket or SSE rider that keeps up has no writer
// goroutine once its snapshot is written, and gets its updates without one (written by the
// flusher after the write delay, or as soon as it runs without one): an idle WebSocket rider is
// coder/websocket's reader goroutine only, an idle SSE rider its socket reader only.
func TestIdleDirectRiderHasNoWriterGoroutine(t *testing.T) {
	for _, delay := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run(fmt.Sprintf("write-delay=%v", delay), func(t *testing.T) {
			b := bus.NewMemory(bus.Options{})
			t.Cleanup(func() { b.Close() })
			ts := startServer(t, b, nil, Options{Session: session.Options{WriteDelay: delay}})
			sc := &scenario{t: t, b: b, clk: new(clock), last: map[string]int64{}}
			centre := pt{35.681236, 139.767125}
			req := &meshcastv1.WatchRequest{Lat: centre.lat, Lon: centre.lon, RadiusM: 1000}
			rs := []*tracked{
				{rider: wsRider(t, ts.base, req, SubprotocolJSON)},
				{rider: wsRider(t, ts.base, req, SubprotocolProto)},
				{rider: wsRider(t, ts.base, req, SubprotocolJSON)},
				{rider: sseRider(t, ts.base, req)},
				{rider: sseRider(t, ts.base, req)},
			}
			t.Cleanup(func() {
				for _, r := range rs {
					r.close()
				}
			})
			expectAll(t, rs, "snapshot []")
			waitFor(t, func() bool { return writers() == 0 })
			if n := goroutinesIn("transport.readMoves"); n != 3 {
				t.Fatalf("%d WebSocket readers, want 3", n)
			}
			wsReadersWaitShallow(t, 3)
			if n := goroutinesIn("transport.readHangUp"); n != 2 {
				t.Fatalf("%d SSE readers, want 2", n)
			}
			for i, p := range []pt{{35.6800, 139.7670}, {35.6805, 139.7672}} {
				sc.fix("f/v1", p, 0)
				expectAll(t, rs, fmt.Sprintf("upsert f/v1@%.4f,%.4f %s", p.lat, p.lon, meshOf(t, p)))
				waitFor(t, func() bool { return writers() == 0 })
				t.Logf("update %d delivered, no writer goroutine after it", i+1)
			}
			// A move is read by coder/websocket's Reader; then the reader waits shallow again.
			if err := rs[0].move(&meshcastv1.WatchRequest{Lat: 34.7025, Lon: 135.4959, RadiusM: 1000}); err != nil {
				t.Fatal(err)
			}
			rs[0].expect(t, "snapshot []")
			waitFor(t, func() bool { return goroutinesIn("transport.(*readWait).waitReadable") == 3 })
			wsReadersWaitShallow(t, 3)
		})
	}
}

// wsReadersWaitShallow checks that n WebSocket readers wait for the socket to become readable
// (readWait.waitReadable), none inside coder/websocket's Reader, whose call chain grows a
// goroutine's stack: an idle rider's reader stays on a small stack. (The test's clients are
// coder/websocket readers too, so the server's are told apart by readMoves.)
func wsReadersWaitShallow(t *testing.T, n int) {
	t.Helper()
	readers := goroutinesIn("transport.readMoves")
	if got := goroutinesIn("transport.(*readWait).waitReadable"); got != n || readers != n {
		t.Fatalf("%d of %d WebSocket readers waiting for the socket, want %d of %d", got, readers, n, n)
	}
}

// TestWebSocketMoveSentWithTheUpgrade: a client that sends a move in the same write as its
// upgrade request (so net/http has read the move with the request when the connection is
// handed over) has it applied with nothing more sent: the bytes are passed on to
// coder/websocket, and the reader does not wait for the socket while they are unread. The move
// may be applied before the first snapshot is written (then there is one snapshot) or after
// (two): either way a snapshot of the new area, with its vehicle, arrives.
func TestWebSocketMoveSentWithTheUpgrade(t *testing.T) {
	b := bus.NewMemory(bus.Options{})
	t.Cleanup(func() { b.Close() })
	ts := startServer(t, b, nil, Options{})
	sc := &scenario{t: t, b: b, clk: new(clock), last: map[string]int64{}}
	sc.fix("f/osaka", pt{34.7025, 135.4959}, 0) // at the move's centre; none at the first area
	u, err := url.Parse(watchURL(ts.base, PathWebSocket, &meshcastv1.WatchRequest{Lat: 35.681236, Lon: 139.767125, RadiusM: 1000}, nil))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(waitLimit))
	move := []byte(`{"lat":34.7025,"lon":135.4959,"radiusM":1000}`)
	msg := []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\n" +
		"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	key := [4]byte{1, 2, 3, 4}
	msg = append(msg, 0x81, 0x80|byte(len(move)), key[0], key[1], key[2], key[3])
	for i, c := range move {
		msg = append(msg, c^key[i%4])
	}
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	var snaps []string
	for len(snaps) == 0 || !strings.Contains(snaps[len(snaps)-1], `"f/osaka"`) {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			t.Fatalf("after %d snapshots %q: %v", len(snaps), snaps, err)
		}
		n := int(h[1] & 0x7f)
		switch n {
		case 126:
			var l [2]byte
			io.ReadFull(br, l[:])
			n = int(binary.BigEndian.Uint16(l[:]))
		case 127:
			t.Fatalf("a %x frame longer than 64 KiB", h)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			t.Fatal(err)
		}
		if h[0] != 0x81 {
			t.Fatalf("frame %x %q, want a text frame", h, payload)
		}
		for ev := range strings.SplitSeq(string(payload), "\n") {
			if strings.Contains(ev, `"snapshot"`) {
				snaps = append(snaps, ev)
			}
		}
	}
	t.Logf("snapshots: %q", snaps)
}

// TestDirectWriteFallsBackWhenSocketFull: a WebSocket rider whose client stops reading fills its
// socket; the direct write that the socket cannot take whole leaves its rest to the rider's own
// goroutine (which waits for room, within the write timeout), and once the client reads again
// it gets every message whole and in order (contiguous seqs, well-formed frames: the client
// library checks them), each vehicle's latest position, and the rider goes back to having no
// writer goroutine. No send-buffer rule here (-send-buffer off): the socket itself is full.
func TestDirectWriteFallsBackWhenSocketFull(t *testing.T) {
	for _, delay := range []time.Duration{0, 20 * time.Millisecond} {
		for _, sub := range []string{SubprotocolJSON, SubprotocolProto} {
			t.Run(fmt.Sprintf("%s/write-delay=%v", sub, delay), func(t *testing.T) {
				testDirectFallback(t, sub, delay)
			})
		}
	}
}

func testDirectFallback(t *testing.T, sub string, delay time.Duration) {
	b := bus.NewMemory(bus.Options{})
	t.Cleanup(func() { b.Close() })
	ts := startServer(t, b, nil, Options{
		Session:      session.Options{WriteDelay: delay, QueueLimit: 1024},
		WriteTimeout: waitLimit,
		SendBuffer:   -1,
	})
	centre := pt{35.681236, 139.767125}
	req := &meshcastv1.WatchRequest{Lat: centre.lat, Lon: centre.lon, RadiusM: 1000}

	dialer := fixedRcvBufDialer()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c, _, err := websocket.Dial(ctx, watchURL(ts.base, PathWebSocket, req, nil), &websocket.DialOptions{
		Subprotocols: []string{sub},
		HTTPClient:   &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(-1)
	var seq uint64
	latest := map[string]string{}
	read := func() *meshcastv1.RiderEvent {
		t.Helper()
		typ, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		evs, err := splitWSMessage(typ, data, sub == SubprotocolProto)
		if err != nil {
			t.Fatalf("a message that does not decode: %v", err)
		}
		for _, ev := range evs {
			if ev.Seq != seq+1 {
				t.Fatalf("seq %d after %d", ev.Seq, seq)
			}
			seq = ev.Seq
			if u := ev.GetUpsert(); u != nil {
				latest[u.Id] = fmt.Sprintf("%.5f,%.5f", u.Lat, u.Lon)
			}
		}
		return evs[len(evs)-1]
	}
	if ev := read(); ev.GetSnapshot() == nil {
		t.Fatalf("first event %s, want the snapshot", logical(ev))
	}

	// The client stops reading until the socket is full, then reads again.
	want := fillSocket(t, &scenario{t: t, b: b, clk: new(clock), last: map[string]int64{}}, centre)
	readUntilLatest(func() { read() }, latest, want)
	waitFor(t, func() bool { return writers() == 0 })
}

// fixedRcvBufDialer dials with a fixed receive buffer (no autotuning), so the socket fills
// soon; not below the loopback MSS (64 KiB): smaller, the client's window updates wait for the
// zero-window probes' backoff (minutes), and the write timeout cuts the rider meanwhile.
func fixedRcvBufDialer() *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 128<<10)
		})
		if err != nil {
			return err
		}
		return serr
	}}
}

// fillSocket moves 200 vehicles around centre, round after round, while the rider's client does
// not read, until a direct write was left unfinished and the rider's goroutine waits to write
// the rest; then a last fix, f/mark, marks the end of what the client must get. It returns the
// latest position of every vehicle it moved, f/mark's among them.
func fillSocket(t *testing.T, sc *scenario, centre pt) map[string]string {
	t.Helper()
	want := map[string]string{}
	tails := directTails.Load()
	const n = 200
	for r := 0; ; r++ {
		if r == 100000 {
			t.Fatal("the socket never filled")
		}
		for i := range n {
			p := pt{centre.lat + float64((i+r)%50)*0.00005, centre.lon + float64(i%20)*0.0001}
			id := fmt.Sprintf("f/v%d", i)
			sc.fix(id, p, 0)
			want[id] = fmt.Sprintf("%.5f,%.5f", p.lat, p.lon)
		}
		if directTails.Load() > tails && goroutinesIn("transport.(*directRider).run") > 0 {
			t.Logf("socket full after %d rounds of %d vehicles", r+1, n)
			break
		}
	}
	mark := pt{centre.lat + 0.001, centre.lon}
	sc.fix("f/mark", mark, 0)
	want["f/mark"] = fmt.Sprintf("%.5f,%.5f", mark.lat, mark.lon)
	return want
}

// readUntilLatest reads (read records each upsert's position in latest) until the client has
// f/mark and then every vehicle's position in want: a vehicle's latest may come after the mark
// (a later batch).
func readUntilLatest(read func(), latest, want map[string]string) {
	for latest["f/mark"] == "" {
		read()
	}
	for id, p := range want {
		for latest[id] != p {
			read()
		}
	}
}

// TestDirectWritesOnlyOnPlainTCP: a WebSocket or SSE stream on a connection that transforms its
// bytes (HTTP/1.1 over TLS, as a server wrapped in TLS would accept it) is written through that
// connection, not straight to the TCP socket under it: the client reads its events through TLS.
func TestDirectWritesOnlyOnPlainTCP(t *testing.T) {
	b := bus.NewMemory(bus.Options{})
	t.Cleanup(func() { b.Close() })
	ts := startServer(t, b, nil, Options{Session: session.Options{WriteDelay: 10 * time.Millisecond}})
	h1 := httptest.NewUnstartedServer(ts.srv) // HTTP/1.1 only: no h2 offered
	h1.StartTLS()
	defer h1.Close()
	sc := &scenario{t: t, b: b, clk: new(clock), last: map[string]int64{}}
	centre := pt{35.681236, 139.767125}
	req := &meshcastv1.WatchRequest{Lat: centre.lat, Lon: centre.lon, RadiusM: 1000}

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(watchURL(h1.URL, PathWebSocket, req, nil), "https"),
		&websocket.DialOptions{HTTPClient: h1.Client(), Subprotocols: []string{SubprotocolJSON}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	resp, err := h1.Client().Get(watchURL(h1.URL, PathSSE, req, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 1 {
		t.Fatalf("SSE over %s, want HTTP/1.1", resp.Proto)
	}
	sse := &tracked{rider: newRider("sse-tls")}
	go func() { sse.finish(readSSE(resp.Body, sse.rider, func(string) {})) }()
	ws := &tracked{rider: newRider("ws-tls")}
	go func() {
		for {
			typ, data, err := c.Read(context.Background())
			if err != nil {
				ws.finish(err)
				return
			}
			evs, err := splitWSMessage(typ, data, false)
			if err != nil {
				ws.finish(err)
				return
			}
			for _, ev := range evs {
				ws.events <- ev
			}
		}
	}()
	rs := []*tracked{ws, sse}
	expectAll(t, rs, "snapshot []")
	p := pt{35.6800, 139.7670}
	sc.fix("f/v1", p, 0)
	expectAll(t, rs, fmt.Sprintf("upsert f/v1@%.4f,%.4f %s", p.lat, p.lon, meshOf(t, p)))
}

// TestFlusherQueueReusesTakenRoom: riders pushed while others are still queued go into the room
// of those taken, in order, instead of a bigger array (under a steady load the queue is seldom
// empty, where run resets it).
func TestFlusherQueueReusesTakenRoom(t *testing.T) {
	f := &flusher{wake: make(chan struct{}, 1)}
	rs := make([]*directRider, 12)
	for i := range rs {
		rs[i] = new(directRider)
	}
	for i, r := range rs[:8] {
		f.delay = 0
		if i >= 4 {
			f.delay = time.Hour
		}
		f.push(r)
	}
	c := cap(f.q)
	if got := f.take(nil, time.Now().Add(time.Minute)); len(got) != 4 || got[0].r != rs[0] || got[3].r != rs[3] {
		t.Fatalf("took %d entries, want the first 4", len(got))
	}
	for _, r := range rs[8:] {
		f.push(r)
	}
	if cap(f.q) != c {
		t.Errorf("queue capacity %d after taking 4 of %d and pushing 4, want %d", cap(f.q), c, c)
	}
	got := f.take(nil, time.Now().Add(2*time.Hour))
	if len(got) != 8 {
		t.Fatalf("took %d entries, want 8", len(got))
	}
	for i, e := range got {
		if e.r != rs[4+i] {
			t.Fatalf("entry %d is not rider %d: the order changed", i, 4+i)
		}
	}
}

// BenchmarkFlusherPush: pushing riders into a flusher's queue while it is taken from, as under
// a steady load: no allocation once the queue has its size.
func BenchmarkFlusherPush(b *testing.B) {
	f := &flusher{wake: make(chan struct{}, 1)}
	r := new(directRider)
	var due []flushEntry
	for i := 0; b.Loop(); i++ {
		f.push(r)
		if i%64 == 63 { // the flusher takes all but the last few
			due = f.take(due[:0], time.Now())
		}
	}
}

// BenchmarkTryWrite: one direct write of a 100-byte batch to a loopback socket whose reader
// keeps up: the system call and nothing on the heap.
func BenchmarkTryWrite(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, c)
		c.Close()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	w := newSockWriter(c, time.Second)
	p := make([]byte, 100)
	for b.Loop() {
		w.mu.Lock()
		if _, err := w.tryWrite(p); err != nil && err != errWouldBlock {
			b.Fatal(err)
		}
		w.mu.Unlock()
	}
}
