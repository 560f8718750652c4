package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ClusterOptions configures [StartClusterWith]. The zero value starts 3 masters without replicas.
type ClusterOptions struct {
	Masters           int           // default 3
	ReplicasPerMaster int           // default 0
	NodeTimeout       time.Duration // cluster-node-timeout: how soon a dead master is failed over; default 2s
	StartTimeout      time.Duration // for the whole start-up; default 60s
	// Dir holds one directory per node (config, log). Default: a new temporary directory that Stop
	// removes.
	Dir       string
	ServerBin string   // default "redis-server"
	CLIBin    string   // default "redis-cli"
	ExtraArgs []string // appended to every redis-server command line
}

// Cluster is a Redis Cluster of local redis-server processes.
type Cluster struct {
	nodes   []*Node
	dir     string
	ownDir  bool
	timeout time.Duration // node timeout
}

// StartCluster starts a cluster of masters (each with replicasPerMaster replicas) for a test or
// benchmark, fails tb if that does not work, and stops it (killing every process) in tb.Cleanup,
// after logging the tail of every node's log if the test failed.
func StartCluster(tb testing.TB, masters, replicasPerMaster int) *Cluster {
	tb.Helper()
	c, err := StartClusterWith(ClusterOptions{
		Masters:           masters,
		ReplicasPerMaster: replicasPerMaster,
		Dir:               tb.TempDir(),
	})
	if err != nil {
		tb.Fatalf("start redis cluster: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			for _, n := range c.nodes {
				tb.Logf("redis node %s (%s) log tail:\n%s", n.Addr, n.ID, n.LogTail(30))
			}
		}
		c.Stop()
	})
	return c
}

// StartClusterWith starts a cluster and waits until every node reports cluster_state:ok, knows every
// other node, and every replica's link to its master is up. The caller must call Stop (TestMain form).
func StartClusterWith(o ClusterOptions) (*Cluster, error) {
	if o.Masters == 0 {
		o.Masters = 3
	}
	if o.Masters < 3 {
		return nil, fmt.Errorf("redis cluster needs at least 3 masters, got %d", o.Masters)
	}
	if o.ReplicasPerMaster < 0 {
		return nil, fmt.Errorf("replicas per master %d < 0", o.ReplicasPerMaster)
	}
	if o.NodeTimeout == 0 {
		o.NodeTimeout = 2 * time.Second
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 60 * time.Second
	}
	if o.ServerBin == "" {
		o.ServerBin = "redis-server"
	}
	if o.CLIBin == "" {
		o.CLIBin = "redis-cli"
	}
	c := &Cluster{dir: o.Dir, timeout: o.NodeTimeout}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "redistest-cluster-")
		if err != nil {
			return nil, err
		}
		c.dir, c.ownDir = d, true
	}
	deadline := time.Now().Add(o.StartTimeout)
	if err := c.start(o, deadline); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(o ClusterOptions, deadline time.Time) error {
	total := o.Masters * (1 + o.ReplicasPerMaster)
	extra := func(int) []string {
		return append([]string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.FormatInt(o.NodeTimeout.Milliseconds(), 10),
			// A replica may always take over, however long it was disconnected.
			"--cluster-replica-validity-factor", "0",
			"--repl-diskless-sync", "yes",
			"--repl-diskless-sync-delay", "0",
		}, o.ExtraArgs...)
	}
	for range total {
		n, err := newNode(o.ServerBin, c.dir, extra)
		if err != nil {
			return err
		}
		c.nodes = append(c.nodes, n)
		if err := n.start(); err != nil {
			return err
		}
	}
	for _, n := range c.nodes {
		if err := n.waitPing(deadline); err != nil {
			return err
		}
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(o.ReplicasPerMaster), "--cluster-yes")
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.CLIBin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", o.CLIBin, strings.Join(args, " "), err, out)
	}
	for _, n := range c.nodes {
		v, err := n.Do("CLUSTER", "MYID")
		if err != nil {
			return err
		}
		n.ID, _ = v.(string)
	}
	return c.waitUntil(deadline, "cluster ready", func() error { return c.check(o.Masters) })
}

// Stop kills every node and removes the directory if the harness created it.
func (c *Cluster) Stop() {
	for _, n := range c.nodes {
		n.Kill()
	}
	if c.ownDir {
		os.RemoveAll(c.dir)
	}
}

// Nodes returns every node the harness started, alive or not.
func (c *Cluster) Nodes() []*Node { return append([]*Node(nil), c.nodes...) }

// Addrs returns the addresses of the running nodes.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.nodes {
		if n.Alive() {
			out = append(out, n.Addr)
		}
	}
	return out
}

// URL returns "redis+cluster://host:port,host:port,…" with the running nodes as seeds.
func (c *Cluster) URL() string { return "redis+cluster://" + strings.Join(c.Addrs(), ",") }

// Node returns the node with the given cluster id, or nil.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// nodeInfo is one line of CLUSTER NODES.
type nodeInfo struct {
	id, addr, masterID string
	master, failed     bool
	slots              [][2]int
}

func (ni nodeInfo) owns(slot int) bool {
	for _, r := range ni.slots {
		if slot >= r[0] && slot <= r[1] {
			return true
		}
	}
	return false
}

// view returns the cluster topology as seen by node n.
func (c *Cluster) view(n *Node) ([]nodeInfo, error) {
	v, err := n.Do("CLUSTER", "NODES")
	if err != nil {
		return nil, err
	}
	s, _ := v.(string)
	var out []nodeInfo
	for line := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES from %s: short line %q", n.Addr, line)
		}
		ni := nodeInfo{id: f[0], addr: f[1], masterID: f[3]}
		if i := strings.IndexAny(ni.addr, "@,"); i >= 0 {
			ni.addr = ni.addr[:i]
		}
		for flag := range strings.SplitSeq(f[2], ",") {
			switch flag {
			case "master":
				ni.master = true
			case "fail", "fail?":
				ni.failed = true
			}
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") { // importing/migrating marker
				continue
			}
			lo, hi, ok := strings.Cut(r, "-")
			a, err := strconv.Atoi(lo)
			if err != nil {
				return nil, fmt.Errorf("CLUSTER NODES from %s: slot %q", n.Addr, r)
			}
			b := a
			if ok {
				if b, err = strconv.Atoi(hi); err != nil {
					return nil, fmt.Errorf("CLUSTER NODES from %s: slot %q", n.Addr, r)
				}
			}
			ni.slots = append(ni.slots, [2]int{a, b})
		}
		out = append(out, ni)
	}
	return out, nil
}

// anyAlive returns a running node, preferring masters is not needed: every node answers CLUSTER NODES.
func (c *Cluster) anyAlive() (*Node, error) {
	for _, n := range c.nodes {
		if n.Alive() {
			return n, nil
		}
	}
	return nil, errors.New("no redis node is running")
}

// MasterForSlot returns the master that owns slot, as seen by a running node.
func (c *Cluster) MasterForSlot(slot int) (*Node, error) {
	n, err := c.anyAlive()
	if err != nil {
		return nil, err
	}
	infos, err := c.view(n)
	if err != nil {
		return nil, err
	}
	for _, ni := range infos {
		if ni.master && !ni.failed && ni.owns(slot) {
			if m := c.Node(ni.id); m != nil {
				return m, nil
			}
			return nil, fmt.Errorf("slot %d owned by unknown node %s", slot, ni.id)
		}
	}
	return nil, fmt.Errorf("slot %d has no live master in %s's view", slot, n.Addr)
}

// Masters returns the running masters that own slots.
func (c *Cluster) Masters() ([]*Node, error) {
	n, err := c.anyAlive()
	if err != nil {
		return nil, err
	}
	infos, err := c.view(n)
	if err != nil {
		return nil, err
	}
	var out []*Node
	for _, ni := range infos {
		if m := c.Node(ni.id); ni.master && !ni.failed && len(ni.slots) > 0 && m != nil && m.Alive() {
			out = append(out, m)
		}
	}
	return out, nil
}

// Replicas returns the running replicas of master m.
func (c *Cluster) Replicas(m *Node) ([]*Node, error) {
	n, err := c.anyAlive()
	if err != nil {
		return nil, err
	}
	infos, err := c.view(n)
	if err != nil {
		return nil, err
	}
	var out []*Node
	for _, ni := range infos {
		if r := c.Node(ni.id); !ni.master && ni.masterID == m.ID && r != nil && r.Alive() {
			out = append(out, r)
		}
	}
	return out, nil
}

// KillMaster kills master m with SIGKILL and waits until one of its replicas has taken over all of
// its slots in the view of every running node and the cluster is healthy again; it returns the
// new master. m must have a replica.
func (c *Cluster) KillMaster(m *Node) (*Node, error) {
	reps, err := c.Replicas(m)
	if err != nil {
		return nil, err
	}
	if len(reps) == 0 {
		return nil, fmt.Errorf("master %s has no running replica: no failover possible", m.Addr)
	}
	infos, err := c.view(m)
	if err != nil {
		return nil, err
	}
	var slots [][2]int
	for _, ni := range infos {
		if ni.id == m.ID {
			slots = ni.slots
		}
	}
	if len(slots) == 0 {
		return nil, fmt.Errorf("node %s owns no slots", m.Addr)
	}
	m.Kill()
	// Failover takes about 2 node timeouts; allow generously more on a loaded machine.
	deadline := time.Now().Add(10*c.timeout + 20*time.Second)
	var newMaster *Node
	err = c.waitUntil(deadline, "failover of "+m.Addr, func() error {
		nm, err := c.MasterForSlot(slots[0][0])
		if err != nil {
			return err
		}
		if nm == m {
			return fmt.Errorf("slot %d still owned by the killed master", slots[0][0])
		}
		newMaster = nm
		return c.checkOwner(slots, nm)
	})
	return newMaster, err
}

// Restart starts a killed node again on the same port and directory; a former master comes back
// as a replica of the node that replaced it. It waits until the node answers and every running
// node reports cluster_state:ok.
func (c *Cluster) Restart(n *Node) error {
	if err := n.start(); err != nil {
		return err
	}
	deadline := time.Now().Add(10*c.timeout + 20*time.Second)
	if err := n.waitPing(deadline); err != nil {
		return err
	}
	return c.waitUntil(deadline, "restart of "+n.Addr, func() error {
		for _, x := range c.nodes {
			if !x.Alive() {
				continue
			}
			if err := clusterOK(x); err != nil {
				return err
			}
			infos, err := c.view(x)
			if err != nil {
				return err
			}
			for _, ni := range infos {
				if ni.id == n.ID && ni.failed {
					return fmt.Errorf("%s still sees %s as failed", x.Addr, n.Addr)
				}
			}
		}
		return nil
	})
}

// MigrateSlot moves slot, with its keys, from its current master to master `to` (CLUSTER SETSLOT
// IMPORTING / MIGRATING, MIGRATE of every key, SETSLOT NODE on every master) and waits until every
// running node sees `to` as the owner. Subscribers of the slot's shard channels on the old master
// get an SUNSUBSCRIBE from Redis.
func (c *Cluster) MigrateSlot(slot int, to *Node) error {
	from, err := c.MasterForSlot(slot)
	if err != nil {
		return err
	}
	if from == to {
		return nil
	}
	s := strconv.Itoa(slot)
	if _, err := to.Do("CLUSTER", "SETSLOT", s, "IMPORTING", from.ID); err != nil {
		return err
	}
	if _, err := from.Do("CLUSTER", "SETSLOT", s, "MIGRATING", to.ID); err != nil {
		return err
	}
	for {
		v, err := from.Do("CLUSTER", "GETKEYSINSLOT", s, "100")
		if err != nil {
			return err
		}
		keys, _ := v.([]any)
		if len(keys) == 0 {
			break
		}
		args := []string{"MIGRATE", "127.0.0.1", strconv.Itoa(to.Port), "", "0", "5000", "KEYS"}
		for _, k := range keys {
			args = append(args, k.(string))
		}
		if _, err := from.Do(args...); err != nil {
			return err
		}
	}
	// The target first, then the source (as redis-cli does), then every other master.
	order := []*Node{to, from}
	masters, err := c.Masters()
	if err != nil {
		return err
	}
	for _, m := range masters {
		if m != to && m != from {
			order = append(order, m)
		}
	}
	for _, m := range order {
		if _, err := m.Do("CLUSTER", "SETSLOT", s, "NODE", to.ID); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(10*c.timeout + 20*time.Second)
	return c.waitUntil(deadline, "migration of slot "+s, func() error {
		return c.checkOwner([][2]int{{slot, slot}}, to)
	})
}

// WaitHealthy waits until every running node reports cluster_state:ok.
func (c *Cluster) WaitHealthy(timeout time.Duration) error {
	return c.waitUntil(time.Now().Add(timeout), "cluster_state:ok", func() error {
		for _, n := range c.nodes {
			if n.Alive() {
				if err := clusterOK(n); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// checkOwner verifies that every running node reports cluster_state:ok and sees owner as the live
// master of every slot in ranges.
func (c *Cluster) checkOwner(ranges [][2]int, owner *Node) error {
	for _, n := range c.nodes {
		if !n.Alive() {
			continue
		}
		if err := clusterOK(n); err != nil {
			return err
		}
		infos, err := c.view(n)
		if err != nil {
			return err
		}
		for _, r := range ranges {
			ok := false
			for _, ni := range infos {
				if ni.id == owner.ID && ni.master && !ni.failed && ni.owns(r[0]) && ni.owns(r[1]) {
					ok = true
				}
			}
			if !ok {
				return fmt.Errorf("%s does not yet see %s as owner of slots %d-%d", n.Addr, owner.Addr, r[0], r[1])
			}
		}
	}
	return nil
}

// check is the start-up readiness condition.
func (c *Cluster) check(masters int) error {
	for _, n := range c.nodes {
		info, err := clusterInfo(n)
		if err != nil {
			return err
		}
		want := map[string]string{
			"cluster_state":          "ok",
			"cluster_slots_assigned": strconv.Itoa(SlotCount),
			"cluster_known_nodes":    strconv.Itoa(len(c.nodes)),
			"cluster_size":           strconv.Itoa(masters),
		}
		for k, v := range want {
			if info[k] != v {
				return fmt.Errorf("%s: %s=%s, want %s", n.Addr, k, info[k], v)
			}
		}
		infos, err := c.view(n)
		if err != nil {
			return err
		}
		var ms, rs int
		for _, ni := range infos {
			switch {
			case ni.failed:
				return fmt.Errorf("%s sees %s as failed", n.Addr, ni.addr)
			case ni.master && len(ni.slots) > 0:
				ms++
			case !ni.master && ni.masterID != "-":
				rs++
			}
		}
		if ms != masters || rs != len(c.nodes)-masters {
			return fmt.Errorf("%s sees %d masters and %d replicas, want %d and %d", n.Addr, ms, rs, masters, len(c.nodes)-masters)
		}
		v, err := n.Do("INFO", "replication")
		if err != nil {
			return err
		}
		repl := parseInfo(v)
		if repl["role"] == "slave" && repl["master_link_status"] != "up" {
			return fmt.Errorf("replica %s: master_link_status=%s", n.Addr, repl["master_link_status"])
		}
	}
	return nil
}

func clusterOK(n *Node) error {
	info, err := clusterInfo(n)
	if err != nil {
		return err
	}
	if info["cluster_state"] != "ok" {
		return fmt.Errorf("%s: cluster_state=%s", n.Addr, info["cluster_state"])
	}
	return nil
}

func clusterInfo(n *Node) (map[string]string, error) {
	v, err := n.Do("CLUSTER", "INFO")
	if err != nil {
		return nil, err
	}
	return parseInfo(v), nil
}

func parseInfo(v any) map[string]string {
	s, _ := v.(string)
	m := map[string]string{}
	for line := range strings.SplitSeq(s, "\n") {
		if k, val, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = val
		}
	}
	return m
}

// waitUntil polls cond until it returns nil or the deadline passes (then it returns cond's last
// error).
func (c *Cluster) waitUntil(deadline time.Time, what string, cond func() error) error {
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait for %s: %w", what, err)
		}
		time.Sleep(pollInterval)
	}
}
