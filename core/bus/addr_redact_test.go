package bus

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestParseAddrErrorsHidePassword: every way an address with a password can be wrong gives an
// error that names the address without the password; a '/' in the password is part of it.
func TestParseAddrErrorsHidePassword(t *testing.T) {
	const pw = "s3cr3t/PW@x"
	for _, addr := range []string{
		"redis+cluster//:" + pw + "@h:1",    // no scheme separator
		"rediss://:" + pw + "@h:1",          // unknown scheme
		"redis+cluster://:" + pw + "@h:1/0", // cluster with a database
		"redis://:" + pw + "@h:1/zero",      // bad database
		"redis://:" + pw + "@h",             // no port
		"redis://:" + pw + "@h:99999",       // bad port
		"redis://:" + pw + "@h:1,h:2",       // two hosts, not a cluster
		"memory://:" + pw + "@",             // memory with something after the scheme
	} {
		_, err := parseAddr(addr)
		if err == nil {
			t.Errorf("parseAddr(%q) accepted", addr)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "PW@x") {
			t.Errorf("parseAddr error carries the password: %v", err)
		}
	}
	ep, err := parseAddr("redis://u:" + pw + "@h:1/3")
	if err != nil || ep.pwd != pw || ep.user != "u" || ep.db != 3 || ep.hosts[0] != "h:1" {
		t.Errorf("parseAddr with a '/' and '@' in the password = %+v, %v", ep, err)
	}
	// Open's errors wrap parseAddr's.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := Open(ctx, "redis://:"+pw+"@h", Options{}); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("Open error %v", err)
	}
}
