package config

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func newSet() (*flag.FlagSet, *string, *time.Duration) {
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("listen-addr", "127.0.0.1:8080", "address to listen on")
	ttl := fs.Duration("ttl", 10*time.Second, "fix lifetime")
	return fs, addr, ttl
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{
		"redis-url": "MESHCAST_REDIS_URL", "ttl": "MESHCAST_TTL", "admin.addr": "MESHCAST_ADMIN_ADDR",
	} {
		if got := EnvName(in); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseFlagBeatsEnvBeatsDefault(t *testing.T) {
	fs, addr, ttl := newSet()
	err := Parse(fs, []string{"-listen-addr", "127.0.0.1:9"}, env(map[string]string{
		"MESHCAST_LISTEN_ADDR": "127.0.0.1:1", "MESHCAST_TTL": "3s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if *addr != "127.0.0.1:9" {
		t.Errorf("flag should win over env, got %q", *addr)
	}
	if *ttl != 3*time.Second {
		t.Errorf("env should win over default, got %v", *ttl)
	}
}

func TestParseBadEnvNamesVariableAndFlag(t *testing.T) {
	fs, _, _ := newSet()
	err := Parse(fs, nil, env(map[string]string{"MESHCAST_TTL": "ten"}))
	if err == nil || !strings.Contains(err.Error(), "MESHCAST_TTL") || !strings.Contains(err.Error(), "-ttl") {
		t.Fatalf("want an error naming MESHCAST_TTL and -ttl, got %v", err)
	}
}

func TestUsageListsEnvAndDefault(t *testing.T) {
	fs, _, _ := newSet()
	var b bytes.Buffer
	Usage(&b, fs, "Serve riders.")
	for _, want := range []string{"Serve riders.", "-listen-addr", "MESHCAST_LISTEN_ADDR", `default "10s"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, b.String())
		}
	}
}
