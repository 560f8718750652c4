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
	bc := newBatchConn(client)
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
	bc := newBatchConn(client)
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
