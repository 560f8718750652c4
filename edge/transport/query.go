package transport

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/meshcast/meshcast/edge/session"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
)

// classNames maps the query names of vehicle classes (API.md: short, lower case) to the enum.
var classNames = map[string]meshcastv1.VehicleClass{
	"standard":   meshcastv1.VehicleClass_VEHICLE_CLASS_STANDARD,
	"premium":    meshcastv1.VehicleClass_VEHICLE_CLASS_PREMIUM,
	"van":        meshcastv1.VehicleClass_VEHICLE_CLASS_VAN,
	"accessible": meshcastv1.VehicleClass_VEHICLE_CLASS_ACCESSIBLE,
}

// ParseQuery reads a WatchRequest from the query of a WebSocket or SSE URL:
//
//	lat, lon          degrees, required
//	radius_m          metres (0 or absent: the server's default)
//	classes           comma-separated standard|premium|van|accessible (may repeat); absent: all
//	max_vehicles      nearest N (0: no cap)
//	min_interval_ms   per-vehicle coalescing interval (0: as they arrive)
//
// Other parameters (access_token, lastEventId) are left to their readers. Syntax errors are
// *session.InvalidError naming the parameter; ranges are checked by session.Validate.
func ParseQuery(q url.Values) (*meshcastv1.WatchRequest, error) {
	req := new(meshcastv1.WatchRequest)
	var err error
	if req.Lat, err = floatParam(q, "lat", true); err != nil {
		return nil, err
	}
	if req.Lon, err = floatParam(q, "lon", true); err != nil {
		return nil, err
	}
	if req.RadiusM, err = uintParam(q, "radius_m"); err != nil {
		return nil, err
	}
	if req.MaxVehicles, err = uintParam(q, "max_vehicles"); err != nil {
		return nil, err
	}
	if req.MinIntervalMs, err = uintParam(q, "min_interval_ms"); err != nil {
		return nil, err
	}
	for _, v := range q["classes"] {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			c, ok := classNames[strings.ToLower(name)]
			if !ok {
				return nil, &session.InvalidError{Field: "classes", Msg: fmt.Sprintf("unknown class %q (want standard, premium, van or accessible)", truncate(name, 32))}
			}
			req.Classes = append(req.Classes, c)
		}
	}
	return req, nil
}

// requestQuery parses a request's query: a malformed one (a bad %-escape, a ';' separator) is
// an invalid argument, not parameters silently dropped (which would then be "required").
func requestQuery(r *http.Request) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &session.InvalidError{Field: "query", Msg: "malformed: " + truncate(err.Error(), 64)}
	}
	return q, nil
}

// preflight answers a CORS preflight (OPTIONS) for the WebSocket and SSE paths: a fetch-based
// EventSource that sends an Authorization header cross-origin needs one. An origin that is not
// allowed gets 403, like the GET would.
func (s *Server) preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Allow", "GET, OPTIONS")
	if origin := r.Header.Get("Origin"); origin != "" {
		if !s.requestOriginAllowed(r) {
			writeJSONError(w, http.StatusForbidden, "permission_denied", "origin not allowed: "+truncate(origin, 64))
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Methods", "GET")
		h.Set("Access-Control-Allow-Headers", "Authorization, Last-Event-ID, Cache-Control, Accept")
		h.Set("Access-Control-Max-Age", "600")
		h.Add("Vary", "Origin")
	}
	w.WriteHeader(http.StatusNoContent)
}

// single returns the only value of a query parameter; present is false when it is absent.
func single(q url.Values, name string) (v string, present bool, err error) {
	vs := q[name]
	switch len(vs) {
	case 0:
		return "", false, nil
	case 1:
		return vs[0], true, nil
	default:
		return "", true, &session.InvalidError{Field: name, Msg: "given more than once"}
	}
}

func floatParam(q url.Values, name string, required bool) (float64, error) {
	v, ok, err := single(q, name)
	if err != nil {
		return 0, err
	}
	if !ok || v == "" {
		if required {
			return 0, &session.InvalidError{Field: name, Msg: "is required"}
		}
		return 0, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, &session.InvalidError{Field: name, Msg: fmt.Sprintf("%q is not a number", truncate(v, 32))}
	}
	return f, nil
}

func uintParam(q url.Values, name string) (uint32, error) {
	v, ok, err := single(q, name)
	if err != nil || !ok || v == "" {
		return 0, err
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, &session.InvalidError{Field: name, Msg: fmt.Sprintf("%q is not a whole number below 2^32", truncate(v, 32))}
	}
	return uint32(n), nil
}

// truncate shortens client-supplied text quoted in error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
