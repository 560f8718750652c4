// Package session owns one rider's stream, independent of the transport that carries it: the
// watched area, the rider's view of it, and the queue of frames the transport writes.
//
// # Area and view
//
// A WatchRequest (see Validate) names a circle. The session joins, in the hub, the third-order
// meshes the circle touches (mesh.Cover) and keeps in its view the vehicles of those meshes that
// are within the radius by mesh.DistanceM (the metric of Cover, so no vehicle within the radius is
// in a mesh it does not watch) and of a requested class (empty classes: all; a vehicle with class
// UNSPECIFIED counts as STANDARD).
//
// With max_vehicles N > 0 the view holds the N nearest of those vehicles, ordered by exact
// distance, then id. When a nearer vehicle enters (or one moves nearer), the farthest shown one
// gets a Removal LEFT_AREA; when a shown one leaves or moves away, the nearest hidden one is added
// with an upsert. So at every point "Snapshot + events" equals the N nearest of the area.
//
// The first frame, and the first after every Move, is a Snapshot of the view (nearest first). Then
// every change is an upsert (entered, moved inside) or a removal (left the radius or the cap:
// LEFT_AREA; stopped being dispatchable: the bridge's reason; last fix older than the TTL: STALE).
// A vehicle that moves from one watched mesh to another is kept: no removal, just the upsert
// (whichever of the two mesh events arrives first); if that upsert is lost by the bus, the vehicle
// is removed (STALE) when the mesh is resynced or its fix is TTL old.
// Applying the frames in order to a map reproduces the view; vehicle.distance_m is the rounded
// distance from the rider's centre.
//
// # Queue
//
// The hub hands each event to the session without blocking: under the session's lock the view
// and the vehicle's pending slot are updated and Next is signalled. Pending updates are kept one
// per vehicle (the latest wins: a move replaces a move, a removal replaces an upsert and the other
// way round; an entry and exit the rider never saw cancel out). More than Options.QueueLimit
// vehicles with an update ready cuts the rider: Next returns ErrTooSlow (and the session leaves the
// hub); the limit is checked when a vehicle's update is added, not when a pending one is replaced. Since the limit counts vehicles, a rider that stops reading in an area with fewer vehicles
// than that is never cut: it holds at most one update per vehicle; a stuck connection is the
// transport's to find (see package transport, "Riders that stop reading"). Next returns the
// pending frames in batches of at most Options.MaxBatch, and a Heartbeat when nothing was sent
// for Options.Heartbeat.
//
// With min_interval_ms the rider gets at most one upsert per vehicle per interval (the latest
// position when the interval ends; a vehicle new to the rider goes at once); removals are sent at
// once, and since a vehicle has one pending slot a removal is never reordered after a later
// upsert. Updates waiting for their interval do not count toward QueueLimit.
//
// # Concurrency
//
// Next is called by one goroutine (the transport's writer); Move and Close may be called from any
// other. New and Move block while the hub subscribes meshes nobody watched yet (bus subscribe and
// snapshot read). The caller must Close every session it created.
//
// # Encoding
//
// Frames carry each event in both wire formats, built from the hub's shared encodings (see package
// hub): the session only writes its seq and the distances around the shared bytes, into one buffer
// per batch that it never reuses.
package session
