// JIS X 0410 third-order mesh math for the map (30" latitude x 45" longitude, about 1 km), the same
// cells the server uses (core/mesh): exact integer units of 1/28800 degree with the same snapping
// of coordinates that lie on a cell edge up to float rounding.

const UNITS_PER_DEG = 28800;
const SNAP_EPS = 1e-6;
const LAT_CELL = 240; // 30" in units
const LON_CELL = 360; // 45" in units
const EARTH_RADIUS_M = 6371008.8;

function toUnits(deg: number): number {
  const x = deg * UNITS_PER_DEG;
  const r = Math.round(x);
  return Math.abs(x - r) <= SNAP_EPS ? r : Math.floor(x);
}

/** inMeshDomain reports whether a point has a mesh code (lat [20/3, 200/3), lon [100, 180)). */
export function inMeshDomain(lat: number, lon: number): boolean {
  if (!(lat > 6 && lat < 67 && lon > 99 && lon < 181)) return false;
  const la = toUnits(lat);
  const lo = toUnits(lon);
  return la >= 10 * 19200 && la < 100 * 19200 && lo >= 100 * UNITS_PER_DEG && lo < 180 * UNITS_PER_DEG;
}

/** A third-order cell: its row (latitude index) and column (longitude index from 100°E). */
export interface Cell {
  row: number;
  col: number;
}

/** cellOf returns the cell holding (lat, lon). The point must be in the mesh domain. */
export function cellOf(lat: number, lon: number): Cell {
  return {
    row: Math.floor(toUnits(lat) / LAT_CELL),
    col: Math.floor((toUnits(lon) - 100 * UNITS_PER_DEG) / LON_CELL),
  };
}

/** cellCode returns the 8-digit code of a cell (pp uu q v r w). */
export function cellCode(c: Cell): string {
  const p = Math.floor(c.row / 80);
  const u = Math.floor(c.col / 80);
  const a = c.row % 80;
  const b = c.col % 80;
  return `${p}${String(u).padStart(2, "0")}${Math.floor(a / 10)}${Math.floor(b / 10)}${a % 10}${b % 10}`;
}

/** meshCode returns the third-order mesh code of (lat, lon), or "" outside the domain. */
export function meshCode(lat: number, lon: number): string {
  return inMeshDomain(lat, lon) ? cellCode(cellOf(lat, lon)) : "";
}

/** Bounds in degrees. */
export interface Bounds {
  south: number;
  west: number;
  north: number;
  east: number;
}

/** cellBounds returns the edges of a cell in degrees. */
export function cellBounds(c: Cell): Bounds {
  return {
    south: (c.row * LAT_CELL) / UNITS_PER_DEG,
    north: ((c.row + 1) * LAT_CELL) / UNITS_PER_DEG,
    west: 100 + (c.col * LON_CELL) / UNITS_PER_DEG,
    east: 100 + ((c.col + 1) * LON_CELL) / UNITS_PER_DEG,
  };
}

/** parseMeshCode returns the cell of an 8-digit third-order code, or null if it is not one. */
export function parseMeshCode(code: string): Cell | null {
  if (!/^\d{8}$/.test(code)) return null;
  const d = (i: number) => code.charCodeAt(i) - 48;
  const p = d(0) * 10 + d(1);
  const u = d(2) * 10 + d(3);
  const q = d(4);
  const v = d(5);
  const r = d(6);
  const w = d(7);
  if (p < 10 || u >= 80 || q > 7 || v > 7) return null;
  return { row: p * 80 + q * 10 + r, col: u * 80 + v * 10 + w };
}

/** distanceM is the great-circle distance in metres (haversine, the server's sphere). */
export function distanceM(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const rad = Math.PI / 180;
  const hav = (x: number) => (1 - Math.cos(x)) / 2;
  const p1 = lat1 * rad;
  const p2 = lat2 * rad;
  const h = hav(p2 - p1) + Math.cos(p1) * Math.cos(p2) * hav((lon2 - lon1) * rad);
  return 2 * EARTH_RADIUS_M * Math.asin(Math.sqrt(Math.min(1, h)));
}

/** distanceToBoundsM is the distance in metres from a point to the nearest point of a rectangle. */
export function distanceToBoundsM(lat: number, lon: number, b: Bounds): number {
  const clat = Math.min(Math.max(lat, b.south), b.north);
  const clon = Math.min(Math.max(lon, b.west), b.east);
  return distanceM(lat, lon, clat, clon);
}

/** A cell of the grid drawn around the rider. */
export interface GridCell extends Bounds {
  code: string;
  /** The rider's radius reaches this cell (the server covers it when computing the area). */
  covered: boolean;
  /** The cell holds the rider's centre. */
  centre: boolean;
}

/**
 * gridAround returns the third-order cells within radiusM + marginM of (lat, lon), row by row
 * south to north, west to east, each marked covered when the circle of radiusM touches it.
 */
export function gridAround(lat: number, lon: number, radiusM: number, marginM = 0): GridCell[] {
  if (!inMeshDomain(lat, lon)) return [];
  const reach = radiusM + marginM;
  const dLat = (reach / EARTH_RADIUS_M) * (180 / Math.PI);
  const dLon = dLat / Math.max(0.01, Math.cos((lat * Math.PI) / 180));
  const lo = cellOf(Math.max(lat - dLat, 20 / 3), Math.max(lon - dLon, 100));
  const hi = cellOf(Math.min(lat + dLat, 200 / 3 - 1e-9), Math.min(lon + dLon, 180 - 1e-9));
  const centre = cellOf(lat, lon);
  const out: GridCell[] = [];
  for (let row = lo.row; row <= hi.row; row++) {
    for (let col = lo.col; col <= hi.col; col++) {
      const c = { row, col };
      const b = cellBounds(c);
      const d = distanceToBoundsM(lat, lon, b);
      if (d > reach) continue;
      out.push({
        ...b,
        code: cellCode(c),
        covered: d <= radiusM,
        centre: row === centre.row && col === centre.col,
      });
    }
  }
  return out;
}

/**
 * cellsInBounds returns the cells that intersect a rectangle (clipped to the mesh domain), row by
 * row, or null when there would be more than maxCells of them.
 */
export function cellsInBounds(b: Bounds, maxCells = 2000): Cell[] | null {
  const south = Math.max(b.south, 20 / 3);
  const north = Math.min(b.north, 200 / 3 - 1e-9);
  const west = Math.max(b.west, 100);
  const east = Math.min(b.east, 180 - 1e-9);
  if (!(south <= north && west <= east)) return [];
  const lo = cellOf(south, west);
  const hi = cellOf(north, east);
  if ((hi.row - lo.row + 1) * (hi.col - lo.col + 1) > maxCells) return null;
  const out: Cell[] = [];
  for (let row = lo.row; row <= hi.row; row++) {
    for (let col = lo.col; col <= hi.col; col++) out.push({ row, col });
  }
  return out;
}
