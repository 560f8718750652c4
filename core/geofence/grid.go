package geofence

import "math"

// Grid sizing. About cellsPerZone cells per zone, at least minCells and at most
// maxCells, fitted to the aspect ratio of the bounds; the resolution is halved
// while the cell lists would hold more than maxItems entries (many large,
// overlapping zones).
const (
	cellsPerZone = 8
	minCells     = 64
	maxCells     = 1 << 16
	maxItems     = 1 << 20
)

// grid is a uniform grid over the bounding box of all zones. Each cell lists,
// per kind and in file order, the zones whose bounding box overlaps the cell.
//
// A point and a bounding box are mapped to cells with the same monotonic
// function (subtract, divide, truncate, clamp), so a point inside a zone's box
// always falls in one of the cells the box was entered in, also for points on
// cell boundaries.
type grid struct {
	minLat, minLon, maxLat, maxLon float64
	rows, cols                     int
	cellH, cellW                   float64
	sa, nd                         cellLists
}

// cellLists is a compressed list per cell: the zones of cell k are
// items[start[k]:start[k+1]].
type cellLists struct {
	start []uint32
	items []uint32
}

func (l *cellLists) cell(k int) []uint32 {
	return l.items[l.start[k]:l.start[k+1]]
}

func newGrid(zones []*Zone) grid {
	g := grid{rows: 1, cols: 1}
	if len(zones) == 0 {
		g.sa.start = make([]uint32, 2)
		g.nd.start = make([]uint32, 2)
		return g
	}
	g.minLat, g.minLon = math.Inf(1), math.Inf(1)
	g.maxLat, g.maxLon = math.Inf(-1), math.Inf(-1)
	for _, z := range zones {
		g.minLat = math.Min(g.minLat, z.MinLat)
		g.minLon = math.Min(g.minLon, z.MinLon)
		g.maxLat = math.Max(g.maxLat, z.MaxLat)
		g.maxLon = math.Max(g.maxLon, z.MaxLon)
	}
	target := min(max(cellsPerZone*len(zones), minCells), maxCells)
	h, w := g.maxLat-g.minLat, g.maxLon-g.minLon
	rows, cols := 1, 1
	if h > 0 && w > 0 {
		cols = int(math.Round(math.Sqrt(float64(target) * w / h)))
		cols = min(max(cols, 1), target)
		rows = min(max(target/cols, 1), target)
	}
	for {
		g.setSize(rows, cols)
		if rows*cols == 1 || g.countItems(zones) <= maxItems {
			break
		}
		rows, cols = max(rows/2, 1), max(cols/2, 1)
	}
	g.sa = g.fill(zones, ServiceArea)
	g.nd = g.fill(zones, NoDispatch)
	return g
}

func (g *grid) setSize(rows, cols int) {
	g.rows, g.cols = rows, cols
	g.cellH = (g.maxLat - g.minLat) / float64(rows)
	g.cellW = (g.maxLon - g.minLon) / float64(cols)
	if !(g.cellH > 0) {
		g.rows = 1 // degenerate extent: one row, never divide
	}
	if !(g.cellW > 0) {
		g.cols = 1
	}
}

func (g *grid) row(lat float64) int {
	if g.rows == 1 {
		return 0
	}
	return clampIndex((lat-g.minLat)/g.cellH, g.rows)
}

func (g *grid) col(lon float64) int {
	if g.cols == 1 {
		return 0
	}
	return clampIndex((lon-g.minLon)/g.cellW, g.cols)
}

// clampIndex truncates v (>= 0 for points inside the bounds) to [0, n-1].
func clampIndex(v float64, n int) int {
	if !(v > 0) {
		return 0
	}
	if v >= float64(n-1) {
		return n - 1
	}
	return int(v)
}

func (g *grid) countItems(zones []*Zone) int {
	total := 0
	for _, z := range zones {
		total += (g.row(z.MaxLat) - g.row(z.MinLat) + 1) * (g.col(z.MaxLon) - g.col(z.MinLon) + 1)
	}
	return total
}

func (g *grid) fill(zones []*Zone, kind Kind) cellLists {
	n := g.rows * g.cols
	counts := make([]uint32, n+1)
	for _, z := range zones {
		if z.Kind != kind {
			continue
		}
		for r := g.row(z.MinLat); r <= g.row(z.MaxLat); r++ {
			for c := g.col(z.MinLon); c <= g.col(z.MaxLon); c++ {
				counts[r*g.cols+c+1]++
			}
		}
	}
	for k := 1; k <= n; k++ {
		counts[k] += counts[k-1]
	}
	l := cellLists{start: counts, items: make([]uint32, counts[n])}
	next := append([]uint32(nil), counts[:n]...)
	for i, z := range zones { // file order, so each cell's list is in file order
		if z.Kind != kind {
			continue
		}
		for r := g.row(z.MinLat); r <= g.row(z.MaxLat); r++ {
			for c := g.col(z.MinLon); c <= g.col(z.MaxLon); c++ {
				k := r*g.cols + c
				l.items[next[k]] = uint32(i)
				next[k]++
			}
		}
	}
	return l
}

// candidates returns the service areas and no-dispatch zones, in file order,
// whose bounding boxes overlap the point's cell; ok is false when the point lies
// outside every zone's bounding box (or is NaN).
func (g *grid) candidates(lat, lon float64) (sa, nd []uint32, ok bool) {
	if !(lat >= g.minLat && lat <= g.maxLat && lon >= g.minLon && lon <= g.maxLon) {
		return nil, nil, false
	}
	k := g.row(lat)*g.cols + g.col(lon)
	return g.sa.cell(k), g.nd.cell(k), true
}
