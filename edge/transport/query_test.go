package transport

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/meshcast/meshcast/edge/session"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/protobuf/proto"
)

func TestParseQuery(t *testing.T) {
	std, prem, van, acc := meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD, meshcastv1.VehicleClass_VEHICLE_CLASS_PREMIUM,
		meshcastv1.VehicleClass_VEHICLE_CLASS_VAN, meshcastv1.VehicleClass_VEHICLE_CLASS_ACCESSIBLE
	tests := []struct {
		query string
		want  *meshcastv1.WatchRequest
		field string // of the InvalidError, "" for success
	}{
		{"lat=35.68&lon=139.76", &meshcastv1.WatchRequest{Lat: 35.68, Lon: 139.76}, ""},
		{"lat=35.68&lon=139.76&radius_m=500&max_vehicles=20&min_interval_ms=1000",
			&meshcastv1.WatchRequest{Lat: 35.68, Lon: 139.76, RadiusM: 500, MaxVehicles: 20, MinIntervalMs: 1000}, ""},
		{"lat=35.68&lon=139.76&classes=standard,van", &meshcastv1.WatchRequest{Lat: 35.68, Lon: 139.76, Classes: []meshcastv1.VehicleClass{std, van}}, ""},
		{"lat=35.68&lon=139.76&classes=premium&classes=Accessible,", &meshcastv1.WatchRequest{Lat: 35.68, Lon: 139.76, Classes: []meshcastv1.VehicleClass{prem, acc}}, ""},
		{"lat=35.68&lon=139.76&access_token=x&lastEventId=4", &meshcastv1.WatchRequest{Lat: 35.68, Lon: 139.76}, ""},
		{"lat=0&lon=0", &meshcastv1.WatchRequest{}, ""}, // parsed; session.Validate rejects the place
		{"lon=139.76", nil, "lat"},
		{"lat=&lon=139.76", nil, "lat"},
		{"lat=35.68", nil, "lon"},
		{"lat=north&lon=139.76", nil, "lat"},
		{"lat=NaN&lon=139.76", nil, "lat"},
		{"lat=35.68&lon=Inf", nil, "lon"},
		{"lat=35.68&lat=35.69&lon=139.76", nil, "lat"},
		{"lat=35.68&lon=139.76&radius_m=-5", nil, "radius_m"},
		{"lat=35.68&lon=139.76&radius_m=1.5", nil, "radius_m"},
		{"lat=35.68&lon=139.76&radius_m=99999999999", nil, "radius_m"},
		{"lat=35.68&lon=139.76&max_vehicles=x", nil, "max_vehicles"},
		{"lat=35.68&lon=139.76&min_interval_ms=-1", nil, "min_interval_ms"},
		{"lat=35.68&lon=139.76&classes=limo", nil, "classes"},
		{"lat=35.68&lon=139.76&classes=VEHICLE_CLASS_VAN", nil, "classes"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseQuery(q)
			if tt.field != "" {
				var inv *session.InvalidError
				if !errors.As(err, &inv) || inv.Field != tt.field {
					t.Fatalf("err = %v, want InvalidError on %s", err, tt.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPickSubprotocol(t *testing.T) {
	tests := []struct {
		header []string
		name   string
		format wireFormat
		bad    bool
	}{
		{nil, "", formatJSON, false},
		{[]string{"meshcast.v1.json"}, SubprotocolJSON, formatJSON, false},
		{[]string{"meshcast.v1.proto"}, SubprotocolProto, formatProto, false},
		{[]string{"chat, meshcast.v1.proto, meshcast.v1.json"}, SubprotocolProto, formatProto, false},
		{[]string{"chat", "meshcast.v1.json"}, SubprotocolJSON, formatJSON, false},
		{[]string{"meshcast.v2.json"}, "", 0, true},
		{[]string{"MESHCAST.V1.JSON"}, "", 0, true}, // subprotocol tokens are case-sensitive
		{[]string{" , "}, "", formatJSON, false},
	}
	for _, tt := range tests {
		h := http.Header{}
		for _, v := range tt.header {
			h.Add("Sec-WebSocket-Protocol", v)
		}
		name, f, err := pickSubprotocol(h)
		if (err != nil) != tt.bad {
			t.Errorf("%q: err %v, want failure %v", tt.header, err, tt.bad)
			continue
		}
		if !tt.bad && (name != tt.name || f != tt.format) {
			t.Errorf("%q: got %q %v, want %q %v", tt.header, name, f, tt.name, tt.format)
		}
	}
}

func TestLastEventID(t *testing.T) {
	tests := []struct {
		header, query string
		want          uint64
		bad           bool
	}{
		{"", "", 1, false},
		{"0", "", 1, false},
		{"41", "", 42, false},
		{"", "lastEventId=9", 10, false},
		{"5", "lastEventId=9", 6, false}, // the header wins
		{"x", "", 0, true},
		{"-1", "", 0, true},
		{"18446744073709551615", "", 0, true},
		{"", "lastEventId=1e3", 0, true},
	}
	for _, tt := range tests {
		r, _ := http.NewRequest("GET", "/v1/sse?"+tt.query, nil)
		if tt.header != "" {
			r.Header.Set("Last-Event-ID", tt.header)
		}
		got, err := lastEventID(r)
		if (err != nil) != tt.bad || (!tt.bad && got != tt.want) {
			t.Errorf("header %q query %q: got %d, %v; want %d, failure %v", tt.header, tt.query, got, err, tt.want, tt.bad)
		}
	}
}

func TestCloseReason(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes
	r := closeReason(long)
	if len(r) > maxCloseReason || !strings.HasPrefix(long, r) || len(r)%2 != 0 {
		t.Fatalf("closeReason cut to %d bytes: %q", len(r), r)
	}
	if closeReason("short") != "short" {
		t.Fatal("short reason changed")
	}
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		"lat=35.68&lon=139.76", "lat=35.68&lon=139.76&radius_m=500&classes=standard,van&max_vehicles=3&min_interval_ms=10",
		"lat=x", "classes=%ZZ", "lat=1&lat=2", "", "lat=35&lon=139&classes=,,,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, err := ParseQuery(q)
		if err != nil {
			var inv *session.InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("error %v is not an InvalidError", err)
			}
			return
		}
		if req == nil {
			t.Fatal("nil request without error")
		}
		// Validation never panics on whatever parsed.
		_ = session.Validate(req, session.Options{})
	})
}

func FuzzPickSubprotocol(f *testing.F) {
	f.Add("meshcast.v1.json")
	f.Add("a, meshcast.v1.proto")
	f.Add(",,")
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{"Sec-Websocket-Protocol": {v}}
		name, _, err := pickSubprotocol(h)
		if err == nil && name != "" && name != SubprotocolJSON && name != SubprotocolProto {
			t.Fatalf("picked %q", name)
		}
	})
}
