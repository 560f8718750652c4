// Package bus owns the tier between bridges and edges: the per-vehicle state shared by all bridge
// replicas, the per-mesh snapshot store, and the per-mesh event channels. [Bus] is the interface;
// [NewMemory] (Open "memory://") is the in-process implementation for `meshcast demo` and unit
// tests, and Open "redis://…" / "redis+cluster://…" the Redis implementation (rueidis), for one
// server or a Redis Cluster. Both have the same semantics and pass the same conformance suite.
//
// # Semantics
//
// Apply takes one classified fix (an [Update]) and, atomically per vehicle, compares its time with
// the vehicle's last applied fix: an older fix, or a different fix with the same time, changes
// nothing (Result.Applied false, nothing published). Otherwise the vehicle's state (last fix time,
// last mesh, last dispatchable) is replaced and the transition is published on the mesh channels:
//
//	was                  now                  events
//	-                    dispatchable in B    upsert on B
//	dispatchable in A    dispatchable in A    upsert on A
//	dispatchable in A    dispatchable in B    removal on A (LEFT_AREA, moved_to B), then upsert on B
//	dispatchable in A    not dispatchable     removal on A (the update's reason)
//	not dispatchable     not dispatchable     none
//
// Every write to a mesh is guarded by the fix time as well: a mesh remembers the newest fix time
// it has seen for each vehicle, including removals (tombstones), and ignores an upsert or removal
// that is not newer. So when two bridge replicas process fixes of one vehicle concurrently, whatever
// the order their mesh writes land in, a late older upsert cannot bring back a vehicle that a
// newer fix removed, and each mesh ends with the newest fix's outcome.
//
// A fix repeated with the same time and outcome (an MQTT redelivery) replays the transition of the
// first delivery through the same guards: normally that publishes nothing, but if the first
// attempt died between the vehicle state and the mesh writes, the replay completes it. If a newer
// fix arrives first instead, a removal lost that way is covered by the TTL.
//
// Snapshot returns the dispatchable vehicles of a mesh whose fix is younger than Options.TTL at
// Options.Now. Older entries and tombstones are trimmed by every snapshot read and by a random one
// in 64 batches of writes to the mesh, and the mesh keys expire 2×TTL after their last write, so
// idle meshes vanish and busy ones stay small without a cleaner. The vehicle state expires Options.StateTTL after its
// last update. Snapshot entries come in no particular order.
//
// Subscriptions: [Bus.Subscribe] returns a [Subscription] whose meshes are added and removed at
// run time; Add returns once the channels are subscribed. Pub/sub is at-most-once: when a
// subscription may have missed messages (connection dropped, failover, slot migration) the bus
// re-establishes it and then calls Handler.OnResync for the mesh, and the handler re-reads the
// snapshot. Events of one mesh arrive in publish order; events of different meshes (for example
// the removal on A and the upsert on B of a move) are not ordered with each other.
//
// # Redis key schema
//
// Keys share a small number of hash tags (buckets) so that one script call can serve many
// vehicles or meshes at once: the state of a vehicle carries the tag {v<n>}, n = FNV-1a(id) mod 16,
// and the keys and the channel of a mesh the tag {m<n>}, n = FNV-1a(mesh code) mod 16 (the tag of
// a mesh: [MeshHashTag]). All keys of a tag are on one slot, so a script touching them runs
// atomically on that slot's master, and the buckets spread vehicles and meshes over all shards of
// a cluster. <p> is Options.KeyPrefix ("mc"). The bucket counts are part of the schema: every bus
// on one Redis must use the same.
//
//	<p>:{v<n>}:<fleet>/<vehicle>  string  "<ts>,<mesh>,<disp>,<prev mesh>,<prev disp>": the last
//	                                      applied fix (Unix ms), its mesh and dispatchability
//	                                      (0/1), and the state before it (to replay a duplicate).
//	                                      PX StateTTL, set on every applied fix.
//	<p>:{m<n>}:<mesh>:veh         hash    vehicle id → "<ts>|<protobuf meshcast.v1.Vehicle>" for a
//	                                      dispatchable vehicle, "<ts>|" for a removal (tombstone):
//	                                      the newest fix the mesh saw for it. PEXPIRE 2×TTL,
//	                                      refreshed on write.
//	<p>:{m<n>}:<mesh>:ev          shard channel (SPUBLISH/SSUBSCRIBE): protobuf meshcast.v1.MeshEvent.
//
// <mesh> is the 8-digit third-order mesh code. Three Lua scripts (EVALSHA, falling back to EVAL)
// do the work: the per-vehicle compare-and-set, for a batch of vehicles of one {v<n>}; the guarded
// mesh writes (entry + SPUBLISH, or nothing if the mesh saw a fix as new; one PEXPIRE per mesh),
// for a batch of writes to meshes of one {m<n>}; and the snapshot read of one mesh. Each touches
// one hash tag, so each is atomic on its slot's master; all are idempotent, so rueidis may retry
// them after a lost reply.
//
// # Batching
//
// An Apply is two steps: the compare-and-set on its vehicle's bucket, then the mesh writes of the
// transition (the removal first, then the upsert) on their meshes' buckets. Each bucket has a
// batcher: while a script call of the bucket is in flight, the requests of other goroutines queue,
// and when it returns they go out together as the next call (up to 128 items). By default there
// is no timer and no goroutine per request: alone, a request goes out at once; under load the
// batches grow with the number of concurrent Apply calls (Options.BatchDelay changes the first
// part, below). Every caller waits for its own item's result, so
// Apply stays synchronous (a bridge can acknowledge a fix once Apply returns); an error of a call
// reaches every caller of its batch, and a caller whose context ends returns at once without
// failing the others (an item still queued is then dropped, one already sent completes).
// Batching pays when many Apply calls run concurrently (hundreds): one script call then costs
// Redis and rueidis far less than one per transition, and the calls of all buckets are
// auto-pipelined by rueidis. Inside a script every redis.call costs about as much again as the
// command, so the scripts use the fewest calls per item: the compare-and-set is one MGET per batch
// and one SET per applied fix; a mesh write is HGET, HSET and SPUBLISH, plus one PEXPIRE per mesh
// and batch. Arguments are packed (one per fix for the compare-and-set; id, entry and event per
// mesh write, grouped by mesh) because each costs rueidis and Redis too.
//
// Bucket counts (16 vehicle and 16 mesh buckets) trade batch size against spread. A batch holds
// the requests of one bucket, so with C concurrent Apply calls spread over B buckets a call
// carries about C/(2B) items, and the CPU per transition falls with the batch size: in
// BenchmarkApplyCluster (1024 concurrent calls, 3 masters on 2 cores) 64 mesh buckets gave
// mesh-write batches of ~4.6 items and cost ~15% more client and Redis CPU per transition than
// 16 buckets (~16 items). With fewer concurrent calls the batches are smaller and a transition
// costs more: 256 calls (a bridge's default workers on 2 cores) give ~4 items per call and ~8
// client + ~15 Redis µs, 128 calls ~2.4 items and ~11 + ~19 µs (one script call per step cost
// ~10 + ~23 µs); 1024 calls ~15 items and ~5.5 + ~11.5 µs.
// 16 tags place 6/5/5 vehicle buckets and 5/6/5 mesh buckets on the masters of an evenly split
// 3-master cluster (8 would place 4/2/2 and 2/2/4). With many more masters, more buckets would
// spread the load better at the cost of smaller batches.
//
// At a steady low rate (a fleet's fixes arriving one by one, not a backlog) the buckets are idle
// when a request arrives, so every step is its own script call, and the client and Redis pay a
// system call and a wake-up for each. Options.BatchDelay (bridge -bus-batch-delay, 0-2ms, off by
// default) trades latency for that: an idle bucket then waits for a round of the bus's gate, which
// opens BatchDelay after its first request (and not before the previous round is answered), and
// the calls of every bucket in the round go out in one pipeline (one DoMulti: one write and one
// read per Redis connection). Requests keep their order per bucket and their per-caller results;
// a bucket that stays busy sends outside the rounds. Go's timers sleep at least ~1ms in an idle
// process, so each step waits 1-2ms more: measured at 3,333 fixes/s, ~10% less CPU per fix in the
// bridge and 20-25% less in Redis for a median fix 3-4ms slower (BENCHMARKS.md). The time each step waited
// in its bucket's queue is meshcast_bus_batch_wait_seconds.
//
// Options.BatchEarly (set by the bridge when both -bus-batch-delay and -read-delay are on) opens a
// round before its delay once no Apply call is on its way to a bucket: every call in progress then
// waits in one, so waiting longer would gather nothing more. Each Apply counts while it runs (from
// its start until it waits in a bucket, and again from just before a reply wakes it); a caller
// about to call Apply holds the rounds with [Holder] (the bridge, from a message's receipt), so the
// fixes of one MQTT read go in one round and their mesh writes in the next, with no timer wait.
// The delay still bounds a round's wait.
//
// # Subscriptions over Redis
//
// Subscriptions use their own rueidis client, so message traffic never queues behind Apply. Each
// subscribed mesh channel has one SSUBSCRIBE (and one goroutine running rueidis' Receive) per bus,
// shared by all Subscriptions and handlers of that mesh. One channel per SSUBSCRIBE (rather than
// one per mesh bucket) lets a mesh be unsubscribed (SUNSUBSCRIBE) without touching the others.
// Receive re-subscribes by itself after a dropped connection or a failover; when Redis ends the
// subscription because the slot migrated, the bus calls Receive again, which follows the MOVED
// redirect. Every re-establishment increments meshcast_bus_resubscriptions_total (reason
// reconnect, slot_moved or error), is logged (one line per batch), and is followed by OnResync.
//
// # Addresses
//
//	memory://                                      in-process bus
//	redis://[user:password@]host:port[/db]         one Redis server (standalone)
//	redis+cluster://[user:password@]host:port,...  Redis Cluster (the hosts are seeds)
//
// # Metrics
//
//	meshcast_bus_resubscriptions_total{reason}  subscriptions re-established (reconnect, slot_moved, error)
//	meshcast_bus_applies_total{result}          Apply calls: applied, stale, error
//	meshcast_bus_events_published_total         mesh events published
//	meshcast_bus_events_received_total          mesh events received (once per channel)
//	meshcast_bus_bad_data_total                 undecodable events or snapshot entries dropped
//	meshcast_bus_batch_wait_seconds             time an Apply step waited in its bucket's queue (Redis)
package bus
