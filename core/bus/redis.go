package bus

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshcast/meshcast/core/mesh"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"github.com/redis/rueidis"
)

// The Lua scripts. Every script touches the keys of one hash tag only (one vehicle bucket, or one
// mesh bucket), so it runs atomically on the slot's master. They are idempotent (guarded by the
// fix time), so the client may retry them after a lost reply. They make as few redis.call()s as
// they can: inside a script each call costs about as much as the command itself again (argument
// and reply conversion), and Redis CPU is what limits Apply throughput. The two Apply scripts take
// a batch of items (see batcher) and return one string for all of them.

// casScript is the per-vehicle compare-and-set, for a batch of vehicles of one vehicle bucket.
// The state of a vehicle is one string "<ts>,<mesh>,<disp>,<previous mesh>,<previous disp>".
// KEYS: the vehicle states (a vehicle may come twice: items apply in order). ARGV: state TTL ms,
// then per key the fix "<ts>,<mesh>,<dispatchable 0/1>".
// Returns the items' results joined by ';': "1,<old mesh>,<old disp>" when applied,
// "2,<previous mesh>,<previous disp>" for a duplicate of the last applied fix (the caller replays
// that transition; the guarded mesh writes make the replay a no-op unless a write was lost), "0"
// when stale. A state that does not parse counts as none.
const casScript = `
local ttl, seen, out = ARGV[1], {}, {}
local vals = redis.call('MGET', unpack(KEYS))
for i = 1, #KEYS do
  local k, fix = KEYS[i], ARGV[i + 1]
  local s = seen[k]
  if s == nil then s = vals[i] end
  local r, md = nil, ',,0'
  if s then
    -- c: "<ts>,<mesh>,<disp>" of the state, t: its ts, m: ",<mesh>,<disp>"
    local c, t, m = string.match(s, '^((%-?%d+)(,%d*,[01])),%d*,[01]$')
    if t then
      local cur, ts = tonumber(t), tonumber(string.match(fix, '^%-?%d+'))
      if cur > ts then
        r = '0'
      elseif cur == ts then
        r = '0'
        if c == fix then r = '2,' .. string.sub(s, #c + 2) end
      else
        md = m
      end
    end
  end
  if not r then
    s = fix .. md
    redis.call('SET', k, s, 'PX', ttl)
    seen[k] = s
    r = '1' .. md
  end
  out[i] = r
end
return table.concat(out, ';')
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

// writeScript is the guarded mesh write, for a batch of writes to the meshes of one mesh bucket:
// each stores its entry and publishes its event unless the mesh already saw a fix as new or newer
// for the vehicle (upsert or tombstone). Every mesh written is trimmed if its flag says so and
// gets one PEXPIRE per batch.
// KEYS: per mesh j: hash (2j-1), channel (2j). ARGV: key TTL ms, cutoff, trim flags (one '0'/'1'
// per mesh), then per mesh in KEYS order: its number of items n, then n times: vehicle id, entry
// ("<ts>|…", the fix time comes from it), event.
// Returns one '1' (written and published) or '0' (not newer) per item, in ARGV order.
const writeScript = meshLua + `
local ttl, cutoff, trims, out = ARGV[1], ARGV[2], ARGV[3], {}
local i = 4
for j = 1, #KEYS / 2 do
  local h, ch, written = KEYS[2 * j - 1], KEYS[2 * j], false
  local last = i + 3 * tonumber(ARGV[i])
  for a = i + 1, last, 3 do
    local id, entry = ARGV[a], ARGV[a + 1]
    local cur = redis.call('HGET', h, id)
    if cur and fixtime(cur) >= fixtime(entry) then
      out[#out + 1] = '0'
    else
      redis.call('HSET', h, id, entry)
      redis.call('SPUBLISH', ch, ARGV[a + 2])
      written = true
      out[#out + 1] = '1'
    end
  end
  i = last + 1
  if written then
    if string.byte(trims, j) == 49 then trim(h, cutoff) end
    redis.call('PEXPIRE', h, ttl)
  end
end
return table.concat(out)
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

// trimEvery is the mean number of batches of writes to a mesh between trims of the mesh (random
// sampling), which bounds the leftovers of vehicles that stopped reporting in a busy mesh nobody
// reads. A trim reads and parses the whole mesh: at 1 in 16 it cost about 8% of Redis' CPU in
// BenchmarkApplySingle.
const trimEvery = 64

// Buckets and batches. The key schema depends on the bucket counts: every bus sharing a Redis
// (bridges and edges) must use the same ones. See the package doc ("Batching") for the choice.
var (
	// vehicleBuckets is the number of vehicle hash tags {v<n>}: a compare-and-set batch holds
	// vehicles of one bucket.
	vehicleBuckets = 16
	// meshBuckets is the number of mesh hash tags {m<n>}: a mesh-write batch holds meshes of one
	// bucket, and the meshes' channels spread over the shards by bucket.
	meshBuckets = 16
	// maxBatch caps the items of one script call.
	maxBatch = 128
)

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

	// trimNow says whether a mesh written by a batch is trimmed in that batch: 1 in trimEvery at
	// random (tests set it, before the first Apply, to decide).
	trimNow func() bool

	gate    *gate                      // shared by the batchers; nil when BatchDelay is 0
	release func()                     // what Hold returns (one function: a release is called once)
	casB    []*batcher[casReq, casRes] // per vehicle bucket
	writeB  []*batcher[writeReq, bool] // per mesh bucket
	ctx     context.Context            // cancelled by Close: ends the batches in flight
	cancel  context.CancelFunc
	wg      sync.WaitGroup // running batchers
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
		trimNow:  func() bool { return rand.IntN(trimEvery) == 0 },
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	if o.BatchDelay > 0 {
		b.gate = newGate(b.ctx, o.BatchDelay, b.sendRound)
		b.gate.early = o.BatchEarly
	}
	b.release = func() { b.gate.add(-1) }
	wait := func(d time.Duration) { b.m.batchWait.Observe(d.Seconds()) }
	b.casB = make([]*batcher[casReq, casRes], vehicleBuckets)
	for i := range b.casB {
		sc := new(casScratch)
		b.casB[i] = newBatcher(b.ctx, &b.wg, maxBatch, b.gate, func(ctx context.Context, calls []*call[casReq, casRes]) error {
			return b.execCAS(ctx, calls, sc)
		})
		b.casB[i].wait = wait
	}
	b.writeB = make([]*batcher[writeReq, bool], meshBuckets)
	for i := range b.writeB {
		sc := new(writeScratch)
		b.writeB[i] = newBatcher(b.ctx, &b.wg, maxBatch, b.gate, func(ctx context.Context, calls []*call[writeReq, bool]) error {
			return b.execWrite(ctx, calls, sc)
		})
		b.writeB[i].wait = wait
	}
	b.sub = newSubscriber(b, subc)
	return b, nil
}

// bucket returns a stable bucket of s in [0, n): FNV-1a, 32 bits.
func bucket(s string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

// MeshHashTag returns the Redis Cluster hash tag of mesh m's keys and shard channel, "{m<n>}"
// (see the package doc): its hash slot is theirs, whatever the key prefix.
func MeshHashTag(m mesh.Code) string { return meshTag(m.String()) }

func meshTag(m string) string { return "{m" + strconv.Itoa(bucket(m, meshBuckets)) + "}" }

// vehicleKey is the per-vehicle state: <prefix>:{v<n>}:<id>.
func (b *redisBus) vehicleKey(id string) string {
	return b.o.KeyPrefix + ":{v" + strconv.Itoa(bucket(id, vehicleBuckets)) + "}:" + id
}

// meshKeys returns <prefix>:{m<n>}:<mesh>:veh (the hash) and <prefix>:{m<n>}:<mesh>:ev (the shard
// channel), one slot.
func (b *redisBus) meshKeys(m string) (hash, channel string) {
	p := b.o.KeyPrefix + ":" + meshTag(m) + ":" + m + ":"
	return p + "veh", p + "ev"
}

// Hold implements Holder.
func (b *redisBus) Hold() (release func()) {
	if b.gate == nil || !b.gate.early {
		return nil
	}
	b.gate.add(1)
	return b.release
}

func (b *redisBus) Apply(ctx context.Context, u Update) (Result, error) {
	if b.gate != nil && b.gate.early {
		b.gate.add(1) // on its way to a bucket (early rounds), until it waits in one or returns
		if rel, _ := ctx.Value(releaseKey{}).(func()); rel != nil {
			rel() // the caller's Hold: this call counts itself now
		}
		defer b.gate.add(-1)
	}
	res, err := b.apply(ctx, u)
	switch {
	case err != nil:
		b.m.applyErrors.Inc()
	case res.Applied:
		b.m.applied.Inc()
	default:
		b.m.stale.Inc()
	}
	if res.Events > 0 {
		b.m.published.Add(float64(res.Events))
	}
	return res, err
}

// casReq is one vehicle's compare-and-set in a batch (casScript): its state key and the fix
// "<ts>,<mesh>,<disp>".
type casReq struct {
	key, fix string
}

// casRes is its result: code 0 stale, 1 applied, 2 duplicate; the vehicle's state before.
type casRes struct {
	code int
	old  vstate
}

// writeReq is one guarded mesh write in a batch (writeScript).
type writeReq struct {
	mesh, id, entry, event string
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
	var buf [384]byte
	fix := strconv.AppendInt(buf[:0], ts, 10)
	nts := len(fix) // fix[:nts] is the fix time
	fix = append(append(fix, ','), cur.mesh...)
	if cur.disp {
		fix = append(fix, ",1"...)
	} else {
		fix = append(fix, ",0"...)
	}
	cr, err := b.casB[bucket(id, vehicleBuckets)].do(ctx, casReq{key: b.vehicleKey(id), fix: string(fix)})
	if err != nil {
		return Result{}, fmt.Errorf("bus: apply %s@%d: vehicle state: %w", id, ts, err)
	}
	if cr.code == 0 {
		return Result{}, nil
	}
	res := Result{Applied: cr.code == 1}
	var ops [2]op
	for _, o := range plan(ops[:0], cr.old, cur, u.Reason) {
		// The entry "<ts>|<vehicle>" (or "<ts>|") and the event, in one allocation.
		e := append(buf[:nts], '|')
		kind := "removal"
		if o.upsert {
			e, kind = append(e, vb...), "upsert"
		}
		n := len(e)
		both := string(appendEvent(e, o, id, vb, ts, nowMs))
		entry, ev := both[:n], both[n:]
		ok, err := b.writeB[bucket(o.mesh, meshBuckets)].do(ctx, writeReq{mesh: o.mesh, id: id, entry: entry, event: ev})
		if err != nil {
			return res, fmt.Errorf("bus: apply %s@%d: %s on mesh %s: %w", id, ts, kind, o.mesh, err)
		}
		if ok {
			res.Events++
		}
	}
	return res, nil
}

// The SHA-1 of the Apply scripts (EVALSHA in a round's pipeline; see runScript).
var casSHA, writeSHA = scriptSHA(casScript), scriptSHA(writeScript)

func scriptSHA(src string) string {
	sum := sha1.Sum([]byte(src))
	return hex.EncodeToString(sum[:])
}

// runScript runs an Apply script for a batch: in the batch's round of the gate when it has one
// (the round sends it with the other buckets' calls as EVALSHA), else on its own. A script not
// loaded on its node (NOSCRIPT: a new or flushed server) is run again with EVAL by Lua.Exec.
func (b *redisBus) runScript(ctx context.Context, lua *rueidis.Lua, sha string, keys, args []string) rueidis.RedisResult {
	if r := roundOf(ctx); r != nil {
		cmd := b.pub.B().Evalsha().Sha1(sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build().ToRetryable()
		res := b.gate.do(ctx, r, cmd).(rueidis.RedisResult)
		if err, ok := rueidis.IsRedisErr(res.Error()); !ok || !err.IsNoScript() {
			return res
		}
	}
	return lua.Exec(ctx, b.pub, keys, args)
}

// sendRound is the gate's send: the calls of a round in one DoMulti (rueidis pipelines the
// commands of each node in one write).
func (b *redisBus) sendRound(ctx context.Context, cmds []any) []any {
	cs := make([]rueidis.Completed, len(cmds))
	for i, c := range cmds {
		cs[i] = c.(rueidis.Completed)
	}
	res := b.pub.DoMulti(ctx, cs...)
	out := make([]any, len(res))
	for i, r := range res {
		out[i] = r
	}
	return out
}

// casScratch is the memory of one vehicle bucket's script calls, reused from call to call (a
// bucket has one call at a time; rueidis copies the arguments into its command).
type casScratch struct {
	keys, args []string
}

// execCAS runs casScript for a batch of one vehicle bucket.
func (b *redisBus) execCAS(ctx context.Context, calls []*call[casReq, casRes], sc *casScratch) error {
	keys := sc.keys[:0]
	args := append(sc.args[:0], b.stateTTL)
	for _, c := range calls {
		keys = append(keys, c.req.key)
		args = append(args, c.req.fix)
	}
	defer func() { sc.keys, sc.args = clearStrings(keys), clearStrings(args) }()
	s, err := b.runScript(ctx, b.cas, casSHA, keys, args).ToString()
	if err != nil {
		return err
	}
	for _, c := range calls {
		var item string
		item, s, _ = strings.Cut(s, ";")
		if c.res, c.err = parseCAS(item); c.err != nil {
			c.err = fmt.Errorf("reply %q: %w", item, c.err)
		}
	}
	if s != "" {
		return fmt.Errorf("reply of a batch of %d has more items", len(calls))
	}
	return nil
}

// parseCAS parses one item of casScript's reply: "0", or "1,<mesh>,<disp>" / "2,<mesh>,<disp>".
func parseCAS(s string) (casRes, error) {
	if s == "0" {
		return casRes{}, nil
	}
	code, rest, ok := strings.Cut(s, ",")
	m, d, ok2 := strings.Cut(rest, ",")
	if !ok || !ok2 || (code != "1" && code != "2") || (d != "0" && d != "1") || !digits(m) {
		return casRes{}, errors.New("not a vehicle state result")
	}
	return casRes{code: int(code[0] - '0'), old: vstate{mesh: m, disp: d == "1"}}, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// writeScratch is the memory of one mesh bucket's script calls, reused like casScratch.
type writeScratch struct {
	meshes, keys, args []string
	counts, idx, pos   []int
	order              []*call[writeReq, bool]
	trims              []byte
}

// clearStrings empties s for reuse without keeping its strings alive.
func clearStrings(s []string) []string {
	clear(s)
	return s[:0]
}

// execWrite runs writeScript for a batch of one mesh bucket.
func (b *redisBus) execWrite(ctx context.Context, calls []*call[writeReq, bool], sc *writeScratch) error {
	// Group the items by mesh, keeping their order within a mesh: meshes[j] has counts[j] items.
	meshes, counts, idx := sc.meshes[:0], sc.counts[:0], sc.idx[:0]
	for _, c := range calls {
		j := slices.Index(meshes, c.req.mesh)
		if j < 0 {
			j = len(meshes)
			meshes = append(meshes, c.req.mesh)
			counts = append(counts, 0)
		}
		idx = append(idx, j)
		counts[j]++
	}
	keys, trims := sc.keys[:0], sc.trims[:0]
	for _, m := range meshes {
		h, ch := b.meshKeys(m)
		keys = append(keys, h, ch)
		t := byte('0')
		if b.trimNow() {
			t = '1'
		}
		trims = append(trims, t)
	}
	args := append(sc.args[:0], b.keyTTL,
		strconv.FormatInt(b.o.Now().UnixMilli()-b.o.TTL.Milliseconds(), 10), string(trims))
	order := calls // the calls in ARGV order: by mesh, in their order within a mesh
	pos := sc.pos[:0]
	grouped := len(meshes) > 1
	if grouped {
		order = slices.Grow(sc.order[:0], len(calls))[:len(calls)]
		pos = append(pos, 0)
		for j := 1; j < len(meshes); j++ {
			pos = append(pos, pos[j-1]+counts[j-1])
		}
		for i, c := range calls {
			order[pos[idx[i]]] = c
			pos[idx[i]]++
		}
	}
	k := 0
	for _, n := range counts {
		args = append(args, strconv.Itoa(n))
		for _, c := range order[k : k+n] {
			args = append(args, c.req.id, c.req.entry, c.req.event)
		}
		k += n
	}
	defer func() {
		sc.meshes, sc.keys, sc.args = clearStrings(meshes), clearStrings(keys), clearStrings(args)
		sc.counts, sc.idx, sc.pos, sc.trims = counts[:0], idx[:0], pos[:0], trims[:0]
		if grouped {
			clear(order)
			sc.order = order[:0]
		}
	}()
	s, err := b.runScript(ctx, b.write, writeSHA, keys, args).ToString()
	if err != nil {
		return err
	}
	if len(s) != len(order) {
		return fmt.Errorf("reply of a batch of %d has %d items", len(order), len(s))
	}
	for i, c := range order {
		switch s[i] {
		case '1':
			c.res = true
		case '0':
		default:
			c.err = fmt.Errorf("reply item %q", s[i])
		}
	}
	return nil
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
	h, _ := b.meshKeys(ms)
	vals, err := b.snapshot.Exec(ctx, b.pub, []string{h}, []string{cutoff}).ToArray()
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
	for _, bt := range b.casB {
		bt.close()
	}
	for _, bt := range b.writeB {
		bt.close()
	}
	if b.gate != nil {
		b.gate.stop()
	}
	b.cancel() // fails the batches in flight and those still queued
	b.wg.Wait()
	b.sub.close()
	b.pub.Close()
	return nil
}

// backoff returns the wait before retry attempt n (1-based): 50ms doubling up to 2s.
func backoff(n int) time.Duration {
	d := 50 * time.Millisecond << min(n-1, 6)
	return min(d, 2*time.Second)
}
