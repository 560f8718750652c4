package redistest

import (
	"strconv"
	"testing"
)

func TestKeySlot(t *testing.T) {
	// Expected values from Redis' CLUSTER KEYSLOT (checked against the real server below too).
	tests := []struct {
		key  string
		slot int
	}{
		{"foo", 12182},
		{"123456789", 12739},
		{"{user1000}.following", 3443},
		{"{user1000}.followers", 3443},
		{"foo{}{bar}", 8363},    // empty first tag: whole key
		{"foo{{bar}}zap", 4015}, // tag is "{bar"
		{"foo{bar}{zap}", 5061}, // first tag only: "bar"
	}
	for _, tt := range tests {
		if got := KeySlot(tt.key); got != tt.slot {
			t.Errorf("KeySlot(%q) = %d, want %d", tt.key, got, tt.slot)
		}
	}
}

func TestSingle(t *testing.T) {
	s := StartSingle(t)
	if v, err := s.Do("SET", "k", "v"); err != nil || v != "OK" {
		t.Fatalf("SET = %v, %v", v, err)
	}
	if v, err := s.Do("GET", "k"); err != nil || v != "v" {
		t.Fatalf("GET = %v, %v", v, err)
	}
	if v, err := s.Do("GET", "missing"); err != nil || v != nil {
		t.Fatalf("GET missing = %v, %v", v, err)
	}
	if _, err := s.Do("NOSUCHCOMMAND"); err == nil {
		t.Fatal("unknown command: no error")
	}
	s.Kill()
	if s.Alive() {
		t.Fatal("alive after Kill")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Do("GET", "k"); err != nil || v != nil {
		t.Fatalf("GET after restart = %v, %v (want empty data set)", v, err)
	}
}

func TestClusterMigrateSlot(t *testing.T) {
	c := StartCluster(t, 3, 0)
	if got := len(c.Addrs()); got != 3 {
		t.Fatalf("Addrs: %d nodes, want 3", got)
	}
	masters, err := c.Masters()
	if err != nil || len(masters) != 3 {
		t.Fatalf("Masters = %v, %v", masters, err)
	}
	for _, key := range []string{"foo", "{user1000}.following", "x"} {
		v, err := masters[0].Do("CLUSTER", "KEYSLOT", key)
		if err != nil || v != int64(KeySlot(key)) {
			t.Fatalf("CLUSTER KEYSLOT %s = %v, %v; KeySlot = %d", key, v, err, KeySlot(key))
		}
	}
	const key = "{mig}k"
	slot := KeySlot(key)
	from, err := c.MasterForSlot(slot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := from.Do("SET", key, "v"); err != nil {
		t.Fatal(err)
	}
	to := masters[0]
	if to == from {
		to = masters[1]
	}
	if err := c.MigrateSlot(slot, to); err != nil {
		t.Fatal(err)
	}
	if got, err := c.MasterForSlot(slot); err != nil || got != to {
		t.Fatalf("after migration MasterForSlot(%d) = %v, %v; want %s", slot, got, err, to.Addr)
	}
	if v, err := to.Do("GET", key); err != nil || v != "v" {
		t.Fatalf("GET on new owner = %v, %v", v, err)
	}
	if _, err := from.Do("GET", key); err == nil {
		t.Fatal("GET on old owner: no MOVED error")
	}
	if got, want := c.URL(), "redis+cluster://"+c.Addrs()[0]; len(got) <= len(want) {
		t.Fatalf("URL = %q", got)
	}
}

func TestClusterKillMaster(t *testing.T) {
	c := StartCluster(t, 3, 1)
	if got := len(c.Nodes()); got != 6 {
		t.Fatalf("%d nodes, want 6", got)
	}
	slot := KeySlot("{kill}")
	m, err := c.MasterForSlot(slot)
	if err != nil {
		t.Fatal(err)
	}
	reps, err := c.Replicas(m)
	if err != nil || len(reps) != 1 {
		t.Fatalf("Replicas = %v, %v", reps, err)
	}
	nm, err := c.KillMaster(m)
	if err != nil {
		t.Fatal(err)
	}
	if nm != reps[0] {
		t.Fatalf("new master %s, want former replica %s", nm.Addr, reps[0].Addr)
	}
	if _, err := nm.Do("SET", "{kill}k", strconv.Itoa(slot)); err != nil {
		t.Fatalf("write to new master: %v", err)
	}
	if err := c.Restart(m); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(30e9); err != nil {
		t.Fatal(err)
	}
}
