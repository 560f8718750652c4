package bridge

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/testwait"
)

// Packets written concurrently (each under Lock, in pieces, as paho does) arrive whole and
// complete, and Close flushes what is pending.
func TestBatchConnKeepsPacketsWhole(t *testing.T) {
	client, server := net.Pipe()
	bc := newBatchConn(client, 0)
	const writers, packets = 8, 200
	got := make(chan []byte, 1)
	go func() {
		data, _ := io.ReadAll(server)
		got <- data
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range packets {
				body := fmt.Sprintf("<%d:%d>", w, i)
				bc.Lock()
				for j := range len(body) { // one byte at a time: the pieces of one packet
					if _, err := bc.Write([]byte{body[j]}); err != nil {
						t.Error(err)
					}
				}
				bc.Unlock()
			}
		})
	}
	wg.Wait()
	if err := bc.Close(); err != nil {
		t.Fatal(err)
	}
	data := <-got
	seen := 0
	for _, p := range bytes.SplitAfter(data, []byte(">")) {
		if len(p) == 0 {
			continue
		}
		var w, i int
		if _, err := fmt.Sscanf(string(p), "<%d:%d>", &w, &i); err != nil {
			t.Fatalf("torn packet %q", p)
		}
		seen++
	}
	if seen != writers*packets {
		t.Fatalf("%d packets arrived, want %d", seen, writers*packets)
	}
}

func TestBatchConnReadsAndReportsWriteErrors(t *testing.T) {
	client, server := net.Pipe()
	bc := newBatchConn(client, 0)
	go server.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(bc, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v", buf, err)
	}
	server.Close()
	testwait.For(t, 10*time.Second, "a write to fail after the peer closed", func() bool {
		_, err := bc.Write([]byte("x"))
		return err != nil
	})
	bc.Close()
	if _, err := bc.Write([]byte("x")); err == nil {
		t.Fatal("write after Close succeeded")
	}
}

// chunkConn is a net.Conn whose Read returns everything sent to it so far in one call (waiting
// while there is nothing), and counts those calls: a socket's read system calls.
type chunkConn struct {
	net.Conn // nil: only Read is used
	mu       sync.Mutex
	cond     *sync.Cond
	data     []byte
	reads    int
}

func newChunkConn() *chunkConn {
	c := &chunkConn{}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *chunkConn) send(s string) {
	c.mu.Lock()
	c.data = append(c.data, s...)
	c.mu.Unlock()
	c.cond.Broadcast()
}

func (c *chunkConn) Close() error { return nil }

func (c *chunkConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.data) == 0 {
		c.cond.Wait()
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	c.reads++
	return n, nil
}

// With a read delay, a busy connection is read at most once per delay: a read that finds its
// buffer empty less than the delay after the socket's last data waits out the rest (here the
// messages sent meanwhile arrive) and then reads them all with one read of the socket; the first
// read after an idle period waits for nothing. Without a delay nothing waits.
func TestBatchConnCoalescesReads(t *testing.T) {
	for _, delay := range []time.Duration{0, time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			cc := newChunkConn()
			bc := newBatchConn(cc, delay)
			defer bc.Close()
			clock := time.Unix(1000, 0)
			bc.now = func() time.Time { return clock }
			var slept []time.Duration
			bc.sleep = func(d time.Duration) {
				slept = append(slept, d)
				cc.send("b") // two messages arrive while the reader waits
				cc.send("c")
				clock = clock.Add(d)
			}
			read := func(n int) string {
				t.Helper()
				buf := make([]byte, n)
				if _, err := io.ReadFull(bc, buf); err != nil {
					t.Fatal(err)
				}
				return string(buf)
			}
			cc.send("a")
			if got := read(1); got != "a" || cc.reads != 1 || len(slept) != 0 {
				t.Fatalf("first read: %q, %d socket reads, slept %v; want \"a\", 1, nothing (an idle connection is read at once)", got, cc.reads, slept)
			}
			clock = clock.Add(400 * time.Microsecond)
			if delay == 0 {
				cc.send("bc")
				if got := read(2); got != "bc" || len(slept) != 0 {
					t.Fatalf("without a delay: read %q, slept %v", got, slept)
				}
			} else {
				if got := read(2); got != "bc" || cc.reads != 2 || len(slept) != 1 || slept[0] != 600*time.Microsecond {
					t.Fatalf("busy read: %q, %d socket reads, slept %v; want \"bc\" in one read after waiting 600µs", got, cc.reads, slept)
				}
			}
			clock = clock.Add(5 * time.Millisecond) // idle again
			cc.send("d")
			if got := read(1); got != "d" || len(slept) > 1 {
				t.Fatalf("after an idle period: read %q, slept %v; want \"d\" at once", got, slept)
			}
		})
	}
}
