package testport

import (
	"net"
	"strconv"
	"testing"
)

// TestFree: ports are in range, never handed out twice, and free together with their offsets.
func TestFree(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p, err := Free(7100, 7200, 50) // a range no harness uses
		if err != nil {
			t.Fatal(err)
		}
		if p < 7100 || p >= 7200 || seen[p] {
			t.Fatalf("port %d: out of range or handed out twice", p)
		}
		seen[p] = true
		for _, q := range []int{p, p + 50} {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				t.Fatalf("port %d not free: %v", q, err)
			}
			l.Close()
		}
	}
	// A port that is taken is never handed out.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	if _, err := Free(taken, taken+1); err == nil {
		t.Fatalf("port %d is in use but was handed out", taken)
	}
}
