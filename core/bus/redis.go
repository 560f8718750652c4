package bus

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/meshcast/meshcast/core/mesh"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"github.com/redis/rueidis"
)

// The Lua scripts. Every script touches the keys of one hash tag only (one vehicle, or one mesh), so
// it runs atomically on the slot's master. They are idempotent (guarded by the fix time), so the
// client may retry them after a lost reply.

// casScript is the per-vehicle compare-and-set.
// KEYS: vehicle state. ARGV: fix ts, mesh, dispatchable (0/1), state TTL ms.
// Returns {1, old mesh, old disp} when applied, {2, previous mesh, previous disp} for a duplicate
// of the last applied fix (the caller replays that transition; the guarded mesh writes make the
// replay a no-op unless a write was lost), {0} when stale.
const casScript = `
local s = redis.call('HMGET', KEYS[1], 'ts', 'mesh', 'disp', 'pmesh', 'pdisp')
if s[1] then
  local cur, ts = tonumber(s[1]), tonumber(ARGV[1])
  if cur > ts then return {0} end
  if cur == ts then
    if s[2] == ARGV[2] and s[3] == ARGV[3] then return {2, s[4] or '', s[5] or '0'} end
    return {0}
  end
end
redis.call('HSET', KEYS[1], 'ts', ARGV[1], 'mesh', ARGV[2], 'disp', ARGV[3], 'pmesh', s[2] or '', 'pdisp', s[3] or '0')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1, s[2] or '', s[3] or '0'}
`

// trimLua drops up to 64 entries (live or tombstone) whose fix is at or before the cutoff.
const trimLua = `
local function trim(veh, tsk, cutoff)
  local old = redis.call('ZRANGEBYSCORE', tsk, '-inf', cutoff, 'LIMIT', 0, 64)
  if #old > 0 then
    redis.call('ZREM', tsk, unpack(old))
    redis.call('HDEL', veh, unpack(old))
  end
end
`

// upsertScript stores a dispatchable vehicle in a mesh and publishes the event, unless the mesh
// already saw a fix as new or newer for it (upsert or removal tombstone).
// KEYS: mesh veh hash, mesh ts zset, mesh channel. ARGV: id, ts, vehicle, event, cutoff, key TTL ms.
const upsertScript = trimLua + `
local cur = redis.call('ZSCORE', KEYS[2], ARGV[1])
if cur and tonumber(cur) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
trim(KEYS[1], KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('SPUBLISH', KEYS[3], ARGV[4])
return 1
`

// removeScript takes a vehicle out of a mesh, leaves a tombstone (its fix time in the ts zset) and
// publishes the event, unless the mesh already saw a fix as new or newer for it.
// KEYS: mesh veh hash, mesh ts zset, mesh channel. ARGV: id, ts, event, cutoff, key TTL ms.
const removeScript = trimLua + `
local cur = redis.call('ZSCORE', KEYS[2], ARGV[1])
if cur and tonumber(cur) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
trim(KEYS[1], KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('SPUBLISH', KEYS[3], ARGV[3])
return 1
`

// snapshotScript returns the payloads of the vehicles whose fix is after the cutoff.
// KEYS: mesh veh hash, mesh ts zset. ARGV: cutoff.
const snapshotScript = trimLua + `
trim(KEYS[1], KEYS[2], ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')
local out = {}
for i = 1, #ids, 512 do
  local chunk = {}
  for j = i, math.min(i + 511, #ids) do chunk[#chunk + 1] = ids[j] end
  local vals = redis.call('HMGET', KEYS[1], unpack(chunk))
  for j = 1, #vals do
    if vals[j] then out[#out + 1] = vals[j] end
  end
end
return out
`

// redisBus is the Bus over Redis (standalone or cluster); see the package doc.
type redisBus struct {
	o        Options
	m        *metrics
	pub      rueidis.Client // Apply and Snapshot (auto-pipelined)
	sub      *subscriber    // subscriptions, on their own client
	cas      *rueidis.Lua
	upsert   *rueidis.Lua
	remove   *rueidis.Lua
	snapshot *rueidis.Lua
	keyTTL   string // PEXPIRE of the mesh keys, ms
	stateTTL string // PEXPIRE of the vehicle state, ms
	closed   atomic.Bool
}

func openRedis(ctx context.Context, ep endpoint, o Options) (Bus, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	opt := rueidis.ClientOption{
		InitAddress:       ep.hosts,
		Username:          ep.user,
		Password:          ep.pwd,
		SelectDB:          ep.db,
		ForceSingleClient: !ep.cluster,
		DisableCache:      true,
		ClientName:        "meshcast-bus",
	}
	pub, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("bus: connect to %v: %w", ep.hosts, err)
	}
	if ep.cluster && pub.Mode() != rueidis.ClientModeCluster {
		pub.Close()
		return nil, fmt.Errorf("bus: %v is not a Redis Cluster (use redis://)", ep.hosts)
	}
	if err := pub.Do(ctx, pub.B().Ping().Build()).Error(); err != nil {
		pub.Close()
		return nil, fmt.Errorf("bus: ping %v: %w", ep.hosts, err)
	}
	opt.ClientName = "meshcast-bus-sub"
	subc, err := rueidis.NewClient(opt)
	if err != nil {
		pub.Close()
		return nil, fmt.Errorf("bus: connect subscriber to %v: %w", ep.hosts, err)
	}
	b := &redisBus{
		o:        o,
		m:        newMetrics(o.Registerer),
		pub:      pub,
		cas:      rueidis.NewLuaScriptRetryable(casScript),
		upsert:   rueidis.NewLuaScriptRetryable(upsertScript),
		remove:   rueidis.NewLuaScriptRetryable(removeScript),
		snapshot: rueidis.NewLuaScriptRetryable(snapshotScript),
		keyTTL:   strconv.FormatInt((2 * o.TTL).Milliseconds(), 10),
		stateTTL: strconv.FormatInt(o.StateTTL.Milliseconds(), 10),
	}
	b.sub = newSubscriber(b, subc)
	return b, nil
}

// vehicleKey is the per-vehicle state hash: <prefix>:veh:{<id>}.
func (b *redisBus) vehicleKey(id string) string { return b.o.KeyPrefix + ":veh:{" + id + "}" }

// meshKeys returns <prefix>:{<mesh>}:veh, :ts and :ev (the shard channel), one slot.
func (b *redisBus) meshKeys(m string) []string {
	p := b.o.KeyPrefix + ":{" + m + "}:"
	return []string{p + "veh", p + "ts", p + "ev"}
}

func (b *redisBus) Apply(ctx context.Context, u Update) (Result, error) {
	res, err := b.apply(ctx, u)
	switch {
	case err != nil:
		b.m.applies.WithLabelValues("error").Inc()
	case res.Applied:
		b.m.applies.WithLabelValues("applied").Inc()
	default:
		b.m.applies.WithLabelValues("stale").Inc()
	}
	if res.Events > 0 {
		b.m.published.Add(float64(res.Events))
	}
	return res, err
}

func (b *redisBus) apply(ctx context.Context, u Update) (Result, error) {
	if b.closed.Load() {
		return Result{}, ErrClosed
	}
	cur, err := check(u)
	if err != nil {
		return Result{}, err
	}
	var vb []byte
	if cur.disp {
		if vb, err = marshalVehicle(u.Vehicle); err != nil {
			return Result{}, err
		}
	}
	id, ts := u.Vehicle.Id, u.Vehicle.ObservedAtMs
	nowMs := b.o.Now().UnixMilli()
	tsArg := strconv.FormatInt(ts, 10)
	disp := "0"
	if cur.disp {
		disp = "1"
	}
	arr, err := b.cas.Exec(ctx, b.pub, []string{b.vehicleKey(id)}, []string{tsArg, cur.mesh, disp, b.stateTTL}).ToArray()
	if err != nil {
		return Result{}, fmt.Errorf("bus: apply %s@%d: vehicle state: %w", id, ts, err)
	}
	code, err := arr[0].AsInt64()
	if err != nil {
		return Result{}, fmt.Errorf("bus: apply %s@%d: vehicle state reply: %w", id, ts, err)
	}
	if code == 0 {
		return Result{}, nil
	}
	if len(arr) != 3 {
		return Result{}, fmt.Errorf("bus: apply %s@%d: vehicle state reply has %d elements", id, ts, len(arr))
	}
	oldMesh, err1 := arr[1].ToString()
	oldDisp, err2 := arr[2].ToString()
	if err1 != nil || err2 != nil {
		return Result{}, fmt.Errorf("bus: apply %s@%d: vehicle state reply: %v %v", id, ts, err1, err2)
	}
	res := Result{Applied: code == 1}
	cutoff := strconv.FormatInt(nowMs-b.o.TTL.Milliseconds(), 10)
	var buf [256]byte
	for _, o := range plan(vstate{mesh: oldMesh, disp: oldDisp == "1"}, cur, u.Reason) {
		ev := string(appendEvent(buf[:0], o, id, vb, ts, nowMs))
		var r rueidis.RedisResult
		if o.upsert {
			r = b.upsert.Exec(ctx, b.pub, b.meshKeys(o.mesh), []string{id, tsArg, string(vb), ev, cutoff, b.keyTTL})
		} else {
			r = b.remove.Exec(ctx, b.pub, b.meshKeys(o.mesh), []string{id, tsArg, ev, cutoff, b.keyTTL})
		}
		n, err := r.AsInt64()
		if err != nil {
			kind := "removal"
			if o.upsert {
				kind = "upsert"
			}
			return res, fmt.Errorf("bus: apply %s@%d: %s on mesh %s: %w", id, ts, kind, o.mesh, err)
		}
		res.Events += int(n)
	}
	return res, nil
}

func (b *redisBus) Snapshot(ctx context.Context, m mesh.Code) ([]*meshcastv1.Vehicle, error) {
	if b.closed.Load() {
		return nil, ErrClosed
	}
	if !m.Valid() {
		return nil, fmt.Errorf("bus: snapshot: invalid mesh %d", uint64(m))
	}
	cutoff := strconv.FormatInt(b.o.Now().UnixMilli()-b.o.TTL.Milliseconds(), 10)
	ms := m.String()
	vals, err := b.snapshot.Exec(ctx, b.pub, b.meshKeys(ms)[:2], []string{cutoff}).ToArray()
	if err != nil {
		return nil, fmt.Errorf("bus: snapshot of mesh %s: %w", ms, err)
	}
	out := make([]*meshcastv1.Vehicle, 0, len(vals))
	for _, val := range vals {
		s, err := val.ToString()
		if err != nil {
			return nil, fmt.Errorf("bus: snapshot of mesh %s: %w", ms, err)
		}
		v, err := decodeVehicle([]byte(s))
		if err != nil {
			b.m.badData.Inc()
			b.sub.logBad("snapshot entry", ms, err)
			continue
		}
		out = append(out, v)
	}
	return out, nil
}

func (b *redisBus) Subscribe(h Handler) (Subscription, error) {
	if b.closed.Load() {
		return nil, ErrClosed
	}
	return b.sub.subscribe(h)
}

func (b *redisBus) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	b.sub.close()
	b.pub.Close()
	return nil
}

// backoff returns the wait before retry attempt n (1-based): 50ms doubling up to 2s.
func backoff(n int) time.Duration {
	d := 50 * time.Millisecond << min(n-1, 6)
	return min(d, 2*time.Second)
}
