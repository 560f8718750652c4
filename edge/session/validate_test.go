package session

import (
	"errors"
	"math"
	"testing"

	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

func TestValidate(t *testing.T) {
	ok := func(f func(r *meshcastv1.WatchRequest)) *meshcastv1.WatchRequest {
		r := &meshcastv1.WatchRequest{Lat: tokyoLat, Lon: tokyoLon}
		if f != nil {
			f(r)
		}
		return r
	}
	for _, tc := range []struct {
		name string
		req  *meshcastv1.WatchRequest
		o    Options
		want string // the error message, "" for none
	}{
		{"defaults", ok(nil), Options{}, ""},
		{"all fields", ok(func(r *meshcastv1.WatchRequest) {
			r.RadiusM, r.MaxVehicles, r.MinIntervalMs = 3000, 10, 60000
			r.Classes = []meshcastv1.VehicleClass{meshcastv1.VehicleClass_VEHICLE_CLASS_PREMIUM, meshcastv1.VehicleClass_VEHICLE_CLASS_ACCESSIBLE}
		}), Options{}, ""},
		{"nil", nil, Options{}, "request: missing"},
		{"lat high", ok(func(r *meshcastv1.WatchRequest) { r.Lat = 90.5 }), Options{}, "lat: must be a number between -90 and 90, got 90.5"},
		{"lat low", ok(func(r *meshcastv1.WatchRequest) { r.Lat = -91 }), Options{}, "lat: must be a number between -90 and 90, got -91"},
		{"lat NaN", ok(func(r *meshcastv1.WatchRequest) { r.Lat = math.NaN() }), Options{}, "lat: must be a number between -90 and 90, got NaN"},
		{"lat Inf", ok(func(r *meshcastv1.WatchRequest) { r.Lat = math.Inf(1) }), Options{}, "lat: must be a number between -90 and 90, got +Inf"},
		{"lon high", ok(func(r *meshcastv1.WatchRequest) { r.Lon = 180.01 }), Options{}, "lon: must be a number between -180 and 180, got 180.01"},
		{"lon -Inf", ok(func(r *meshcastv1.WatchRequest) { r.Lon = math.Inf(-1) }), Options{}, "lon: must be a number between -180 and 180, got -Inf"},
		{"radius too big", ok(func(r *meshcastv1.WatchRequest) { r.RadiusM = 3001 }), Options{}, "radius_m: must be between 1 and 3000, got 3001"},
		{"radius over configured max", ok(func(r *meshcastv1.WatchRequest) { r.RadiusM = 600 }), Options{MaxRadiusM: 500}, "radius_m: must be between 1 and 500, got 600"},
		{"default radius over max", ok(nil), Options{DefaultRadiusM: 800, MaxRadiusM: 500}, "radius_m: must be between 1 and 500, got 800"},
		{"class unspecified", ok(func(r *meshcastv1.WatchRequest) {
			r.Classes = []meshcastv1.VehicleClass{meshcastv1.VehicleClass_VEHICLE_CLASS_VAN, meshcastv1.VehicleClass_VEHICLE_CLASS_UNSPECIFIED}
		}), Options{}, "classes: VEHICLE_CLASS_UNSPECIFIED is not a class (leave classes empty for all)"},
		{"class unknown", ok(func(r *meshcastv1.WatchRequest) { r.Classes = []meshcastv1.VehicleClass{9} }), Options{}, "classes: unknown vehicle class 9"},
		{"class negative", ok(func(r *meshcastv1.WatchRequest) { r.Classes = []meshcastv1.VehicleClass{-1} }), Options{}, "classes: unknown vehicle class -1"},
		{"interval", ok(func(r *meshcastv1.WatchRequest) { r.MinIntervalMs = 60001 }), Options{}, "min_interval_ms: must be at most 60000, got 60001"},
		{"outside domain", ok(func(r *meshcastv1.WatchRequest) { r.Lat, r.Lon = 0, 0 }), Options{},
			"lat,lon: centre (0, 0) is outside the served area (lat 6.67 to 66.66, lon 100 to 180)"},
		{"outside domain north", ok(func(r *meshcastv1.WatchRequest) { r.Lat = 66.7 }), Options{},
			"lat,lon: centre (66.7, 139.767125) is outside the served area (lat 6.67 to 66.66, lon 100 to 180)"},
		{"lon 180", ok(func(r *meshcastv1.WatchRequest) { r.Lon = 180 }), Options{},
			"lat,lon: centre (35.681236, 180) is outside the served area (lat 6.67 to 66.66, lon 100 to 180)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.req, tc.o)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("Validate = %v (%T), want an *InvalidError", err, err)
			}
			if err.Error() != tc.want {
				t.Fatalf("Validate = %q\n          want %q", err, tc.want)
			}
		})
	}
}

func TestValidateFillsRadius(t *testing.T) {
	r := &meshcastv1.WatchRequest{Lat: tokyoLat, Lon: tokyoLon}
	if err := Validate(r, Options{DefaultRadiusM: 700}); err != nil || r.RadiusM != 700 {
		t.Fatalf("Validate = %v, radius %d; want nil, 700", err, r.RadiusM)
	}
	r.RadiusM = 0
	if err := Validate(r, Options{}); err != nil || r.RadiusM != 1000 {
		t.Fatalf("Validate = %v, radius %d; want nil, 1000", err, r.RadiusM)
	}
}

func FuzzValidate(f *testing.F) {
	f.Add(tokyoLat, tokyoLon, uint32(1000), int32(1), uint32(0), uint32(0))
	f.Add(math.NaN(), 0.0, uint32(1<<31), int32(0), uint32(5), uint32(1<<30))
	f.Add(66.66666, 179.9999, uint32(3000), int32(4), uint32(1), uint32(60000))
	f.Fuzz(func(t *testing.T, lat, lon float64, radius uint32, class int32, maxV, interval uint32) {
		r := &meshcastv1.WatchRequest{Lat: lat, Lon: lon, RadiusM: radius, Classes: []meshcastv1.VehicleClass{meshcastv1.VehicleClass(class)},
			MaxVehicles: maxV, MinIntervalMs: interval}
		err := Validate(r, Options{})
		if err != nil {
			var inv *InvalidError
			if !errors.As(err, &inv) || inv.Field == "" || inv.Msg == "" {
				t.Fatalf("Validate = %v, want an *InvalidError", err)
			}
			return
		}
		// a valid request gives an area
		if _, err := newArea(r, Options{}); err != nil {
			t.Fatalf("valid request %v: newArea: %v", r, err)
		}
	})
}
