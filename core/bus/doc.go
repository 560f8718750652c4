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
// in 16 mesh writes, and the mesh keys expire 2×TTL after their last write, so idle meshes vanish
// and busy ones stay small without a cleaner. The vehicle state expires Options.StateTTL after its
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
// Keys and the channel of one mesh share the hash tag {<mesh>} so that a script touching them runs
// on one slot, and meshes spread over all shards of a cluster. <p> is Options.KeyPrefix ("mc").
//
//	<p>:veh:{<fleet>/<vehicle>}  string  "<ts>,<mesh>,<disp>,<prev mesh>,<prev disp>": the last
//	                                     applied fix (Unix ms), its mesh and dispatchability (0/1),
//	                                     and the state before it (to replay a duplicate).
//	                                     PX StateTTL, set on every applied fix.
//	<p>:{<mesh>}:veh             hash    vehicle id → "<ts>|<protobuf meshcast.v1.Vehicle>" for a
//	                                     dispatchable vehicle, "<ts>|" for a removal (tombstone):
//	                                     the newest fix the mesh saw for it. PEXPIRE 2×TTL,
//	                                     refreshed on write.
//	<p>:{<mesh>}:ev              shard channel (SPUBLISH/SSUBSCRIBE): protobuf meshcast.v1.MeshEvent.
//
// <mesh> is the 8-digit third-order mesh code. Three Lua scripts (EVALSHA, falling back to EVAL)
// do the work: the per-vehicle compare-and-set on the vehicle key; the guarded mesh write
// (entry + PEXPIRE + SPUBLISH, or nothing if the mesh saw a fix as new) on a mesh's slot; and the
// snapshot read. Each touches one hash tag, so each is atomic on its slot's master; all are
// idempotent, so rueidis may retry them after a lost reply. An Apply is one script call on the
// vehicle's slot plus one per event (two for a move), auto-pipelined by rueidis with the calls of
// other goroutines. The state is a string and the mesh keeps one hash (not a hash plus a sorted
// set) because inside a script every redis.call costs about as much again as the command, and
// Redis CPU bounds Apply throughput: the common transition costs 2+4 calls.
//
// # Subscriptions over Redis
//
// Subscriptions use their own rueidis client, so message traffic never queues behind Apply. Each
// subscribed mesh channel has one SSUBSCRIBE (and one goroutine running rueidis' Receive) per bus,
// shared by all Subscriptions and handlers of that mesh. One channel per SSUBSCRIBE is the
// simplest grouping by slot (rueidis rejects an SSUBSCRIBE mixing slots; meshes rarely share a
// slot anyway) and lets a mesh be unsubscribed (SUNSUBSCRIBE) without touching the others.
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
package bus
