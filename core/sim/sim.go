// Package sim owns the taxi simulator: N taxis driving plausible paths inside the service area
// of a zones file and reporting fixes as taxi terminals do (API.md §1). `meshcast sim`
// publishes its output over real MQTT; `meshcast demo` runs it in-process.
//
// # Model
//
// Each taxi advances once per report, by one report interval of simulated time:
//
//   - It drives at 15-50 km/h (a random walk of ±5 km/h per report) along a heading that drifts
//     by up to ±15° per report and turns 90° left or right at a random "intersection" (about one
//     report in eight).
//   - When the next position would leave the service area it turns back (a U-turn with ±30°)
//     instead, except one time in ten when it leaves: it then drives on for a few minutes and
//     heads back to a random point inside. Outside the service area it is not dispatchable.
//   - A vacant taxi sometimes (about once per two hours of vacancy) heads for the nearest
//     no-dispatch zone (a station taxi pool, the airport) and waits there 3-10 minutes before
//     driving on: it is in the service area but not dispatchable.
//   - Its status cycles vacant → dispatched → occupied → vacant, staying vacant for about 6
//     minutes (exponential), dispatched (driving to the rider) 2-8 minutes and occupied 5-25
//     minutes; now and then (2% of the cycles) it goes out_of_service for 20-40 minutes instead
//     of being dispatched. Config.TimeScale divides these durations, for demos.
//
// Every taxi has its own random source seeded from Config.Seed and its index, and reports at
// fixed times: start + (i/N)·Interval + k·Interval for taxi i (reports spread evenly over the
// interval). A fix's ts is its scheduled time, so the fixes are a function of the seed, the
// start time and the configuration only: Step may be called at any pace.
package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshcast/meshcast/core/geofence"
)

// Defaults of Config.
const (
	DefaultInterval = 3 * time.Second
	DefaultFleet    = "sim"
	DefaultSpeedMin = 15.0 // km/h
	DefaultSpeedMax = 50.0 // km/h
	DefaultLeave    = 0.1
)

// Format is the payload encoding.
type Format int

const (
	JSON     Format = iota // API.md §1 JSON (content type application/json or none)
	Protobuf               // meshcast.v1.Telemetry (content type application/x-protobuf)
)

// Config configures a simulation. Zones and Taxis are required.
type Config struct {
	Zones *geofence.Set
	Taxis int
	// Fleets the taxis belong to, assigned round-robin. Default ["sim"]. Each must match
	// [A-Za-z0-9_-]{1,64}.
	Fleets []string
	// Seed makes the simulation reproducible.
	Seed uint64
	// Interval between two reports of one taxi. Default 3s.
	Interval time.Duration
	// TimeScale divides the status durations (1: realistic minutes; 60: a minute per second).
	// Default 1.
	TimeScale float64
	// SpeedMin and SpeedMax bound the speed in km/h. Default 15 and 50.
	SpeedMin, SpeedMax float64
	// LeaveProb is the chance that a taxi reaching the edge of the service area leaves it
	// rather than turning back. Default 0.1; negative means never.
	LeaveProb float64
	// Format of the payloads. Default JSON.
	Format Format
	// Hotspots, when set, concentrate the fleet where riders are: HotspotShare of the taxis
	// (default 0.8) start around a hotspot chosen by weight, each of them cruises around its
	// hotspot (heading back when it strays beyond 2.5 radii), and an occupied trip takes it to
	// another hotspot chosen by weight. The others drive anywhere, as without hotspots.
	// Hotspots whose centre is outside every service area are ignored.
	Hotspots     []Hotspot
	HotspotShare float64
}

// Status values as spelled in the JSON payload.
const (
	Vacant       = "vacant"
	Dispatched   = "dispatched"
	Occupied     = "occupied"
	OutOfService = "out_of_service"
)

var statusNumber = map[string]uint64{Vacant: 1, Dispatched: 2, Occupied: 3, OutOfService: 4}

var classes = []struct {
	name string
	num  uint64
	cum  float64
}{{"standard", 1, 0.70}, {"premium", 2, 0.80}, {"van", 3, 0.90}, {"accessible", 4, 1.0}}

// Sim is a running simulation. It is not safe for concurrent use.
type Sim struct {
	cfg      Config
	start    time.Time
	taxis    []*taxi
	area     bbox // bounding box of the service areas
	pools    []*geofence.Zone
	interval float64 // seconds
	next     int64   // the fleet's next report (see dueAt)
	poolProb float64 // per report, for a vacant taxi: head for the nearest no-dispatch zone
	spots    spots
	buf      []byte
}

type bbox struct{ minLat, minLon, maxLat, maxLon float64 }

type taxi struct {
	idx            int
	topic          string
	class          int
	rng            *rand.Rand
	lat, lon       float64
	heading, speed float64 // degrees, km/h
	accuracy       float64
	status         string
	statusLeft     float64 // seconds of simulated time until the next status change
	outside        float64 // >0: seconds left driving outside before heading back
	returning      bool    // heading back into the service area
	target         [2]float64
	toPool         bool    // heading for a no-dispatch zone
	home           int     // index of the taxi's hotspot, -1: none
	toSpot         bool    // heading for a point of its hotspot
	waiting        float64 // seconds left waiting in a pool
	reports        int64   // reports emitted
	lastTS         int64
}

// New creates a simulation whose first reports are due at start.
func New(cfg Config, start time.Time) (*Sim, error) {
	if cfg.Zones == nil {
		return nil, errors.New("sim: no zones")
	}
	if cfg.Taxis < 0 || cfg.Taxis > 10_000_000 {
		return nil, fmt.Errorf("sim: %d taxis out of range [0, 10000000]", cfg.Taxis)
	}
	if len(cfg.Fleets) == 0 {
		cfg.Fleets = []string{DefaultFleet}
	}
	for _, f := range cfg.Fleets {
		if !validID(f) {
			return nil, fmt.Errorf("sim: fleet %q must match [A-Za-z0-9_-]{1,64}", f)
		}
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Interval < time.Millisecond {
		return nil, fmt.Errorf("sim: interval %v below 1ms", cfg.Interval)
	}
	if cfg.TimeScale == 0 {
		cfg.TimeScale = 1
	}
	if cfg.TimeScale < 0 || math.IsNaN(cfg.TimeScale) || math.IsInf(cfg.TimeScale, 0) {
		return nil, fmt.Errorf("sim: time scale %v must be positive", cfg.TimeScale)
	}
	if cfg.SpeedMin == 0 && cfg.SpeedMax == 0 {
		cfg.SpeedMin, cfg.SpeedMax = DefaultSpeedMin, DefaultSpeedMax
	}
	if cfg.SpeedMin <= 0 || cfg.SpeedMax < cfg.SpeedMin || cfg.SpeedMax > 300 {
		return nil, fmt.Errorf("sim: speeds [%v, %v] km/h: want 0 < min <= max <= 300", cfg.SpeedMin, cfg.SpeedMax)
	}
	if cfg.LeaveProb == 0 {
		cfg.LeaveProb = DefaultLeave
	}
	if cfg.LeaveProb > 1 {
		return nil, fmt.Errorf("sim: leave probability %v above 1", cfg.LeaveProb)
	}
	if cfg.HotspotShare == 0 {
		cfg.HotspotShare = 0.8
	}
	if !(cfg.HotspotShare > 0 && cfg.HotspotShare <= 1) {
		return nil, fmt.Errorf("sim: hotspot share %v: want (0, 1]", cfg.HotspotShare)
	}
	s := &Sim{cfg: cfg, start: start, interval: cfg.Interval.Seconds()}
	// About one pool visit per taxi per two hours of vacancy, whatever the interval.
	s.poolProb = s.interval / 7200 * cfg.TimeScale
	first := true
	for _, z := range cfg.Zones.Zones() {
		switch z.Kind {
		case geofence.ServiceArea:
			if first {
				s.area = bbox{z.MinLat, z.MinLon, z.MaxLat, z.MaxLon}
				first = false
			} else {
				s.area = bbox{min(s.area.minLat, z.MinLat), min(s.area.minLon, z.MinLon),
					max(s.area.maxLat, z.MaxLat), max(s.area.maxLon, z.MaxLon)}
			}
		case geofence.NoDispatch:
			s.pools = append(s.pools, z)
		}
	}
	if first {
		return nil, errors.New("sim: the zones have no service area")
	}
	if err := s.initSpots(cfg.Hotspots); err != nil {
		return nil, err
	}
	s.taxis = make([]*taxi, cfg.Taxis)
	width := len(strconv.Itoa(max(cfg.Taxis-1, 0)))
	for i := range s.taxis {
		t := &taxi{idx: i, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i))), home: -1}
		t.topic = fmt.Sprintf("taxi/%s/t%0*d/state", cfg.Fleets[i%len(cfg.Fleets)], width, i)
		c := t.rng.Float64()
		for t.class = 0; c > classes[t.class].cum; t.class++ {
		}
		var p [2]float64
		var err error
		if len(s.spots.list) > 0 && t.rng.Float64() < cfg.HotspotShare {
			t.home = s.spots.pick(t.rng)
			p, err = s.nearSpot(t.rng, t.home)
		} else {
			p, err = s.randomInside(t.rng)
		}
		if err != nil {
			return nil, err
		}
		t.lat, t.lon = p[0], p[1]
		t.heading = t.rng.Float64() * 360
		t.speed = cfg.SpeedMin + t.rng.Float64()*(cfg.SpeedMax-cfg.SpeedMin)
		t.accuracy = 3 + t.rng.Float64()*12
		// Start somewhere in the status cycle so the fleet is mixed from the first report.
		switch r := t.rng.Float64(); {
		case r < 0.45:
			t.status, t.statusLeft = Vacant, s.vacantFor(t.rng)
		case r < 0.55:
			t.status, t.statusLeft = Dispatched, s.dispatchedFor(t.rng)
		default:
			t.status, t.statusLeft = Occupied, s.occupiedFor(t.rng)*t.rng.Float64()
		}
		s.taxis[i] = t
	}
	return s, nil
}

// Taxis returns the number of taxis.
func (s *Sim) Taxis() int { return len(s.taxis) }

// Interval returns the report interval of one taxi.
func (s *Sim) Interval() time.Duration { return s.cfg.Interval }

// Format returns the payload format.
func (s *Sim) Format() Format { return s.cfg.Format }

// dueAt returns when report g of the fleet is due: report g is report g/N of taxi g%N, due at
// start + (g/N)·Interval + (g%N)/N·Interval.
func (s *Sim) dueAt(g int64) time.Time {
	n := int64(len(s.taxis))
	iv := int64(s.cfg.Interval)
	return s.start.Add(time.Duration(g/n*iv + g%n*iv/n))
}

// NextDue returns when the next report is due (the zero time without taxis). The reports of
// the fleet are spread evenly over each interval, so a publisher sleeping until NextDue and
// then calling Step publishes at an even pace.
func (s *Sim) NextDue() time.Time {
	if len(s.taxis) == 0 {
		return time.Time{}
	}
	return s.dueAt(s.next)
}

// Reports returns the number of reports emitted so far.
func (s *Sim) Reports() int64 { return s.next }

// Step emits, in time order, every report due at or before now, advancing each reporting taxi
// by one interval of simulated time. payload is owned by the callee only during the call (copy
// it to keep it).
func (s *Sim) Step(now time.Time, emit func(topic string, payload []byte)) {
	if len(s.taxis) == 0 {
		return
	}
	for {
		due := s.dueAt(s.next)
		if due.After(now) {
			return
		}
		t := s.taxis[s.next%int64(len(s.taxis))]
		s.advance(t)
		ts := due.UnixMilli()
		if ts <= t.lastTS { // sub-millisecond intervals: keep ts strictly increasing
			ts = t.lastTS + 1
		}
		t.lastTS = ts
		s.buf = s.appendPayload(s.buf[:0], t, ts)
		emit(t.topic, s.buf)
		t.reports++
		s.next++
	}
}

// advance moves t by one interval of simulated time and updates its status.
func (s *Sim) advance(t *taxi) {
	if t.reports == 0 {
		return // the first report is where the taxi starts
	}
	dt := s.interval
	s.updateStatus(t, dt)
	if t.waiting > 0 {
		t.waiting -= dt
		t.speed = 0
		if t.waiting <= 0 {
			t.heading = t.rng.Float64() * 360
			t.speed = s.cfg.SpeedMin
		}
		return
	}
	// A hotspot's taxi that strayed heads back to a point of its hotspot.
	if t.home >= 0 && !t.toSpot && !t.toPool && !t.returning && t.outside <= 0 {
		h := s.spots.list[t.home]
		if distanceM(t.lat, t.lon, h.Lat, h.Lon) > 2.5*h.RadiusM {
			if p, err := s.nearSpot(t.rng, t.home); err == nil {
				t.toSpot, t.target = true, p
			}
		}
	}
	// Speed: a bounded random walk.
	t.speed = clamp(t.speed+(t.rng.Float64()*2-1)*5, s.cfg.SpeedMin, s.cfg.SpeedMax)
	switch {
	case t.returning || t.toPool || t.toSpot:
		t.heading = bearing(t.lat, t.lon, t.target[0], t.target[1]) + (t.rng.Float64()*2-1)*10
	case t.rng.Float64() < 0.125:
		if t.rng.IntN(2) == 0 {
			t.heading += 90
		} else {
			t.heading -= 90
		}
	default:
		t.heading += (t.rng.Float64()*2 - 1) * 15
	}
	t.heading = math.Mod(t.heading+360, 360)
	step := t.speed / 3.6 * dt // metres
	if t.toPool || t.returning || t.toSpot {
		if d := distanceM(t.lat, t.lon, t.target[0], t.target[1]); d <= step {
			t.lat, t.lon = t.target[0], t.target[1]
			if t.toPool {
				t.toPool = false
				t.waiting = (3 + t.rng.Float64()*7) * 60 / s.cfg.TimeScale
			}
			t.returning, t.toSpot = false, false
			return
		}
	}
	lat, lon := move(t.lat, t.lon, t.heading, step)
	inside := s.cfg.Zones.Classify(lat, lon).ServiceArea != nil
	switch {
	case inside:
		if t.outside > 0 || t.returning {
			t.outside, t.returning = 0, false
		}
	case t.returning || t.toSpot:
		// keep driving towards the target (a trip may cross the bay)
	case t.outside > 0:
		t.outside -= dt
		if t.outside <= 0 {
			t.returning = true
			t.target, _ = s.randomInside(t.rng)
		}
	case s.cfg.LeaveProb > 0 && t.rng.Float64() < s.cfg.LeaveProb:
		t.outside = (1 + t.rng.Float64()*4) * 60 // drive 1-5 minutes outside
	default:
		// U-turn at the edge; stay put this report.
		t.heading = math.Mod(t.heading+180+(t.rng.Float64()*2-1)*30+360, 360)
		return
	}
	t.lat, t.lon = lat, lon
}

// updateStatus runs the status cycle and may send a vacant taxi to a pool.
func (s *Sim) updateStatus(t *taxi, dt float64) {
	t.statusLeft -= dt
	if t.statusLeft <= 0 {
		switch t.status {
		case Vacant:
			if t.rng.Float64() < 0.02 {
				t.status, t.statusLeft = OutOfService, (20+t.rng.Float64()*20)*60/s.cfg.TimeScale
			} else {
				t.status, t.statusLeft = Dispatched, s.dispatchedFor(t.rng)
			}
			t.toPool, t.waiting = false, 0
		case Dispatched:
			t.status, t.statusLeft = Occupied, s.occupiedFor(t.rng)
			if t.home >= 0 { // the rider's trip ends at another hotspot
				t.home = s.spots.pick(t.rng)
				if p, err := s.nearSpot(t.rng, t.home); err == nil {
					t.toSpot, t.target, t.toPool, t.waiting = true, p, false, 0
				}
			}
		default: // occupied, out_of_service
			t.status, t.statusLeft = Vacant, s.vacantFor(t.rng)
		}
	}
	if t.status == Vacant && !t.toPool && t.waiting <= 0 && !t.returning && t.outside <= 0 &&
		len(s.pools) > 0 && t.rng.Float64() < s.poolProb {
		// Head for the nearest no-dispatch zone (a taxi pool, the airport) and wait there.
		var z *geofence.Zone
		best := math.Inf(1)
		for _, p := range s.pools {
			if d := distanceM(t.lat, t.lon, (p.MinLat+p.MaxLat)/2, (p.MinLon+p.MaxLon)/2); d < best {
				z, best = p, d
			}
		}
		for range 50 { // a point inside the zone
			lat := z.MinLat + t.rng.Float64()*(z.MaxLat-z.MinLat)
			lon := z.MinLon + t.rng.Float64()*(z.MaxLon-z.MinLon)
			if z.Contains(lat, lon) {
				t.toPool, t.target = true, [2]float64{lat, lon}
				break
			}
		}
	}
}

func (s *Sim) vacantFor(r *rand.Rand) float64 { return r.ExpFloat64() * 6 * 60 / s.cfg.TimeScale }
func (s *Sim) dispatchedFor(r *rand.Rand) float64 {
	return (2 + r.Float64()*6) * 60 / s.cfg.TimeScale
}
func (s *Sim) occupiedFor(r *rand.Rand) float64 {
	return (5 + r.Float64()*20) * 60 / s.cfg.TimeScale
}

// randomInside returns a random dispatchable point of the service area.
func (s *Sim) randomInside(r *rand.Rand) ([2]float64, error) {
	for range 10000 {
		lat := s.area.minLat + r.Float64()*(s.area.maxLat-s.area.minLat)
		lon := s.area.minLon + r.Float64()*(s.area.maxLon-s.area.minLon)
		if s.cfg.Zones.Classify(lat, lon).Dispatchable() {
			return [2]float64{lat, lon}, nil
		}
	}
	return [2]float64{}, errors.New("sim: found no dispatchable point in the service area")
}

// appendPayload encodes t's fix at ts.
func (s *Sim) appendPayload(b []byte, t *taxi, ts int64) []byte {
	if s.cfg.Format == Protobuf {
		b = protowire.AppendTag(b, 1, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(t.lat))
		b = protowire.AppendTag(b, 2, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(t.lon))
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(ts))
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, statusNumber[t.status])
		for _, f := range []struct {
			n protowire.Number
			v float64
		}{{5, t.heading}, {6, t.speed}, {7, t.accuracy}} {
			b = protowire.AppendTag(b, f.n, protowire.Fixed32Type)
			b = protowire.AppendFixed32(b, math.Float32bits(float32(f.v)))
		}
		b = protowire.AppendTag(b, 8, protowire.VarintType)
		return protowire.AppendVarint(b, classes[t.class].num)
	}
	b = append(b, `{"lat":`...)
	b = strconv.AppendFloat(b, t.lat, 'f', 6, 64)
	b = append(b, `,"lon":`...)
	b = strconv.AppendFloat(b, t.lon, 'f', 6, 64)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"status":"`...)
	b = append(b, t.status...)
	b = append(b, `","heading":`...)
	b = strconv.AppendFloat(b, math.Mod(math.Round(t.heading*10)/10, 360), 'f', 1, 64)
	b = append(b, `,"speed":`...)
	b = strconv.AppendFloat(b, t.speed, 'f', 1, 64)
	b = append(b, `,"accuracy":`...)
	b = strconv.AppendFloat(b, t.accuracy, 'f', 1, 64)
	b = append(b, `,"class":"`...)
	b = append(b, classes[t.class].name...)
	return append(b, `"}`...)
}

// ContentType returns the MQTT v5 content type of the payloads ("" for JSON).
func (s *Sim) ContentType() string {
	if s.cfg.Format == Protobuf {
		return "application/x-protobuf"
	}
	return ""
}

// ParseFormat reads "json" or "proto".
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "json":
		return JSON, nil
	case "proto", "protobuf":
		return Protobuf, nil
	}
	return 0, fmt.Errorf("format %q: want json or proto", s)
}

const earthRadiusM = 6371008.8

// move returns the point step metres from (lat, lon) along heading (degrees from north).
func move(lat, lon, heading, step float64) (float64, float64) {
	h := heading * math.Pi / 180
	dLat := step * math.Cos(h) / earthRadiusM * 180 / math.Pi
	dLon := step * math.Sin(h) / (earthRadiusM * math.Cos(lat*math.Pi/180)) * 180 / math.Pi
	return lat + dLat, lon + dLon
}

// bearing returns the initial heading from a to b in degrees (flat approximation: the
// distances are a few kilometres).
func bearing(lat1, lon1, lat2, lon2 float64) float64 {
	dy := lat2 - lat1
	dx := (lon2 - lon1) * math.Cos(lat1*math.Pi/180)
	return math.Mod(math.Atan2(dx, dy)*180/math.Pi+360, 360)
}

func distanceM(lat1, lon1, lat2, lon2 float64) float64 {
	dy := (lat2 - lat1) * math.Pi / 180 * earthRadiusM
	dx := (lon2 - lon1) * math.Pi / 180 * earthRadiusM * math.Cos(lat1*math.Pi/180)
	return math.Hypot(dx, dy)
}

func clamp(v, lo, hi float64) float64 { return max(lo, min(hi, v)) }

func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// String returns "json" or "proto".
func (f Format) String() string {
	if f == Protobuf {
		return "proto"
	}
	return "json"
}
