package bus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/meshcast/meshcast/core/mesh"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"github.com/redis/rueidis"
)

// The Lua scripts. Every script touches the keys of one hash tag only (one vehicle, or one mesh), so
// it runs atomically on the slot's master. They are idempotent (guarded by the fix time), so the
// client may retry them after a lost reply. They make as few redis.call()s as they can: inside a
// script each call costs about as much as the command itself again (argument and reply
// conversion), and Redis CPU is what limits Apply throughput.

// casScript is the per-vehicle compare-and-set. The state is one string
// "<ts>,<mesh>,<disp>,<previous mesh>,<previous disp>".
// KEYS: vehicle state. ARGV: fix ts, mesh, dispatchable (0/1), state TTL ms.
// Returns {1, old mesh, old disp} when applied, {2, previous mesh, previous disp} for a duplicate
// of the last applied fix (the caller replays that transition; the guarded mesh writes make the
// replay a no-op unless a write was lost), {0} when stale.
const casScript = `
local pm, pd = '', '0'
local s = redis.call('GET', KEYS[1])
if s then
  local t, m, d, ppm, ppd = string.match(s, '^(%-?%d+),(%d*),([01]),(%d*),([01])$')
  if t then
    local cur, ts = tonumber(t), tonumber(ARGV[1])
    if cur > ts then return {0} end
    if cur == ts then
      if m == ARGV[2] and d == ARGV[3] then return {2, ppm, ppd} end
      return {0}
    end
    pm, pd = m, d
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. ',' .. ARGV[2] .. ',' .. ARGV[3] .. ',' .. pm .. ',' .. pd, 'PX', ARGV[4])
return {1, pm, pd}
`

// meshLua is shared by the mesh scripts. A mesh hash maps vehicle id to "<ts>|<protobuf Vehicle>",
// or "<ts>|" for a removal (tombstone).
const meshLua = `
local function fixtime(v)
  return tonumber(string.match(v, '^[^|]*')) or -1/0
end
-- trim deletes every entry (vehicle or tombstone) whose fix is at or before the cutoff.
local function trim(h, cutoff, all)
  all = all or redis.call('HGETALL', h)
  local c, old = tonumber(cutoff), {}
  for i = 1, #all, 2 do
    if fixtime(all[i + 1]) <= c then old[#old + 1] = all[i] end
  end
  for i = 1, #old, 512 do
    redis.call('HDEL', h, unpack(old, i, math.min(i + 511, #old)))
  end
end
`

// writeScript is the guarded mesh write: it stores the entry and publishes the event unless the
// mesh already saw a fix as new or newer for the vehicle (upsert or tombstone).
// KEYS: mesh hash, mesh channel. ARGV: id, ts, entry, event, cutoff, key TTL ms, trim (0/1).
const writeScript = meshLua + `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and fixtime(cur) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[7] == '1' then trim(KEYS[1], ARGV[5]) end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('SPUBLISH', KEYS[2], ARGV[4])
return 1
`

// snapshotScript trims the mesh and returns the entries of the vehicles whose fix is after the
// cutoff. KEYS: mesh hash. ARGV: cutoff.
const snapshotScript = meshLua + `
local all = redis.call('HGETALL', KEYS[1])
trim(KEYS[1], ARGV[1], all)
local c, out = tonumber(ARGV[1]), {}
for i = 2, #all, 2 do
  local v = all[i]
  local p = string.find(v, '|', 1, true) -- the first '|' ends the fix time; a tombstone ends there
  if p and p < #v and fixtime(v) > c then out[#out + 1] = v end
end
return out
`

// trimEvery is the mean number of mesh writes between trims of a mesh (random sampling), which
// bounds the leftovers of vehicles that stopped reporting in a busy mesh nobody reads.
const trimEvery = 16

// redisBus is the Bus over Redis (standalone or cluster); see the package doc.
type redisBus struct {
	o        Options
	m        *metrics
	pub      rueidis.Client // Apply and Snapshot (auto-pipelined)
	sub      *subscriber    // subscriptions, on their own client
	cas      *rueidis.Lua
	write    *rueidis.Lua
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
		MaxFlushDelay:     o.FlushDelay,
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
	opt.MaxFlushDelay = 0
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
		write:    rueidis.NewLuaScriptRetryable(writeScript),
		snapshot: rueidis.NewLuaScriptRetryable(snapshotScript),
		keyTTL:   strconv.FormatInt((2 * o.TTL).Milliseconds(), 10),
		stateTTL: strconv.FormatInt(o.StateTTL.Milliseconds(), 10),
	}
	b.sub = newSubscriber(b, subc)
	return b, nil
}

// vehicleKey is the per-vehicle state: <prefix>:veh:{<id>}.
func (b *redisBus) vehicleKey(id string) string { return b.o.KeyPrefix + ":veh:{" + id + "}" }

// meshKeys returns <prefix>:{<mesh>}:veh (the hash) and <prefix>:{<mesh>}:ev (the shard channel),
// one slot.
func (b *redisBus) meshKeys(m string) []string {
	p := b.o.KeyPrefix + ":{" + m + "}:"
	return []string{p + "veh", p + "ev"}
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
		entry, kind := tsArg+"|", "removal"
		if o.upsert {
			entry, kind = tsArg+"|"+string(vb), "upsert"
		}
		trim := "0"
		if rand.IntN(trimEvery) == 0 {
			trim = "1"
		}
		n, err := b.write.Exec(ctx, b.pub, b.meshKeys(o.mesh), []string{id, tsArg, entry, ev, cutoff, b.keyTTL, trim}).AsInt64()
		if err != nil {
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
	vals, err := b.snapshot.Exec(ctx, b.pub, b.meshKeys(ms)[:1], []string{cutoff}).ToArray()
	if err != nil {
		return nil, fmt.Errorf("bus: snapshot of mesh %s: %w", ms, err)
	}
	out := make([]*meshcastv1.Vehicle, 0, len(vals))
	for _, val := range vals {
		s, err := val.ToString()
		if err != nil {
			return nil, fmt.Errorf("bus: snapshot of mesh %s: %w", ms, err)
		}
		_, payload, ok := strings.Cut(s, "|")
		if !ok {
			b.m.badData.Inc()
			b.sub.logBad("snapshot entry", ms, fmt.Errorf("no fix time in %q", s))
			continue
		}
		v, err := decodeVehicle([]byte(payload))
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
