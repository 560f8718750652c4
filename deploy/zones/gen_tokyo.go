//go:build ignore

// gen_tokyo writes tokyo.geojson: go run ./deploy/zones/gen_tokyo.go > deploy/zones/tokyo.geojson
//
// Every coordinate below was placed by hand from approximate knowledge of Tokyo;
// none comes from survey or administrative data. The service-area outline is
// 87 hand-placed anchors smoothed with two rounds of Chaikin
// corner cutting, which rounds the corners without adding detail that was not
// there. Positions are rounded to 6 decimals; exterior rings are written
// counter-clockwise and holes clockwise (RFC 7946 right-hand rule).
package main

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

type ll struct{ lat, lon float64 }

// wards is the outline of the 23 special wards, clockwise from the north-west
// corner of Nerima: north border (Saitama), Edo river, bay coast and Haneda,
// Tama river, west border (Tama area).
var wards = []ll{
	// Nerima, Itabashi, Kita: north border, then the Arakawa.
	{35.7480, 139.5630}, {35.7600, 139.5620}, {35.7700, 139.5710}, {35.7780, 139.5810},
	{35.7790, 139.5990}, {35.7760, 139.6150}, {35.7800, 139.6260}, {35.7890, 139.6350},
	{35.7960, 139.6420}, {35.8000, 139.6550}, {35.8010, 139.6700}, {35.7990, 139.6850},
	{35.7950, 139.6980}, {35.7940, 139.7100}, {35.7930, 139.7230}, {35.7880, 139.7350},
	// Adachi north of the Arakawa, Katsushika.
	{35.7950, 139.7470}, {35.8040, 139.7560}, {35.8130, 139.7690}, {35.8170, 139.7850},
	{35.8160, 139.8000}, {35.8080, 139.8140}, {35.7980, 139.8240}, {35.7890, 139.8330},
	{35.7850, 139.8460}, {35.7880, 139.8600}, {35.7870, 139.8700},
	// Edo river south, then Kyu-Edogawa to the bay.
	{35.7780, 139.8760}, {35.7640, 139.8790}, {35.7500, 139.8820}, {35.7380, 139.8860},
	{35.7250, 139.8930}, {35.7120, 139.9010}, {35.6990, 139.9060}, {35.6880, 139.9060},
	{35.6760, 139.8940}, {35.6670, 139.8850}, {35.6560, 139.8790}, {35.6450, 139.8760},
	// Bay coast: Kasai, Wakasu, breakwaters, Ariake, Odaiba, Shinagawa, Oi.
	{35.6360, 139.8650}, {35.6370, 139.8520}, {35.6400, 139.8430}, {35.6300, 139.8380},
	{35.6160, 139.8390}, {35.6080, 139.8280}, {35.5970, 139.8160}, {35.6020, 139.8010},
	{35.6160, 139.8030}, {35.6180, 139.7860}, {35.6170, 139.7770}, {35.6210, 139.7670},
	{35.6120, 139.7610}, {35.6000, 139.7590}, {35.5850, 139.7580}, {35.5750, 139.7610},
	// Haneda airport, runway D island, Tama river mouth.
	{35.5670, 139.7700}, {35.5650, 139.7900}, {35.5580, 139.8050}, {35.5390, 139.8130},
	{35.5300, 139.8280}, {35.5180, 139.8270}, {35.5130, 139.8080}, {35.5230, 139.7880},
	{35.5310, 139.7650}, {35.5380, 139.7470},
	// Tama river upstream (Ota, Setagaya).
	{35.5420, 139.7320}, {35.5450, 139.7170}, {35.5520, 139.7050}, {35.5610, 139.6950},
	{35.5710, 139.6840}, {35.5810, 139.6730}, {35.5890, 139.6660}, {35.6000, 139.6520},
	{35.6070, 139.6320}, {35.6160, 139.6120}, {35.6260, 139.5980}, {35.6340, 139.5840},
	// West border: Setagaya, Suginami, Nerima.
	{35.6440, 139.5900}, {35.6560, 139.5950}, {35.6650, 139.5890}, {35.6740, 139.5870},
	{35.6850, 139.5840}, {35.6980, 139.5850}, {35.7080, 139.5870}, {35.7180, 139.5810},
	{35.7260, 139.5660}, {35.7370, 139.5620},
}

type zone struct {
	name  string
	kind  string
	polys [][][]ll // polygon -> ring -> positions (rings closed by the writer)
}

func rect(s, w, n, e float64) []ll { return []ll{{s, w}, {s, e}, {n, e}, {n, w}} }

var noDispatch = []zone{
	{name: "Tokyo Station Marunouchi taxi pool", polys: [][][]ll{{{
		{35.6795, 139.7638}, {35.6795, 139.7658}, {35.6830, 139.7658}, {35.6830, 139.7640}, {35.6812, 139.7636},
	}}}},
	{name: "Tokyo Station Yaesu taxi pool", polys: [][][]ll{{rect(35.6795, 139.7690, 35.6825, 139.7705)}}},
	{name: "Shinjuku Station west exit taxi pool", polys: [][][]ll{{{
		{35.6900, 139.6970}, {35.6900, 139.6992}, {35.6915, 139.6995}, {35.6920, 139.6980}, {35.6912, 139.6968},
	}}}},
	{name: "Shibuya Station taxi pool", polys: [][][]ll{{rect(35.6574, 139.6990, 35.6590, 139.7008)}}},
	{name: "Ikebukuro Station taxi pools", polys: [][][]ll{ // east and west exits
		{rect(35.7292, 139.7118, 35.7305, 139.7132)},
		{rect(35.7288, 139.7080, 35.7300, 139.7095)},
	}},
	{name: "Shinagawa Station Takanawa exit taxi pool", polys: [][][]ll{{rect(35.6278, 139.7368, 35.6292, 139.7382)}}},
	{name: "Ueno Station taxi pool", polys: [][][]ll{{rect(35.7110, 139.7758, 35.7128, 139.7776)}}},
	{name: "Haneda Airport", polys: [][][]ll{{{
		{35.5420, 139.7640}, {35.5420, 139.7800}, {35.5480, 139.7950}, {35.5580, 139.7920},
		{35.5600, 139.7800}, {35.5560, 139.7700}, {35.5440, 139.7600},
	}}}},
	{name: "Tokyo Dome", polys: [][][]ll{{rect(35.7035, 139.7500, 35.7078, 139.7545)}}},
	{name: "Ryogoku Kokugikan", polys: [][][]ll{{rect(35.6960, 139.7920, 35.6980, 139.7950)}}},
	{name: "Tokyo Big Sight", polys: [][][]ll{{ // the hole is the venue's own taxi stand, where pick-up is allowed
		rect(35.6270, 139.7900, 35.6330, 139.7990),
		rect(35.6288, 139.7925, 35.6298, 139.7942),
	}}},
	{name: "Nippon Budokan", polys: [][][]ll{{rect(35.6922, 139.7486, 35.6944, 139.7512)}}},
}

func chaikin(ring []ll) []ll {
	out := make([]ll, 0, 2*len(ring))
	for i, a := range ring {
		b := ring[(i+1)%len(ring)]
		out = append(out,
			ll{0.75*a.lat + 0.25*b.lat, 0.75*a.lon + 0.25*b.lon},
			ll{0.25*a.lat + 0.75*b.lat, 0.25*a.lon + 0.75*b.lon})
	}
	return out
}

func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }

// orient rounds, removes repeated positions, orients (counter-clockwise when
// ccw) and closes an open ring.
func orient(ring []ll, ccw bool) []ll {
	var out []ll
	for _, p := range ring {
		p = ll{round6(p.lat), round6(p.lon)}
		if len(out) == 0 || out[len(out)-1] != p {
			out = append(out, p)
		}
	}
	var area2 float64
	for i, a := range out {
		b := out[(i+1)%len(out)]
		area2 += a.lon*b.lat - b.lon*a.lat
	}
	if (area2 > 0) != ccw {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return append(out, out[0])
}

// selfIntersects reports whether two non-adjacent edges of a closed ring cross.
func selfIntersects(r []ll) bool {
	cross := func(a, b, c ll) float64 { return (b.lon-a.lon)*(c.lat-a.lat) - (b.lat-a.lat)*(c.lon-a.lon) }
	n := len(r) - 1
	for i := 0; i < n; i++ {
		for j := i + 2; j < n; j++ {
			if i == 0 && j == n-1 {
				continue
			}
			a, b, c, d := r[i], r[i+1], r[j], r[j+1]
			if cross(a, b, c)*cross(a, b, d) < 0 && cross(c, d, a)*cross(c, d, b) < 0 {
				return true
			}
		}
	}
	return false
}

func writeRing(sb *strings.Builder, ring []ll) {
	sb.WriteString("[")
	for i, p := range ring {
		if i > 0 {
			sb.WriteString(",")
			if i%4 == 0 {
				sb.WriteString("\n      ")
			}
		}
		fmt.Fprintf(sb, "[%s,%s]", strconv.FormatFloat(p.lon, 'f', 6, 64), strconv.FormatFloat(p.lat, 'f', 6, 64))
	}
	sb.WriteString("]")
}

func main() {
	outline := chaikin(chaikin(wards))
	zones := append([]zone{{name: "Tokyo 23 wards", kind: "service_area", polys: [][][]ll{{outline}}}}, noDispatch...)
	var sb strings.Builder
	sb.WriteString(`{"type":"FeatureCollection","features":[` + "\n")
	for zi, z := range zones {
		if z.kind == "" {
			z.kind = "no_dispatch"
		}
		geomType := "Polygon"
		if len(z.polys) > 1 {
			geomType = "MultiPolygon"
		}
		if zi > 0 {
			sb.WriteString(",\n")
		}
		fmt.Fprintf(&sb, "{\"type\":\"Feature\",\"properties\":{\"name\":%q,\"kind\":%q},\n \"geometry\":{\"type\":%q,\"coordinates\":", z.name, z.kind, geomType)
		if geomType == "MultiPolygon" {
			sb.WriteString("[")
		}
		for pi, poly := range z.polys {
			if pi > 0 {
				sb.WriteString(",")
			}
			sb.WriteString("[\n    ")
			for ri, ring := range poly {
				if ri > 0 {
					sb.WriteString(",\n    ")
				}
				r := orient(ring, ri == 0)
				if selfIntersects(r) {
					fmt.Fprintf(os.Stderr, "%s: ring %d self-intersects\n", z.name, ri)
					os.Exit(1)
				}
				writeRing(&sb, r)
			}
			sb.WriteString("]")
		}
		if geomType == "MultiPolygon" {
			sb.WriteString("]")
		}
		sb.WriteString("}}")
	}
	sb.WriteString("\n]}\n")
	fmt.Fprintf(os.Stderr, "service area: %d positions\n", len(outline)+1)
	os.Stdout.WriteString(sb.String())
}
