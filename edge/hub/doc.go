// Package hub owns the edge's view of the bus: one bus subscription per mesh per process,
// reference counted by the riders (Watchers) that watch the mesh and dropped when the last one
// leaves, and the current state of every subscribed mesh.
//
// # State
//
// A mesh's state is seeded from bus.Snapshot when its first watcher joins, then kept by the mesh's
// event stream. When the bus reports a possible gap (OnResync, or a call to Resync) the snapshot
// is read again and the difference is sent to the watchers as upserts and STALE removals, so they
// stay exact; then Watcher.Resynced tells them the mesh is exact again. A failed re-read is tried
// again after a second. A sweep
// (every Options.Sweep) removes vehicles whose last fix is at least Options.TTL old, with a STALE
// removal.
//
// # Order
//
// The bus orders the events of one mesh but not those of different meshes (a move A→B is a removal
// on A and an upsert on B). The hub orders each vehicle's events across meshes by fix time: it
// remembers the newest fix time seen per vehicle (for one TTL) and drops an upsert older than it,
// and it fans a vehicle's events out under a per-vehicle lock, so every watcher gets a vehicle's
// upserts in fix-time order. Removals are always delivered; a watcher applies one only to a vehicle
// it holds in that mesh with a fix not newer than the removal's. A removal caused by a move carries
// Event.MovedTo: a watcher that also watches that mesh keeps the vehicle (no flicker).
//
// # Encode once
//
// Every upsert is decoded from the bus once and encoded once per wire format (deterministic
// protobuf and protojson, without the rider-specific distance) into an Entry shared by all
// watchers; removals likewise (Removal). Riders build their frames by wrapping these bytes with
// their seq and distance; they never marshal a vehicle themselves.
//
// # Locks
//
// Meshes and vehicles are spread over Options.Shards lock shards each. Fan-out holds the
// vehicle's and the mesh's shard locks and calls Watcher.Deliver, which must not block.
//
// # Metrics
//
//	meshcast_hub_meshes                          meshes subscribed now
//	meshcast_hub_events_received_total           mesh events received from the bus
//	meshcast_hub_deliveries_total                events handed to riders (per rider)
//	meshcast_hub_events_dropped_total{reason}    older, expired, bad
//	meshcast_hub_expired_total                   STALE removals from the TTL sweep
//	meshcast_hub_resyncs_total                   snapshot re-reads after a gap
package hub
