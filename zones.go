package main

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/meshcast/meshcast/core/config"
	"github.com/meshcast/meshcast/core/geofence"
	"github.com/meshcast/meshcast/core/mesh"
)

// tokyoZones is deploy/zones/tokyo.geojson, built into the binary so that every subcommand
// works from any folder; -zones replaces it.
//
//go:embed deploy/zones/tokyo.geojson
var tokyoZones []byte

// zonesUsage is the usage text of every subcommand's -zones flag, whose default is "" (the
// built-in zones).
const zonesUsage = "GeoJSON FeatureCollection of service_area and no_dispatch zones (empty: the built-in copy of deploy/zones/tokyo.geojson, 23 wards of Tokyo)"

// loadZones loads the zones file named by a -zones flag, or the built-in Tokyo zones when
// file is empty.
func loadZones(file string) (*geofence.Set, error) {
	if file == "" {
		set, err := geofence.Parse(tokyoZones)
		if err != nil {
			return nil, fmt.Errorf("built-in zones: %w", err)
		}
		return set, nil
	}
	set, err := geofence.LoadFile(file)
	if err != nil {
		return nil, fmt.Errorf("zones %s: %w", file, err)
	}
	return set, nil
}

// zonesName names the zones a -zones flag selects, for messages.
func zonesName(file string) string {
	if file == "" {
		return "the built-in Tokyo zones"
	}
	return file
}

// runZones validates a zones file and shows where points fall: the quickest
// way for an operator to check a new file before rolling it out.
func runZones(_ context.Context, args []string, stdout io.Writer) error {
	fs := config.NewFlagSet("zones", `Validate a GeoJSON zones file and classify points against it.

Arguments after the flags are points as "lat,lon"; for each, the third-order
mesh, the service area and the no-dispatch zone it falls in are printed.`)
	file := fs.String("zones", "", zonesUsage)
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	set, err := loadZones(*file)
	if err != nil {
		return err
	}
	zones := set.Zones()
	var areas, nd int
	for _, z := range zones {
		if z.Kind == geofence.ServiceArea {
			areas++
		} else {
			nd++
		}
	}
	fmt.Fprintf(stdout, "%s: ok, %d service areas, %d no-dispatch zones\n", zonesName(*file), areas, nd)
	for _, z := range zones {
		fmt.Fprintf(stdout, "  #%-3d %-12s %s\n", z.Index, z.Kind, z.Name)
	}
	for _, p := range fs.Args() {
		lat, lon, err := parseLatLon(p)
		if err != nil {
			return err
		}
		code := "outside the mesh domain"
		if c, err := mesh.Third(lat, lon); err == nil {
			code = c.String()
		}
		r := set.Classify(lat, lon)
		fmt.Fprintf(stdout, "%s: mesh %s, service area %s, no-dispatch %s, dispatchable %v\n",
			p, code, zoneName(r.ServiceArea), zoneName(r.NoDispatch), r.Dispatchable())
	}
	return nil
}

func zoneName(z *geofence.Zone) string {
	if z == nil {
		return "-"
	}
	return strconv.Quote(z.Name)
}

// parseLatLon reads "lat,lon" in degrees.
func parseLatLon(s string) (lat, lon float64, err error) {
	a, b, ok := strings.Cut(s, ",")
	if !ok {
		return 0, 0, fmt.Errorf("point %q: want lat,lon", s)
	}
	if lat, err = strconv.ParseFloat(strings.TrimSpace(a), 64); err != nil {
		return 0, 0, fmt.Errorf("point %q: latitude: %w", s, err)
	}
	if lon, err = strconv.ParseFloat(strings.TrimSpace(b), 64); err != nil {
		return 0, 0, fmt.Errorf("point %q: longitude: %w", s, err)
	}
	return lat, lon, nil
}
