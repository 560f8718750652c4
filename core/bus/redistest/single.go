package redistest

import (
	"os"
	"testing"
	"time"
)

// SingleOptions configures [StartSingleWith].
type SingleOptions struct {
	StartTimeout time.Duration // default 30s
	Dir          string        // default: a new temporary directory that Stop removes
	ServerBin    string        // default "redis-server"
	ExtraArgs    []string      // appended to the redis-server command line
}

// Single is one standalone redis-server process.
type Single struct {
	*Node
	dir    string
	ownDir bool
}

// StartSingle starts a standalone server for a test or benchmark, fails tb if that does not work,
// and kills it in tb.Cleanup (logging its log tail if the test failed).
func StartSingle(tb testing.TB) *Single {
	tb.Helper()
	s, err := StartSingleWith(SingleOptions{Dir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("start redis: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("redis %s log tail:\n%s", s.Addr, s.LogTail(30))
		}
		s.Stop()
	})
	return s
}

// StartSingleWith starts a standalone server and waits until it answers PING. The caller must call
// Stop (TestMain form).
func StartSingleWith(o SingleOptions) (*Single, error) {
	if o.StartTimeout == 0 {
		o.StartTimeout = 30 * time.Second
	}
	if o.ServerBin == "" {
		o.ServerBin = "redis-server"
	}
	s := &Single{dir: o.Dir}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "redistest-single-")
		if err != nil {
			return nil, err
		}
		s.dir, s.ownDir = d, true
	}
	n, err := newNode(o.ServerBin, s.dir, func(int) []string { return o.ExtraArgs })
	if err != nil {
		s.Stop()
		return nil, err
	}
	s.Node = n
	if err := n.start(); err != nil {
		s.Stop()
		return nil, err
	}
	if err := n.waitPing(time.Now().Add(o.StartTimeout)); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// URL returns "redis://127.0.0.1:port".
func (s *Single) URL() string { return "redis://" + s.Addr }

// Restart starts the server again (after Kill) on the same port, with an empty data set.
func (s *Single) Restart() error {
	if err := s.start(); err != nil {
		return err
	}
	return s.waitPing(time.Now().Add(30 * time.Second))
}

// Stop kills the server and removes the directory if the harness created it.
func (s *Single) Stop() {
	if s.Node != nil {
		s.Kill()
	}
	if s.ownDir {
		os.RemoveAll(s.dir)
	}
}
