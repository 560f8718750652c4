// Package testport hands out loopback TCP ports to the test harnesses that start real servers
// (core/mosquittotest, core/bus/redistest): ports this process has not handed out before and
// that were free on 127.0.0.1 when checked, in a range the caller picks (kept clear of the
// kernel's ephemeral range, so that outgoing connections do not take them before the server
// starts).
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

var (
	mu   sync.Mutex
	used = map[int]bool{}
)

// Free returns a port p in [lo, hi) that was not returned before in this process and such that p
// and p+off, for every offset, could be listened on just now (a server that also binds a second
// port, like Redis Cluster's bus port at port+10000, asks for it with an offset).
func Free(lo, hi int, offsets ...int) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	for range 200 {
		p := lo + rand.IntN(hi-lo)
		if used[p] || !canListen(p) {
			continue
		}
		ok := true
		for _, off := range offsets {
			ok = ok && canListen(p+off)
		}
		if !ok {
			continue
		}
		used[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("testport: no free loopback port in %d-%d (offsets %v)", lo, hi-1, offsets)
}

func canListen(p int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
