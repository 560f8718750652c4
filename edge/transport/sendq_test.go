package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/meshcast/meshcast/edge/session"
)

// socketPair returns a connected server and client over loopback TCP, the client with a small
// receive buffer (so that a client that stops reading stops acknowledging soon).
func socketPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	client, err = d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return server, client
}

// TestSendQueue: a rider over the limit is held, not cut, while it acknowledges data, however
// slowly; one that acknowledges nothing for the timeout while over the limit is cut; under the
// limit the queue is probed only when what was written since the last probe could have taken it
// over the limit, not at every write.
func TestSendQueue(t *testing.T) {
	if !canMeasureSendQueue {
		t.Skip("the send queue is measured on Linux only; elsewhere the write timeout cuts")
	}
	const limit = 8 << 10
	ctx := context.Background()

	t.Run("stalled", func(t *testing.T) {
		server, _ := socketPair(t)
		q := newSendQueue(server, limit, 200*time.Millisecond)
		if q == nil {
			t.Fatal("no send queue for a TCP connection")
		}
		if err := q.wait(ctx, limit+1); err != nil {
			t.Fatalf("held before anything was written: %v", err)
		}
		go server.Write(make([]byte, 1<<20)) // blocks once the buffers are full; ends with server.Close
		waitFor(t, func() bool { n, _ := unackedBytes(q.rc); return n > limit })
		if err := q.wait(ctx, limit); !errors.Is(err, session.ErrTooSlow) {
			t.Fatalf("a client that reads nothing: wait = %v, want ErrTooSlow", err)
		}
	})

	t.Run("reading behind", func(t *testing.T) {
		server, client := socketPair(t)
		q := newSendQueue(server, limit, time.Second)
		const total = 256 << 10
		go server.Write(make([]byte, total))
		waitFor(t, func() bool { n, _ := unackedBytes(q.rc); return n > limit })
		read := make(chan error, 1)
		go func() { // slowly: 4 KiB every 10 ms
			buf := make([]byte, 4<<10)
			for got := 0; got < total; {
				n, err := io.ReadFull(client, buf[:min(len(buf), total-got)])
				if err != nil {
					read <- err
					return
				}
				got += n
				time.Sleep(10 * time.Millisecond) // the slow client's pace (not synchronisation)
			}
			read <- nil
		}()
		if err := q.wait(ctx, limit+1); err != nil {
			t.Fatalf("a client that reads, slowly: wait = %v, want it held until under the limit", err)
		}
		// What the probe that released the write saw (probing again here would race with the
		// writer above, which fills the room the client makes).
		if q.unacked > limit {
			t.Fatalf("wait returned with %d bytes unacknowledged, over the limit", q.unacked)
		}
		if err := <-read; err != nil {
			t.Fatal(err)
		}
	})

	t.Run("probes", func(t *testing.T) {
		server, _ := socketPair(t)
		q := newSendQueue(server, limit, time.Second)
		// 20 writes of 1,000 bytes to a client that acknowledges at once: a probe when the bytes
		// since the last one (none at first) could pass the limit: at the 9th and the 17th.
		for range 20 {
			if err := q.wait(ctx, 1000); err != nil {
				t.Fatal(err)
			}
		}
		if q.probes != 2 {
			t.Fatalf("%d probes for 20 writes of 1,000 bytes under a %d-byte limit, want 2", q.probes, limit)
		}
	})

	var nilQ *sendQueue
	server, _ := socketPair(t)
	if nilQ.wait(ctx, 1<<30) != nil || newSendQueue(server, 0, time.Second) != nil {
		t.Fatal("a nil or disabled send queue must never hold a write")
	}
}
