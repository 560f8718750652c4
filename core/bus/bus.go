package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/meshcast/meshcast/core/mesh"
	"github.com/meshcast/meshcast/core/redact"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Update is one classified fix of one vehicle (built by the bridge).
type Update struct {
	// Vehicle is the fix: Id "fleet/vehicle", Fleet, Lat, Lon, HeadingDeg, SpeedKmh, Class, Mesh
	// (third-order mesh, 8 digits; "" when outside the mesh domain), ObservedAtMs (the fix's time).
	// Apply does not keep or modify it.
	Vehicle *meshcastv1.Vehicle
	// Dispatchable says whether riders may see the vehicle (it then needs a Mesh).
	Dispatchable bool
	// Reason is why the vehicle is not dispatchable (used for the removal it may cause).
	Reason meshcastv1.RemovalReason
}

// Result says what Apply did.
type Result struct {
	// Applied is false when a fix as new or newer was already applied for the vehicle (stale or
	// duplicate): then nothing changed.
	Applied bool
	// Events is the number of mesh events published.
	Events int
}

// Bus is what the bridge and the edge share: per-vehicle state, per-mesh snapshots and per-mesh
// event channels. Implementations are safe for concurrent use.
type Bus interface {
	// Apply records the fix in the per-vehicle state shared by all bridge replicas and publishes the
	// transition: an upsert on the new mesh; on a move A→B a removal on A (reason LEFT_AREA,
	// MeshEvent.moved_to = B) and an upsert on B; on becoming non-dispatchable a removal on the old
	// mesh with the update's reason; nothing when it was and stays non-dispatchable. A fix not newer
	// than the vehicle's last applied fix changes nothing (Result.Applied false). An error after
	// the vehicle state was updated leaves the mesh writes incomplete (Result says what was done):
	// applying the same fix again completes them (do not acknowledge the fix before that).
	Apply(ctx context.Context, u Update) (Result, error)
	// Snapshot returns the dispatchable vehicles of a mesh whose last fix is younger than the TTL,
	// decoded afresh for the caller.
	Snapshot(ctx context.Context, m mesh.Code) ([]*meshcastv1.Vehicle, error)
	// Subscribe opens a subscription whose meshes are added and removed later; events go to h.
	Subscribe(h Handler) (Subscription, error)
	// Close ends all subscriptions and releases the connections.
	Close() error
}

// Holder is implemented by the Redis bus. With Options.BatchEarly, Hold counts one Apply call
// about to be made, so that no round opens early without it; the caller must either pass release
// to that Apply with [WithRelease] (Apply releases it once it counts itself) or call it, exactly
// once. Without BatchEarly, Hold returns nil: there is nothing to release.
type Holder interface {
	Hold() (release func())
}

// WithRelease returns ctx carrying the release of a [Holder.Hold], for Apply to call.
func WithRelease(ctx context.Context, release func()) context.Context {
	return context.WithValue(ctx, releaseKey{}, release)
}

type releaseKey struct{}

// Handler receives the events of a subscription. Its methods run on the bus's goroutines (the
// Redis bus: one per subscribed mesh, which delivers that mesh's events in order, plus one that
// calls OnResync; the memory bus: the goroutine that called Apply), so calls for different meshes,
// and OnResync with OnEvent, may run concurrently: a Handler must be safe for concurrent use,
// return quickly (hand work off: a slow handler holds up its mesh) and not call back into the bus
// from a callback.
type Handler interface {
	// OnEvent delivers one event of mesh m. ev is decoded once from raw (the protobuf bytes as
	// received) and the same ev and raw go to every handler of m: treat both as read-only. The bus
	// does not reuse them, so keeping them is safe.
	OnEvent(m mesh.Code, ev *meshcastv1.MeshEvent, raw []byte)
	// OnResync says that delivery for m may have had a gap (reconnect, slot migration, failover):
	// re-read the snapshot. It is called after the subscription is established again.
	OnResync(m mesh.Code)
}

// Subscription is a set of meshes whose events go to one Handler.
type Subscription interface {
	// Add subscribes to the meshes (those already in the set are left alone) and returns when the
	// subscriptions are established, so that every event published afterwards is delivered.
	// On error none of the meshes of this call that were not yet in the set are added.
	Add(ctx context.Context, ms ...mesh.Code) error
	// Remove unsubscribes from the meshes; after it returns the handler gets no event for them.
	Remove(ctx context.Context, ms ...mesh.Code) error
	// Close removes every mesh. The subscription cannot be used afterwards.
	Close() error
}

// Options configure a bus. The zero value is valid.
type Options struct {
	// TTL is how long a fix keeps a vehicle in its mesh's snapshot. Default 10s.
	TTL time.Duration
	// StateTTL is how long the per-vehicle state lives after the vehicle's last applied fix.
	// Default 10*TTL.
	StateTTL time.Duration
	// Now is the clock for the TTL (tests). Default time.Now.
	Now func() time.Time
	// Logger gets a line for every subscription re-establishment and for undecodable data.
	// Default slog.Default().
	Logger *slog.Logger
	// Registerer gets the bus metrics (see the package doc). Nil: metrics are kept but not
	// registered. Registering twice into one registry reuses the first collectors.
	Registerer prometheus.Registerer
	// FlushDelay (Redis) lets each connection wait up to this long after a write to gather more
	// commands into the next one (rueidis MaxFlushDelay): under load it cuts the client's CPU per
	// Apply by about 40% (fewer, larger writes) for at most this much latency per round trip.
	// Default 100µs; negative: write at once.
	FlushDelay time.Duration
	// BatchDelay (Redis), when positive (at most 2ms), makes an idle bucket wait up to this long
	// for the requests of other Apply calls, and sends the calls of every bucket that waited in
	// one pipeline (a round; see "Batching" in the package doc). It trades latency for CPU under
	// light load: each step of Apply (compare-and-set, mesh write) waits up to this long plus
	// the round in flight, and Go's timers sleep at least ~1ms in an idle process, so an Apply
	// waits 2-4ms more. Measured at 3,333 fixes/s with 1ms: ~10% less bridge and 20-25% less Redis
	// CPU per fix, bridge processing p50 from ~1 to 4-5ms (BENCHMARKS.md). Default 0: no rounds, an idle bucket sends at
	// once.
	BatchDelay time.Duration
	// BatchEarly (Redis, with BatchDelay) opens a round before its delay once no Apply call is on
	// its way to a bucket: every call in progress then waits in one, so waiting longer would
	// gather nothing more. A caller that is about to call Apply (the bridge, for the fixes of one
	// MQTT read) holds the round with [Holder]. Meant for callers that deliver work in bursts
	// (the bridge's -read-delay); with fixes arriving one by one each round holds one fix.
	BatchEarly bool
	// KeyPrefix is the first part of every Redis key and channel. Default "mc". Buses with
	// different prefixes on one Redis do not see each other (tests, several deployments).
	KeyPrefix string
}

func (o Options) withDefaults() (Options, error) {
	if o.TTL < 0 || o.StateTTL < 0 {
		return o, fmt.Errorf("bus options: negative TTL %v or StateTTL %v", o.TTL, o.StateTTL)
	}
	if o.TTL == 0 {
		o.TTL = 10 * time.Second
	}
	if o.TTL < time.Millisecond {
		return o, fmt.Errorf("bus options: TTL %v below 1ms", o.TTL)
	}
	if o.StateTTL == 0 {
		o.StateTTL = 10 * o.TTL
	}
	if o.StateTTL < o.TTL {
		return o, fmt.Errorf("bus options: StateTTL %v shorter than TTL %v", o.StateTTL, o.TTL)
	}
	switch {
	case o.FlushDelay == 0:
		o.FlushDelay = 100 * time.Microsecond
	case o.FlushDelay < 0:
		o.FlushDelay = 0
	case o.FlushDelay > 10*time.Millisecond:
		return o, fmt.Errorf("bus options: flush delay %v above 10ms", o.FlushDelay)
	}
	if o.BatchDelay < 0 || o.BatchDelay > 2*time.Millisecond {
		return o, fmt.Errorf("bus options: batch delay %v outside 0-2ms", o.BatchDelay)
	}
	if o.BatchEarly && o.BatchDelay == 0 {
		return o, errors.New("bus options: BatchEarly needs a BatchDelay (the rounds it opens early)")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = "mc"
	}
	if strings.ContainsAny(o.KeyPrefix, "{} \t\r\n") {
		return o, fmt.Errorf("bus options: key prefix %q contains braces or spaces", o.KeyPrefix)
	}
	return o, nil
}

// Open connects to a bus by address:
//
//	memory://                      in-process bus (NewMemory)
//	redis://[user:pass@]host:port[/db]   one Redis server (standalone)
//	redis+cluster://[user:pass@]host:port,host:port,...   Redis Cluster; the hosts are seeds
func Open(ctx context.Context, addr string, o Options) (Bus, error) {
	ep, err := parseAddr(addr)
	if err != nil {
		return nil, err
	}
	if ep.memory {
		o, err := o.withDefaults()
		if err != nil {
			return nil, err
		}
		return newMemory(o), nil
	}
	return openRedis(ctx, ep, o)
}

// endpoint is a parsed bus address.
type endpoint struct {
	memory    bool
	cluster   bool
	hosts     []string
	db        int
	user, pwd string
}

// parseAddr parses an Open address (see Open).
func parseAddr(addr string) (endpoint, error) {
	var ep endpoint
	shown := redact.URL(addr) // errors never carry the password
	if !strings.Contains(addr, "://") && strings.Contains(addr, "@") {
		shown = "(not shown: user information without a scheme)"
	}
	scheme, rest, ok := strings.Cut(addr, "://")
	if !ok {
		return ep, fmt.Errorf("bus address %q: want memory://, redis://host:port[/db] or redis+cluster://host:port[,host:port]", shown)
	}
	switch scheme {
	case "memory":
		if rest != "" {
			return ep, fmt.Errorf("bus address %q: memory:// takes nothing after the scheme", shown)
		}
		ep.memory = true
		return ep, nil
	case "redis":
	case "redis+cluster":
		ep.cluster = true
	default:
		return ep, fmt.Errorf("bus address %q: unknown scheme %q (want memory, redis or redis+cluster)", shown, scheme)
	}
	// User information first, up to the last '@' (a database number never holds one), so that a
	// '/' in a password is not taken for the path, and no error below echoes part of it.
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		ep.user, ep.pwd, _ = strings.Cut(rest[:at], ":")
		rest = rest[at+1:]
	}
	hosts, path, _ := strings.Cut(rest, "/")
	if path != "" {
		if ep.cluster {
			return ep, fmt.Errorf("bus address %q: Redis Cluster has no database number", shown)
		}
		db, err := strconv.Atoi(path)
		if err != nil || db < 0 || db > 1<<16 {
			return ep, fmt.Errorf("bus address %q: database %q is not a number", shown, path)
		}
		ep.db = db
	}
	for h := range strings.SplitSeq(hosts, ",") {
		i := strings.LastIndexByte(h, ':')
		if i <= 0 || i == len(h)-1 {
			return ep, fmt.Errorf("bus address %q: %q is not host:port", shown, h)
		}
		if p, err := strconv.Atoi(h[i+1:]); err != nil || p <= 0 || p > 65535 {
			return ep, fmt.Errorf("bus address %q: bad port in %q", shown, h)
		}
		ep.hosts = append(ep.hosts, h)
	}
	if !ep.cluster && len(ep.hosts) != 1 {
		return ep, fmt.Errorf("bus address %q: redis:// takes one host (use redis+cluster:// for a cluster)", shown)
	}
	return ep, nil
}

// vstate is the per-vehicle state.
type vstate struct {
	mesh string // last mesh ("" outside the mesh domain)
	disp bool   // last dispatchable
}

// op is one guarded write to a mesh's store.
type op struct {
	mesh   string
	upsert bool // else removal
	reason meshcastv1.RemovalReason
	moved  string // removal caused by a move: the new mesh
}

// plan appends the mesh writes (at most two, the removal first) of a transition to dst.
func plan(dst []op, old, cur vstate, reason meshcastv1.RemovalReason) []op {
	if cur.disp {
		if old.disp && old.mesh != "" && old.mesh != cur.mesh {
			dst = append(dst, op{mesh: old.mesh, reason: meshcastv1.RemovalReason_REMOVAL_REASON_LEFT_AREA, moved: cur.mesh})
		}
		return append(dst, op{mesh: cur.mesh, upsert: true})
	}
	if old.disp && old.mesh != "" {
		dst = append(dst, op{mesh: old.mesh, reason: reason})
	}
	return dst
}

// Errors of Apply for invalid updates.
var (
	ErrNoVehicle = errors.New("bus: update without vehicle or vehicle id")
	ErrNoMesh    = errors.New("bus: dispatchable update without mesh")
)

// check validates an update and returns the vehicle's new state.
func check(u Update) (vstate, error) {
	v := u.Vehicle
	if v == nil || v.Id == "" {
		return vstate{}, ErrNoVehicle
	}
	if v.Mesh == "" {
		if u.Dispatchable {
			return vstate{}, fmt.Errorf("%w (vehicle %s)", ErrNoMesh, v.Id)
		}
		return vstate{}, nil
	}
	c, err := mesh.Parse(v.Mesh)
	if err != nil {
		return vstate{}, fmt.Errorf("bus: vehicle %s: %w", v.Id, err)
	}
	if c.Level() != mesh.ThirdLevel {
		return vstate{}, fmt.Errorf("bus: vehicle %s: mesh %s is not a third-order mesh", v.Id, v.Mesh)
	}
	return vstate{mesh: v.Mesh, disp: u.Dispatchable}, nil
}

// MeshEvent field numbers (proto/meshcast/v1/bus.proto).
const (
	fMesh      = 1
	fUpsert    = 2
	fRemove    = 3
	fObserved  = 4
	fMovedTo   = 5
	fPublished = 6
	// Removal
	fRemovalID     = 1
	fRemovalReason = 2
)

// appendEvent appends the protobuf encoding of the MeshEvent for op o (vehicle bytes vb for an
// upsert) to b. It produces the same bytes as a deterministic proto.Marshal, without building the
// message or marshalling the vehicle a second time.
func appendEvent(b []byte, o op, id string, vb []byte, observed, published int64) []byte {
	// Go's protobuf runtime writes the oneof after the other fields; do the same so the bytes match.
	b = protowire.AppendTag(b, fMesh, protowire.BytesType)
	b = protowire.AppendString(b, o.mesh)
	if observed != 0 {
		b = protowire.AppendTag(b, fObserved, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(observed))
	}
	if o.moved != "" {
		b = protowire.AppendTag(b, fMovedTo, protowire.BytesType)
		b = protowire.AppendString(b, o.moved)
	}
	if published != 0 {
		b = protowire.AppendTag(b, fPublished, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(published))
	}
	if o.upsert {
		b = protowire.AppendTag(b, fUpsert, protowire.BytesType)
		return protowire.AppendBytes(b, vb)
	}
	n := protowire.SizeTag(fRemovalID) + protowire.SizeBytes(len(id))
	if o.reason != 0 {
		n += protowire.SizeTag(fRemovalReason) + protowire.SizeVarint(uint64(o.reason))
	}
	b = protowire.AppendTag(b, fRemove, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b = protowire.AppendTag(b, fRemovalID, protowire.BytesType)
	b = protowire.AppendString(b, id)
	if o.reason != 0 {
		b = protowire.AppendTag(b, fRemovalReason, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(o.reason))
	}
	return b
}

// marshalVehicle encodes the vehicle deterministically.
func marshalVehicle(v *meshcastv1.Vehicle) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("bus: marshal vehicle %s: %w", v.GetId(), err)
	}
	return b, nil
}

// DecodeEvent decodes a MeshEvent received on mesh m's channel and checks that it is about m and
// carries an upsert with a vehicle id or a removal with a vehicle id.
func DecodeEvent(m mesh.Code, raw []byte) (*meshcastv1.MeshEvent, error) {
	ev := new(meshcastv1.MeshEvent)
	if err := proto.Unmarshal(raw, ev); err != nil {
		return nil, fmt.Errorf("bus: decode event on mesh %d: %w", uint64(m), err)
	}
	var want [20]byte
	if ev.Mesh != string(m.AppendTo(want[:0])) {
		return nil, fmt.Errorf("bus: event for mesh %q on the channel of mesh %d", ev.Mesh, uint64(m))
	}
	switch k := ev.Kind.(type) {
	case *meshcastv1.MeshEvent_Upsert:
		if k.Upsert.GetId() == "" {
			return nil, fmt.Errorf("bus: upsert without vehicle id on mesh %d", uint64(m))
		}
	case *meshcastv1.MeshEvent_Remove:
		if k.Remove.GetId() == "" {
			return nil, fmt.Errorf("bus: removal without vehicle id on mesh %d", uint64(m))
		}
	default:
		return nil, fmt.Errorf("bus: event without upsert or removal on mesh %d", uint64(m))
	}
	return ev, nil
}

// decodeVehicle decodes a snapshot entry.
func decodeVehicle(b []byte) (*meshcastv1.Vehicle, error) {
	v := new(meshcastv1.Vehicle)
	if err := proto.Unmarshal(b, v); err != nil {
		return nil, err
	}
	if v.Id == "" {
		return nil, errors.New("vehicle without id")
	}
	return v, nil
}
