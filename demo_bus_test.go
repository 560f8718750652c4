package main

import (
	"regexp"
	"testing"
	"time"
)

// TestDemoLogsItsBus: the demo's edge logs the bus it really uses (memory:// by default), not
// the edge command's default Redis address.
func TestDemoLogsItsBus(t *testing.T) {
	bin := buildMeshcast(t)
	p := startProc(t, bin, "demo", "-listen", "127.0.0.1:0", "-mqtt", "127.0.0.1:0", "-admin", "", "-taxis", "0", "-log-level", "info")
	bus := p.waitOutput(t, regexp.MustCompile(`msg="edge serving".* bus=(\S+)`), 60*time.Second)
	if bus != "memory://" {
		t.Fatalf("the demo's edge logs bus=%s, want memory://; output:\n%s", bus, p.output())
	}
	p.stop(t)
}
