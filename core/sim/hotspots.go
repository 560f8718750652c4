package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// Hotspot is a place where riders are, and so taxis: a station, a busy district. Taxis
// (Config.Hotspots) start around hotspots chosen by Weight, cruise around the one they are at,
// and an occupied trip takes them to another.
type Hotspot struct {
	Name     string
	Lat, Lon float64
	// RadiusM is the spread of the taxis around the centre (the standard deviation of their
	// distance along each axis), in metres.
	RadiusM float64
	// Weight is the hotspot's share of the taxis, relative to the others'.
	Weight float64
}

// TokyoHotspots are the busiest taxi places of the 23 wards, with rough weights: the great
// stations and the business and night-life districts around them. Like the zones, they are a
// hand-made approximation (positions within a few hundred metres), good for a demo.
var TokyoHotspots = []Hotspot{
	{"Tokyo Station", 35.6812, 139.7671, 700, 10},
	{"Otemachi", 35.6860, 139.7630, 450, 4},
	{"Nihonbashi", 35.6838, 139.7745, 500, 4},
	{"Ginza", 35.6717, 139.7650, 550, 7},
	{"Yurakucho", 35.6751, 139.7630, 350, 3},
	{"Shimbashi", 35.6664, 139.7583, 500, 5},
	{"Kanda", 35.6918, 139.7709, 450, 3},
	{"Akihabara", 35.6984, 139.7731, 500, 3},
	{"Shinjuku", 35.6905, 139.7005, 900, 10},
	{"Shibuya", 35.6580, 139.7016, 800, 8},
	{"Ikebukuro", 35.7295, 139.7109, 800, 7},
	{"Shinagawa", 35.6285, 139.7388, 700, 6},
	{"Roppongi", 35.6628, 139.7314, 600, 5},
	{"Akasaka", 35.6745, 139.7370, 500, 4},
	{"Ueno", 35.7138, 139.7773, 700, 5},
	{"Asakusa", 35.7118, 139.7966, 600, 2},
	{"Ebisu", 35.6467, 139.7101, 500, 3},
	{"Gotanda", 35.6262, 139.7236, 500, 2},
	{"Meguro", 35.6339, 139.7157, 500, 2},
	{"Iidabashi", 35.7020, 139.7450, 500, 2},
	{"Kinshicho", 35.6969, 139.8140, 600, 2},
	{"Kitasenju", 35.7497, 139.8049, 600, 2},
	{"Nakano", 35.7074, 139.6659, 600, 2},
	{"Oimachi", 35.6065, 139.7349, 500, 1},
	{"Toyosu", 35.6549, 139.7960, 600, 1},
	{"Haneda Airport", 35.5494, 139.7798, 800, 2},
}

// ParseHotspots reads a -hotspots flag value: "tokyo" (TokyoHotspots) or "none".
func ParseHotspots(s string) ([]Hotspot, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "tokyo":
		return TokyoHotspots, nil
	case "none", "":
		return nil, nil
	}
	return nil, fmt.Errorf("hotspots %q: want tokyo or none", s)
}

// spots is the hotspots a simulation uses: those whose centre is in a service area, with the
// cumulative weights to pick one.
type spots struct {
	list []Hotspot
	cum  []float64 // cum[i]: sum of the weights of list[:i+1]
}

func (s *Sim) initSpots(hs []Hotspot) error {
	for _, h := range hs {
		if h.Weight < 0 || h.RadiusM <= 0 || math.IsNaN(h.Weight) || math.IsInf(h.Weight, 0) || math.IsNaN(h.RadiusM) || h.RadiusM > 50_000 {
			return fmt.Errorf("sim: hotspot %q: weight %v and radius %v m: want weight >= 0 and 0 < radius <= 50000", h.Name, h.Weight, h.RadiusM)
		}
		if h.Weight == 0 || s.cfg.Zones.Classify(h.Lat, h.Lon).ServiceArea == nil {
			continue // another city's hotspot, or one turned off
		}
		total := h.Weight
		if n := len(s.spots.cum); n > 0 {
			total += s.spots.cum[n-1]
		}
		s.spots.list = append(s.spots.list, h)
		s.spots.cum = append(s.spots.cum, total)
	}
	return nil
}

// pick returns a hotspot index chosen by weight (-1 without hotspots).
func (sp *spots) pick(r *rand.Rand) int {
	if len(sp.list) == 0 {
		return -1
	}
	x := r.Float64() * sp.cum[len(sp.cum)-1]
	for i, c := range sp.cum {
		if x < c {
			return i
		}
	}
	return len(sp.list) - 1
}

// nearSpot returns a random dispatchable point around hotspot i (normal spread of its radius
// on each axis), falling back to any dispatchable point of the service area.
func (s *Sim) nearSpot(r *rand.Rand, i int) ([2]float64, error) {
	h := s.spots.list[i]
	for range 200 {
		lat, lon := move(h.Lat, h.Lon, 0, r.NormFloat64()*h.RadiusM)
		lat, lon = move(lat, lon, 90, r.NormFloat64()*h.RadiusM)
		if s.cfg.Zones.Classify(lat, lon).Dispatchable() {
			return [2]float64{lat, lon}, nil
		}
	}
	return s.randomInside(r)
}
