package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestEdgeIsRegistered(t *testing.T) {
	var out bytes.Buffer
	err := dispatch(context.Background(), []string{"edge", "-help"}, &out, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("edge -help = %v, want flag.ErrHelp", err)
	}
	for _, c := range commands {
		if c.name == "edge" && !strings.Contains(c.summary, "one port") {
			t.Errorf("edge summary %q", c.summary)
		}
	}
}

func TestEdgeRejectsBadSettings(t *testing.T) {
	for _, args := range [][]string{
		{"-max-radius", "0", "-bus", "memory://"},
		{"-heartbeat", "fast"},
		{"-log-level", "chatty", "-bus", "memory://"},
	} {
		var out bytes.Buffer
		if err := dispatch(context.Background(), append([]string{"edge"}, args...), &out, &out); err == nil {
			t.Errorf("edge %q: no error", args)
		}
	}
}

func TestEdgeRefusesToStartWithoutAuth(t *testing.T) {
	var out bytes.Buffer
	err := dispatch(context.Background(), []string{"edge", "-bus", "memory://", "-listen", "127.0.0.1:0", "-admin", ""}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "-insecure-no-auth") {
		t.Fatalf("edge without auth: %v, want a refusal naming -insecure-no-auth", err)
	}
}
