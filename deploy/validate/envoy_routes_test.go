package validate

import (
	"os"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkEnvoyRoutes: every route of the riders' listener goes to a known cluster; the streaming
// routes (RiderService, /v1/ws, /v1/sse) have no timeout and a non-zero idle timeout (rule
// envoy-timeouts bounds it by the heartbeat); the unary routes
// (health, reflection) have a timeout and a retry policy.
func checkEnvoyRoutes(t *testing.T, b *bootstrapv3.Bootstrap) {
	t.Helper()
	clusters := map[string]bool{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = true
	}
	var riders *hcmv3.HttpConnectionManager
	for _, l := range b.GetStaticResources().GetListeners() {
		if l.GetName() != "riders" {
			continue
		}
		var h hcmv3.HttpConnectionManager
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&h); err != nil {
			t.Fatal(err)
		}
		riders = &h
	}
	if riders == nil {
		t.Fatal("no listener named riders")
	}
	if len(riders.GetAccessLog()) == 0 {
		t.Error("riders: no access log")
	}
	seen := map[string]bool{}
	for _, vh := range riders.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			ra := r.GetRoute()
			if !clusters[ra.GetCluster()] {
				t.Errorf("route %v: unknown cluster %q", r.GetMatch(), ra.GetCluster())
			}
			key := routeKey(r.GetMatch())
			seen[key] = true
			switch key {
			case "prefix /meshcast.v1.RiderService/", "prefix /meshcast.v1.RiderService/ [content-type]", "path /v1/ws", "path /v1/sse":
				if ra.GetTimeout() == nil || ra.GetTimeout().AsDuration() != 0 || ra.GetIdleTimeout().AsDuration() <= 0 {
					t.Errorf("stream route %s: want timeout 0s and an idle_timeout, have %v / %v", key, ra.GetTimeout(), ra.GetIdleTimeout())
				}
			case "path /grpc.health.v1.Health/Check", "prefix /grpc.reflection.":
				if ra.GetTimeout().AsDuration() <= 0 || ra.GetRetryPolicy() == nil {
					t.Errorf("unary route %s: want a timeout and a retry policy", key)
				}
			}
		}
	}
	for _, k := range []string{"prefix /meshcast.v1.RiderService/", "prefix /meshcast.v1.RiderService/ [content-type]", "path /v1/ws", "path /v1/sse", "path /grpc.health.v1.Health/Check", "prefix /grpc.reflection."} {
		if !seen[k] {
			t.Errorf("no route for %s", k)
		}
	}
}

// routeKey names a route by its path match and the headers it also matches on, e.g.
// "prefix /meshcast.v1.RiderService/ [content-type]".
func routeKey(m *routev3.RouteMatch) string {
	k := "?"
	switch {
	case m.GetPath() != "":
		k = "path " + m.GetPath()
	case m.GetPrefix() != "":
		k = "prefix " + m.GetPrefix()
	}
	for _, h := range m.GetHeaders() {
		k += " [" + h.GetName() + "]"
	}
	return k
}
