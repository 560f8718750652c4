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
// remembers the newest fix time seen per vehicle (for one TTL) and drops an upsert older than it.
// The vehicle's lock is released before the fan-out, so events of one vehicle on two meshes can
// reach a watcher in either order: a watcher orders what it holds by fix time. Removals are always delivered; a watcher applies one only to a vehicle
// it holds in that mesh with a fix not newer than the removal's. A removal caused by a move carries
// Event.MovedTo: a watcher that also watches that mesh keeps the vehicle (no flicker).
//
// # Circle pre-filter
//
// Most watchers of a mesh cannot care about most of its upserts: a rider's circle covers part of
// each mesh it watches. A watcher may declare its circle (SetCircle), kept inline in the mesh's
// watcher list, and the fan-out then skips it, without calling Deliver, for an upsert whose new
// position and whose previous entry in the mesh are both outside the circle (by more than
// CircleMarginM) — only when the hub can prove the watcher would have ignored the upsert:
//
//   - the previous entry p was written after the circle was set, so the watcher evaluated p
//     (delivered or skipped) against this circle, after every seed of its Join;
//   - p was strictly newer than every earlier event of the vehicle (any mesh, removals included)
//     and was fanned out when all of those had been, so the watcher saw p after all of them
//     (the fan-out of different meshes is concurrent; this is what orders them here);
//   - the upsert is the vehicle's next event after p, and when it is fanned out no other event
//     of the vehicle is in flight;
//   - it is not a reseed write (reseeds and resyncs go to every watcher, as do removals).
//
// Then the watcher, having applied p outside its circle after everything before it, holds the
// vehicle at most as a LEFT_AREA removal still to be sent (package session), which the upsert
// would not change: skipping it changes none of the frames the rider gets. Anything else (no
// previous entry in the mesh: a vehicle arriving from another mesh; a removal in between; a
// reseed; concurrent events of the vehicle; a watcher without a circle) is delivered as before.
// The watcher stays the authority: it checks every delivered event itself. A watcher that
// changes its area clears its circle first and sets the new one once the Join returned.
// Options.DeliverAll turns the filter off.
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
// Meshes and vehicles are spread over Options.Shards lock shards each. An event passes its
// vehicle's shard (the order check) and is fanned out under its mesh's own lock only, which
// calls Watcher.Deliver, which must not block; the vehicle's shard is taken briefly under the
// mesh's lock to see whether other events of the vehicle are in flight (the pre-filter), never
// the other way round.
//
// # Metrics
//
//	meshcast_hub_meshes                          meshes subscribed now
//	meshcast_hub_events_received_total           mesh events received from the bus
//	meshcast_hub_deliveries_total                events handed to riders (per rider; Deliver calls)
//	meshcast_hub_skipped_total                   riders the circle pre-filter skipped (per rider)
//	meshcast_hub_events_dropped_total{reason}    older, expired, bad
//	meshcast_hub_expired_total                   STALE removals from the TTL sweep
//	meshcast_hub_resyncs_total                   snapshot re-reads after a gap
package hub
