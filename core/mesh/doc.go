// Package mesh owns the JIS X 0410 grid square ("mesh") codes meshcast uses to shard vehicles:
// point → code at every level, code → bounds and centre, parsing and validation, neighbours, and
// the set of third-order meshes a rider's circle covers.
//
// # The scheme
//
// A code is a decimal number built level by level (latitude digit(s) first, then longitude):
//
//	level    digits  cell size (lat × lon)  digits added
//	First    4       40'   × 1°             pp uu: pp = floor(lat×1.5), uu = floor(lon) − 100
//	Second   6       5'    × 7'30"          q v: 0-7 each (8 × 8 per first-order mesh)
//	ThirdLevel 8     30"   × 45" (~1 km)    r w: 0-9 each (10 × 10 per second-order mesh)
//	Half     9       15"   × 22.5"          1 SW, 2 SE, 3 NW, 4 NE quadrant of the third mesh
//	Quarter  10      7.5"  × 11.25"         1 SW, 2 SE, 3 NW, 4 NE quadrant of the half mesh
//
// For example Tokyo Station (35.681236, 139.767125) is in the third-order mesh 53394611.
//
// # Domain
//
// Codes exist only where the first-order part is exactly four digits without a leading zero and
// the longitude is a real one: pp in [10, 99] and uu in [00, 79], that is latitude in
// [20/3°, 200/3°) = [6.666…°, 66.666…°) and longitude in [100°, 180°). (Codes with uu 80-99 would
// be longitudes of 180° and more; Parse rejects them.) That covers Japan and its seas with a wide margin. Points outside it,
// and NaN or infinite coordinates, are rejected with an error wrapping [ErrOutOfDomain]; they never
// get a wrong code. Cells are half-open: a cell holds its south and west edges, not its north and
// east ones, so every point of the domain is in exactly one cell per level.
//
// # Exact edges
//
// All arithmetic is done on integers in units of 1/28800 degree, which makes every cell edge down
// to the quarter mesh an integer (quarter mesh: 60 units of latitude, 90 units of longitude;
// first-order mesh: 19200 × 28800). A coordinate in degrees is converted to units as follows:
// x = deg × 28800; if x is within 1e-6 of an integer n (1e-6 unit ≈ 3.5e-11° ≈ 4 µm on the
// ground) the unit is n, otherwise it is floor(x). The rounding error of a float64 near an edge
// (about 1e-9 unit over the domain) is far inside that tolerance, so the double nearest to an exact
// edge value — 35+2/3, 139.75, or an edge computed with ordinary float arithmetic such as
// 53/1.5 + 20.0/60 — always lands on that edge and therefore in the cell to its north/east,
// whatever the rounding of lat×1.5. The price is that a point less than ~4 µm south or west of an
// edge also counts as on it. [Code.Bounds] and [Code.Center] return the doubles nearest to the exact
// edge and centre values, so they map back to the same cell.
//
// # Circle cover
//
// [Cover] returns the third-order meshes whose closed rectangle intersects a circle. Distances are
// great-circle distances on a sphere of radius [EarthRadiusM] (the same metric as [DistanceM], so a
// caller that filters by DistanceM ≤ radius only ever needs meshes Cover returned). The cover is
// computed exactly, row by row, from the spherical geometry of the circle (no per-cell sampling);
// to stay conservative against float rounding it is widened by 1e-10 rad (~0.6 mm), so a mesh up
// to about a millimetre beyond the circle may be included, and none the circle touches is missed.
// A radius of 0 is the one exception: it gives just the mesh holding the centre.
package mesh
