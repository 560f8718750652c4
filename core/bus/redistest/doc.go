// Package redistest starts real Redis servers for tests: a standalone server ([StartSingle]) and a
// Redis Cluster of 3+ masters with optional replicas ([StartCluster]), from the redis-server and
// redis-cli binaries on PATH (Debian's redis-server 7.0 is what the project uses).
//
// Every server listens on 127.0.0.1 on a port the harness found free (15000-29999, with the cluster
// bus port +10000 free too), keeps no data on disk (--save "" --appendonly no) and lives in its own
// directory (config, redis.log). Processes die with the test: the tb forms stop them in
// tb.Cleanup, and every child is started with Pdeathsig SIGKILL so that a test binary that crashes
// or times out does not leave servers behind. (Pdeathsig follows the OS thread that started the
// child; Go only retires a thread when a goroutine locked to it exits, which the harness never
// does.) The *With forms return an error instead of failing a
// test and must be stopped by the caller, which suits TestMain:
//
//	func TestMain(m *testing.M) {
//		c, err := redistest.StartClusterWith(redistest.ClusterOptions{Masters: 3})
//		if err != nil { log.Fatal(err) }
//		code := m.Run()
//		c.Stop()
//		os.Exit(code)
//	}
//
// Start-up waits (by polling with a deadline) until every node reports cluster_state:ok, knows all
// other nodes and every replica's link is up. The fault helpers wait the same way for their
// outcome: [Cluster.KillMaster] until a replica owns the dead master's slots in every running
// node's view, [Cluster.MigrateSlot] until every node sees the new owner, [Cluster.Restart] until
// the node has rejoined.
//
// Control commands go through [Do], a goroutine-free one-shot RESP client, so the harness never
// shows up in goroutine leak checks other than one reaper goroutine per running server
// ((*Node).wait), which exits with the process.
package redistest
