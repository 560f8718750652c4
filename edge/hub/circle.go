package hub

import (
	"math"

	"github.com/meshcast/meshcast/core/mesh"
)

// The pre-filter compares positions in a plane per mesh: metres east and north of the mesh's
// centre (equirectangular, with the cosine of the centre's latitude), in float32. Against
// mesh.DistanceM (haversine), for a point and a centre within a few km of the mesh, the plane's
// distance is off by less than tan(lat) times their latitude offset from the mesh centre in
// radians (< 1e-3 of the distance in Japan's mesh domain, lat < 67°: < 2.4 for tan, times < 6e-4 rad
// for 4 km), and float32 adds well under a millimetre. A position counts as outside only beyond
// radius*(1+circleSlack) + CircleMarginM, which covers both with room to spare.
const (
	// CircleMarginM is added to a Circle's radius (with circleSlack) before the fan-out's
	// pre-filter counts a position as outside it.
	CircleMarginM = 2.0
	circleSlack   = 0.005
	// circleMaxM: a circle whose radius (plus its centre's distance from the mesh) is beyond
	// this is not filtered in that mesh (the plane's error bound above holds within it).
	circleMaxM = 6000
)

// Circle is a watcher's area as the fan-out's pre-filter sees it: a centre and a radius on the
// sphere of mesh.DistanceM. Build it with NewCircle.
type Circle struct {
	lat, lon, radius float64
}

// NewCircle returns the circle of radiusM metres around (latDeg, lonDeg).
func NewCircle(latDeg, lonDeg, radiusM float64) Circle {
	return Circle{lat: latDeg, lon: lonDeg, radius: radiusM}
}

// meshPlane is mesh m's plane: its centre and metres per degree.
func meshPlane(m mesh.Code) (lat0, lon0, kx, ky float64) {
	lat0, lon0 = m.Center()
	ky = mesh.EarthRadiusM * math.Pi / 180
	return lat0, lon0, ky * math.Cos(lat0*math.Pi/180), ky
}

// localCircle is a Circle in one mesh's plane: its centre (cx, cy) and q = 1/(effective
// radius)². The zero value (q 0) counts nothing as outside.
type localCircle struct {
	cx, cy, q float32
}

// inMesh returns c in mesh m's plane (the zero localCircle if c is not a place or too large).
func (c Circle) inMesh(m mesh.Code) localCircle {
	lat0, lon0, kx, ky := meshPlane(m)
	x, y := (c.lon-lon0)*kx, (c.lat-lat0)*ky
	r := c.radius*(1+circleSlack) + CircleMarginM
	if !(c.radius >= 0) || math.IsNaN(x+y) || math.Hypot(x, y)+r > circleMaxM {
		return localCircle{}
	}
	return localCircle{cx: float32(x), cy: float32(y), q: float32(1 / (r * r))}
}

// outside reports whether e (an entry of the same mesh) is certainly outside the circle. An entry
// not built by NewEntry is never outside.
func (c *localCircle) outside(e *Entry) bool {
	dx, dy := e.lx-c.cx, e.ly-c.cy
	return (dx*dx+dy*dy)*c.q > 1 && e.local
}

// SetCircle sets (c non-nil) or clears (c nil) w's circle on the meshes of ms it watches, each
// under its mesh's lock; other meshes are ignored. The fan-out may then skip w for an upsert of a
// vehicle whose new and previous positions are both outside the circle, when it can prove that w
// holds nothing of the vehicle that the upsert would change (see the package doc, "Circle
// pre-filter"). Contract: the circle is set only after the Join of those meshes returned (every
// seed applied), and only while the watcher keeps no vehicle outside it (its own area lies within
// the circle); a watcher about to change its area clears its circle on every mesh first.
func (h *Hub) SetCircle(w Watcher, ms []mesh.Code, c *Circle) {
	for _, m := range ms {
		st := h.lookup(m)
		if st == nil {
			continue
		}
		var lc localCircle
		if c != nil {
			lc = c.inMesh(m)
		}
		st.mu.Lock()
		if i, ok := st.index[w]; ok && !st.closing {
			ws := &st.watchers[i]
			ws.c, ws.since = lc, uint32(st.wseq)
		}
		st.mu.Unlock()
	}
}
