package geofence

import (
	"os"
	"regexp"
	"testing"
)

const (
	tokyoPath    = "../../deploy/zones/tokyo.geojson"
	tokyoWards   = "Tokyo 23 wards"
	marunouchi   = "Tokyo Station Marunouchi taxi pool"
	yaesu        = "Tokyo Station Yaesu taxi pool"
	shinjukuPool = "Shinjuku Station west exit taxi pool"
	shibuyaPool  = "Shibuya Station taxi pool"
	ikebukuro    = "Ikebukuro Station taxi pools"
	shinagawa    = "Shinagawa Station Takanawa exit taxi pool"
	uenoPool     = "Ueno Station taxi pool"
	haneda       = "Haneda Airport"
	tokyoDome    = "Tokyo Dome"
	ryogoku      = "Ryogoku Kokugikan"
	bigSight     = "Tokyo Big Sight"
	budokan      = "Nippon Budokan"
)

// TestTokyoPoints classifies named points against the shipped zones file. The
// same table is in deploy/zones/README.md.
func TestTokyoPoints(t *testing.T) {
	s := mustLoad(t, tokyoPath)
	tests := []struct {
		name     string
		lat, lon float64
		sa, nd   string
	}{
		// Dispatchable: inside the wards, in no pool. Tokyo Station's reference
		// point is on the tracks, between the Marunouchi and Yaesu pools.
		{"Tokyo Station", 35.681236, 139.767125, tokyoWards, "-"},
		{"Shinjuku Station", 35.6896, 139.7006, tokyoWards, "-"},
		{"Roppongi crossing", 35.6628, 139.7314, tokyoWards, "-"},
		{"Between the Ikebukuro exits", 35.7295, 139.7106, tokyoWards, "-"},
		{"Kasai Rinkai Park station", 35.6440, 139.8613, tokyoWards, "-"},
		{"Nerima ward office", 35.7356, 139.6517, tokyoWards, "-"},
		{"Big Sight taxi stand (the hole)", 35.6293, 139.79335, tokyoWards, "-"},

		// Outside the service area.
		{"Yokohama Station", 35.4437, 139.6380, "-", "-"},
		{"Kawasaki Station", 35.5308, 139.7029, "-", "-"},
		{"Kawaguchi Station", 35.8017, 139.7173, "-", "-"},
		{"Kichijoji Station", 35.7032, 139.5797, "-", "-"},
		{"Urayasu Station", 35.6658, 139.8934, "-", "-"},
		{"Omiya Station", 35.9064, 139.6239, "-", "-"},

		// No-dispatch zones.
		{"Marunouchi taxi pool", 35.6812, 139.7648, tokyoWards, marunouchi},
		{"Yaesu taxi pool", 35.6810, 139.7697, tokyoWards, yaesu},
		{"Shinjuku west exit", 35.6908, 139.6982, tokyoWards, shinjukuPool},
		{"Shibuya taxi pool", 35.6582, 139.6999, tokyoWards, shibuyaPool},
		{"Ikebukuro east exit", 35.7298, 139.7125, tokyoWards, ikebukuro},
		{"Ikebukuro west exit (second polygon)", 35.7294, 139.7088, tokyoWards, ikebukuro},
		{"Shinagawa Takanawa exit", 35.6285, 139.7375, tokyoWards, shinagawa},
		{"Ueno taxi pool", 35.7119, 139.7767, tokyoWards, uenoPool},
		{"Haneda Terminal 1", 35.5491, 139.7846, tokyoWards, haneda},
		{"Haneda Terminal 3", 35.5444, 139.7683, tokyoWards, haneda},
		{"Tokyo Dome", 35.7056, 139.7519, tokyoWards, tokyoDome},
		{"Ryogoku Kokugikan", 35.6969, 139.7934, tokyoWards, ryogoku},
		{"Tokyo Big Sight halls", 35.6310, 139.7960, tokyoWards, bigSight},
		{"Nippon Budokan", 35.6933, 139.7499, tokyoWards, budokan},

		// Edges count as inside (tidwall's rule, for both kinds).
		{"Ryogoku, on the south edge", 35.6960, 139.7935, tokyoWards, ryogoku},
		{"Ryogoku, on the south-west vertex", 35.6960, 139.7920, tokyoWards, ryogoku},
		{"Big Sight, on the taxi stand's edge", 35.6288, 139.7930, tokyoWards, bigSight},
		{"Big Sight, on the taxi stand's vertex", 35.6298, 139.7942, tokyoWards, bigSight},
		{"Marunouchi pool, on the east edge", 35.6800, 139.7658, tokyoWards, marunouchi},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.Classify(tt.lat, tt.lon)
			if zoneName(r.ServiceArea) != tt.sa || zoneName(r.NoDispatch) != tt.nd {
				t.Errorf("Classify(%v, %v) = %s / %s, want %s / %s", tt.lat, tt.lon,
					zoneName(r.ServiceArea), zoneName(r.NoDispatch), tt.sa, tt.nd)
			}
			if want := tt.sa != "-" && tt.nd == "-"; r.Dispatchable() != want {
				t.Errorf("Dispatchable() = %v, want %v", r.Dispatchable(), want)
			}
		})
	}
}

// TestTokyoServiceAreaVertices: every vertex of the service area's outline is
// inside it (on its edge).
func TestTokyoServiceAreaVertices(t *testing.T) {
	s := mustLoad(t, tokyoPath)
	sa := s.Zones()[0]
	ring := sa.polys[0].Exterior
	for i := range ring.NumPoints() {
		p := ring.PointAt(i)
		if r := s.Classify(p.Y, p.X); r.ServiceArea != sa {
			t.Errorf("vertex %d (%v, %v) of the outline is not in the service area", i, p.Y, p.X)
		}
	}
}

// TestTokyoFileShape checks what deploy/zones/README.md promises about the
// file.
func TestTokyoFileShape(t *testing.T) {
	data, err := os.ReadFile(tokyoPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	zones := s.Zones()
	var sa []*Zone
	var nd int
	for _, z := range zones {
		if z.Kind == ServiceArea {
			sa = append(sa, z)
		} else {
			nd++
		}
	}
	if len(sa) != 1 || sa[0].Name != tokyoWards {
		t.Fatalf("service areas = %v, want just %q", sa, tokyoWards)
	}
	if n := sa[0].polys[0].Exterior.NumPoints(); n < 200 || n > 600 {
		t.Errorf("outline has %d positions, want a few hundred", n)
	}
	if nd < 10 || nd > 14 {
		t.Errorf("%d no-dispatch zones, want about a dozen", nd)
	}

	var holes, multis int
	for _, z := range zones[1:] {
		if len(z.polys) > 1 {
			multis++
		}
		for _, poly := range z.polys {
			holes += len(poly.Holes)
			// Every vertex of a no-dispatch zone lies in the service area.
			for i := range poly.Exterior.NumPoints() {
				p := poly.Exterior.PointAt(i)
				if !sa[0].Contains(p.Y, p.X) {
					t.Errorf("%s: vertex %v is outside the service area", z, p)
				}
			}
		}
	}
	if holes == 0 || multis == 0 {
		t.Errorf("%d holes and %d MultiPolygons, want at least one of each", holes, multis)
	}

	// Coordinates at 6 decimals.
	for _, num := range regexp.MustCompile(`-?\d+\.\d+`).FindAll(data, -1) {
		if dot := regexp.MustCompile(`\.\d{7,}`); dot.Match(num) {
			t.Errorf("coordinate %s has more than 6 decimals", num)
		}
	}

	// Polygons are parsed exactly: tidwall's positions equal the file's.
	spec := zoneSpec{}
	// decode the service area through the validator again and compare.
	top, _ := decodeJSON(data)
	features, _ := featureList(top)
	if err := spec.decode(features[0]); err != nil {
		t.Fatal(err)
	}
	for i, p := range spec.polys[0][0] {
		if q := sa[0].polys[0].Exterior.PointAt(i); q != p {
			t.Fatalf("position %d: parsed %v, file says %v", i, q, p)
		}
	}
}
