package bus_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/bus/redistest"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

// shared holds the Redis servers shared by the conformance tests (started on first use; the fault
// tests start their own).
var shared struct {
	once    sync.Once
	single  *redistest.Single
	cluster *redistest.Cluster
	err     error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.single != nil {
		shared.single.Stop()
	}
	if shared.cluster != nil {
		shared.cluster.Stop()
	}
	os.Exit(code)
}

func sharedRedis(t testing.TB) (*redistest.Single, *redistest.Cluster) {
	t.Helper()
	shared.once.Do(func() {
		if shared.single, shared.err = redistest.StartSingleWith(redistest.SingleOptions{}); shared.err != nil {
			return
		}
		shared.cluster, shared.err = redistest.StartClusterWith(redistest.ClusterOptions{Masters: 3})
	})
	if shared.err != nil {
		t.Fatalf("start shared redis: %v", shared.err)
	}
	return shared.single, shared.cluster
}

// openRedis opens a bus on url and closes it when the test ends.
func openRedis(t testing.TB, url string, o bus.Options) bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func shardSubscribers(t *testing.T, n *redistest.Node, channel string) int64 {
	t.Helper()
	v, err := n.Do("PUBSUB", "SHARDNUMSUB", channel)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := v.([]any)
	if len(a) != 2 {
		t.Fatalf("PUBSUB SHARDNUMSUB %s = %v", channel, v)
	}
	return a[1].(int64)
}

func TestRedisConformance(t *testing.T) {
	single, cluster := sharedRedis(t)
	t.Run("Single", func(t *testing.T) {
		conformance(t, backend{
			open: func(t *testing.T, o bus.Options) bus.Bus { return openRedis(t, single.URL(), o) },
			serverSubscribers: func(t *testing.T, ch string) int64 {
				return shardSubscribers(t, single.Node, ch)
			},
		})
	})
	// The same with every bus sending its calls in rounds (Options.BatchDelay).
	t.Run("SingleRounds", func(t *testing.T) {
		conformance(t, backend{
			open: func(t *testing.T, o bus.Options) bus.Bus {
				o.BatchDelay = time.Millisecond
				return openRedis(t, single.URL(), o)
			},
			serverSubscribers: func(t *testing.T, ch string) int64 {
				return shardSubscribers(t, single.Node, ch)
			},
		})
	})
	// And with early rounds (Options.BatchEarly): a round opens once every Apply waits in a bucket.
	t.Run("SingleEarly", func(t *testing.T) {
		conformance(t, backend{
			open: func(t *testing.T, o bus.Options) bus.Bus {
				o.BatchDelay, o.BatchEarly = time.Millisecond, true
				return openRedis(t, single.URL(), o)
			},
			serverSubscribers: func(t *testing.T, ch string) int64 {
				return shardSubscribers(t, single.Node, ch)
			},
		})
	})
	clusterBackend := func(delay time.Duration, early bool) backend {
		return backend{
			open: func(t *testing.T, o bus.Options) bus.Bus {
				o.BatchDelay, o.BatchEarly = delay, early
				return openRedis(t, cluster.URL(), o)
			},
			masters: func(t *testing.T, chans []string) int {
				seen := map[string]bool{}
				for _, ch := range chans {
					m, err := cluster.MasterForSlot(redistest.KeySlot(ch))
					if err != nil {
						t.Fatal(err)
					}
					seen[m.ID] = true
				}
				return len(seen)
			},
			serverSubscribers: func(t *testing.T, ch string) int64 {
				m, err := cluster.MasterForSlot(redistest.KeySlot(ch))
				if err != nil {
					t.Fatal(err)
				}
				return shardSubscribers(t, m, ch)
			},
		}
	}
	t.Run("Cluster", func(t *testing.T) { conformance(t, clusterBackend(0, false)) })
	t.Run("ClusterRounds", func(t *testing.T) { conformance(t, clusterBackend(time.Millisecond, false)) })
	t.Run("ClusterEarly", func(t *testing.T) { conformance(t, clusterBackend(time.Millisecond, true)) })
}

// TestRedisKeys checks the key schema and that nobody needs to clean up: old entries and
// tombstones are trimmed by the scripts, and every key has an expiry.
func TestRedisKeys(t *testing.T) {
	single, _ := sharedRedis(t)
	ctx := context.Background()
	clk := newClock(1_700_000_000_000)
	o := clk.options(bus.Options{TTL: 10 * time.Second, StateTTL: time.Minute, KeyPrefix: uniquePrefix()})
	b := openRedis(t, single.URL(), o)
	do := func(args ...string) any {
		t.Helper()
		v, err := single.Do(args...)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	p := o.KeyPrefix
	veh := meshKey(p, mA, "veh")
	t0 := clk.Ms()
	for _, u := range []bus.Update{upd("f/1", mA, t0), upd("f/2", mA, t0), upd("f/2", mB, t0+1)} {
		if _, err := b.Apply(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	// f/1 live, f/2 a tombstone.
	if n := do("HLEN", veh); n != int64(2) {
		t.Fatalf("HLEN %s = %v, want 2 (one vehicle, one tombstone)", veh, n)
	}
	if v := do("HGET", veh, "f/2"); v != fmt.Sprintf("%d|", t0+1) {
		t.Fatalf("tombstone of f/2 = %q, want %q", v, fmt.Sprintf("%d|", t0+1))
	}
	if v := do("HGET", veh, "f/1").(string); len(v) < 15 || v[:14] != fmt.Sprintf("%d|", t0) {
		t.Fatalf("entry of f/1 = %q", v)
	}
	if ms := do("PTTL", veh).(int64); ms <= 0 || ms > 2*o.TTL.Milliseconds() {
		t.Fatalf("PTTL %s = %d, want (0, %d]", veh, ms, 2*o.TTL.Milliseconds())
	}
	state := vehicleKey(p, "f/2")
	// ts, mesh, dispatchable, and the state before (in A, dispatchable).
	if got, want := do("GET", state), fmt.Sprintf("%d,%s,1,%s,1", t0+1, mB, mA); got != want {
		t.Fatalf("state of f/2 = %q, want %q", got, want)
	}
	if ms := do("PTTL", state).(int64); ms <= 0 || ms > time.Minute.Milliseconds() {
		t.Fatalf("PTTL %s = %d", state, ms)
	}
	// After the TTL a snapshot read trims the old entry and the tombstone.
	clk.Advance(o.TTL + time.Millisecond)
	if _, err := b.Apply(ctx, upd("f/3", mA, clk.Ms())); err != nil {
		t.Fatal(err)
	}
	if vs, err := b.Snapshot(ctx, mA); err != nil || len(vs) != 1 || vs[0].Id != "f/3" {
		t.Fatalf("Snapshot = %v, %v", vs, err)
	}
	if n := do("HLEN", veh); n != int64(1) {
		t.Fatalf("HLEN %s after the TTL and a snapshot = %v, want 1", veh, n)
	}
	// Writes trim too (one in trimEvery on average): leftovers of vehicles that stopped
	// reporting disappear while other vehicles keep writing, without any snapshot read.
	for i := range 20 {
		if _, err := b.Apply(ctx, upd(fmt.Sprintf("f/gone%d", i), mA, clk.Ms())); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(o.TTL)
	for i := 0; do("HLEN", veh) != int64(1); i++ {
		if i == 10000 {
			t.Fatalf("HLEN %s = %v after %d writes, want 1", veh, do("HLEN", veh), i)
		}
		if _, err := b.Apply(ctx, upd("f/busy", mA, clk.Ms()+int64(i))); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	single, _ := sharedRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bad := []string{
		"",
		"localhost:6379",
		"http://localhost:6379",
		"memory://x",
		"redis://",
		"redis://localhost",
		"redis://localhost:0",
		"redis://localhost:99999",
		"redis://a:1,b:2",
		"redis://localhost:6379/x",
		"redis+cluster://a:1,b:2/0",
		"redis+cluster://a:1,",
		"redis+cluster://" + single.Addr, // not a cluster
	}
	for _, addr := range bad {
		if b, err := bus.Open(ctx, addr, bus.Options{}); err == nil {
			b.Close()
			t.Errorf("Open(%q): no error", addr)
		}
	}
	b, err := bus.Open(ctx, single.URL()+"/3", bus.Options{})
	if err != nil {
		t.Fatalf("Open with db: %v", err)
	}
	b.Close()
}

// counter returns the value of a counter in reg with the given label value (or the sum of all).
func counter(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if label == "" || l.GetValue() == label {
					sum += m.GetCounter().GetValue()
				}
			}
			if len(m.GetLabel()) == 0 {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// faultSetup opens a bus with its own registry on url, subscribed to mA, and checks delivery. It
// also returns a second bus on the same namespace that sends its calls in rounds
// (Options.BatchDelay), for the tests to apply through as well.
func faultSetup(t *testing.T, url string) (bus.Bus, bus.Bus, *recorder, bus.Subscription, *prometheus.Registry, *clock) {
	t.Helper()
	reg := prometheus.NewRegistry()
	clk := newClock(time.Now().UnixMilli())
	prefix := uniquePrefix()
	b := openRedis(t, url, bus.Options{Registerer: reg, KeyPrefix: prefix, Now: clk.Now})
	rb := openRedis(t, url, bus.Options{KeyPrefix: prefix, Now: clk.Now, BatchDelay: time.Millisecond})
	r := newRecorder()
	s, err := b.Subscribe(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(context.Background(), mA); err != nil {
		t.Fatal(err)
	}
	deliver(t, b, r, clk)
	deliver(t, rb, r, clk)
	return b, rb, r, s, reg, clk
}

// deliver applies a new fix of f/v in mA, retrying until the bus accepts it, and then requires it
// to arrive at r.
func deliver(t *testing.T, b bus.Bus, r *recorder, clk *clock) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		clk.Advance(time.Millisecond)
		ts := clk.Ms()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := b.Apply(ctx, upd("f/v", mA, ts))
		cancel()
		if err == nil {
			r.waitFor(t, fmt.Sprintf("delivery of the fix at %d", ts), func() bool { return r.has(mA, "f/v", ts) })
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Apply not accepted within %v: %v", waitTimeout, err)
		}
		t.Logf("Apply not accepted yet: %v", err)
	}
}

// TestClusterSlotMigration moves the slot of a subscribed mesh to another master: Redis ends the
// subscription, the bus subscribes again at the new owner, calls OnResync, counts it, and
// delivers what is published afterwards.
func TestClusterSlotMigration(t *testing.T) {
	c := redistest.StartCluster(t, 3, 0)
	ignore := goleak.IgnoreCurrent()
	b, rb, r, s, reg, clk := faultSetup(t, c.URL())
	slot := redistest.KeySlot(bus.MeshHashTag(mA))
	from, err := c.MasterForSlot(slot)
	if err != nil {
		t.Fatal(err)
	}
	masters, err := c.Masters()
	if err != nil {
		t.Fatal(err)
	}
	to := masters[0]
	if to == from {
		to = masters[1]
	}
	if err := c.MigrateSlot(slot, to); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "OnResync after the migration", func() bool { return r.resyncCount(mA) >= 1 })
	deliver(t, b, r, clk)
	deliver(t, rb, r, clk) // its rounds follow the slot too
	if n := counter(t, reg, "meshcast_bus_resubscriptions_total", "slot_moved"); n < 1 {
		t.Fatalf("resubscriptions{reason=slot_moved} = %v, want >= 1", n)
	}
	// The mesh keys moved with the slot: the snapshot is intact.
	vs, err := b.Snapshot(context.Background(), mA)
	if err != nil || len(vs) != 1 || vs[0].Id != "f/v" {
		t.Fatalf("Snapshot after migration = %v, %v", vs, err)
	}
	s.Close()
	b.Close()
	rb.Close()
	verifyNoLeaks(t, ignore)
}

// TestClusterFailover kills the master of a subscribed mesh's slot in a 3+3 cluster: the
// subscription comes back on the promoted replica, OnResync is called, and messages published
// after recovery arrive.
func TestClusterFailover(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	ignore := goleak.IgnoreCurrent()
	b, rb, r, s, reg, clk := faultSetup(t, c.URL())
	m, err := c.MasterForSlot(redistest.KeySlot(bus.MeshHashTag(mA)))
	if err != nil {
		t.Fatal(err)
	}
	nm, err := c.KillMaster(m)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %s, %s took over", m.Addr, nm.Addr)
	r.waitFor(t, "OnResync after the failover", func() bool { return r.resyncCount(mA) >= 1 })
	deliver(t, b, r, clk)
	deliver(t, rb, r, clk)
	if n := counter(t, reg, "meshcast_bus_resubscriptions_total", ""); n < 1 {
		t.Fatalf("resubscriptions = %v, want >= 1", n)
	}
	s.Close()
	b.Close()
	rb.Close()
	verifyNoLeaks(t, ignore)
}

// TestSingleReconnect drops the subscription connection of a standalone Redis.
func TestSingleReconnect(t *testing.T) {
	single := redistest.StartSingle(t)
	ignore := goleak.IgnoreCurrent()
	b, rb, r, s, reg, clk := faultSetup(t, single.URL())
	if _, err := single.Do("CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "OnResync after the reconnect", func() bool { return r.resyncCount(mA) >= 1 })
	deliver(t, b, r, clk)
	deliver(t, rb, r, clk)
	if n := counter(t, reg, "meshcast_bus_resubscriptions_total", "reconnect"); n < 1 {
		t.Fatalf("resubscriptions{reason=reconnect} = %v, want >= 1", n)
	}
	s.Close()
	b.Close()
	rb.Close()
	verifyNoLeaks(t, ignore)
}

// TestRedisReplayCompletesLostWrites simulates a bridge that died after the vehicle state was
// updated but before the mesh writes of a move: the redelivered fix is a duplicate (not applied
// again) but replays the transition, so the removal on A and the upsert on B are published.
func TestRedisReplayCompletesLostWrites(t *testing.T) {
	single, _ := sharedRedis(t)
	ctx := context.Background()
	clk := newClock(1_700_000_000_000)
	o := clk.options(bus.Options{KeyPrefix: uniquePrefix()})
	b := openRedis(t, single.URL(), o)
	r := newRecorder()
	s, err := b.Subscribe(r)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Add(ctx, mA, mB); err != nil {
		t.Fatal(err)
	}
	t0 := clk.Ms()
	if res, err := b.Apply(ctx, upd("f/v", mA, t0)); err != nil || res.Events != 1 {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	// The lost attempt: only the compare-and-set of the fix at t0+1 in B happened.
	state := vehicleKey(o.KeyPrefix, "f/v")
	if _, err := single.Do("SET", state, fmt.Sprintf("%d,%s,1,%s,1", t0+1, mB, mA), "PX", "60000"); err != nil {
		t.Fatal(err)
	}
	res, err := b.Apply(ctx, upd("f/v", mB, t0+1))
	if err != nil || res != (bus.Result{Applied: false, Events: 2}) {
		t.Fatalf("redelivered Apply = %+v, %v; want not applied with 2 events", res, err)
	}
	r.waitFor(t, "the replayed move", func() bool { return r.has(mA, "f/v", t0+1) && r.has(mB, "f/v", t0+1) })
	// A second redelivery finds everything done.
	if res, err := b.Apply(ctx, upd("f/v", mB, t0+1)); err != nil || res != (bus.Result{}) {
		t.Fatalf("second redelivery = %+v, %v; want nothing", res, err)
	}
}

// verifyNoLeaks fails the test if goroutines started since ignore was taken are still running
// after a grace period: after a topology change rueidis keeps a few goroutines for a bounded time
// past Close (a refresh delayed by up to 1s, old connections closed 5s after they left the
// topology), so the check waits for the set to drain; a leaked goroutine of the bus never would.
func verifyNoLeaks(t *testing.T, ignore goleak.Option) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := goleak.Find(ignore)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
