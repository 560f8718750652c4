package transport

import (
	"context"
	"slices"
	"testing"

	"github.com/meshcast/meshcast/core/bus"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
)

// TestReflectionAndHealth: grpcurl-style discovery works on the rider port without proto files,
// and health reports SERVING until Shutdown.
func TestReflectionAndHealth(t *testing.T) {
	b := bus.NewMemory(bus.Options{})
	t.Cleanup(func() { b.Close() })
	ts := startServer(t, b, nil, Options{})
	cc := dialGRPC(t, ts.addr)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()

	st, err := rpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ask := func(req *rpb.ServerReflectionRequest) *rpb.ServerReflectionResponse {
		t.Helper()
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	var names []string
	for _, s := range ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}).GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	for _, want := range []string{"meshcast.v1.RiderService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("services %q lack %s", names, want)
		}
	}
	fds := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{
		FileContainingSymbol: "meshcast.v1.RiderService"}}).GetFileDescriptorResponse().GetFileDescriptorProto()
	if len(fds) == 0 {
		t.Fatal("no file descriptor for meshcast.v1.RiderService")
	}
	st.CloseSend()

	hc := healthpb.NewHealthClient(cc)
	for _, svc := range []string{"", "meshcast.v1.RiderService"} {
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q: %v %v", svc, r, err)
		}
	}
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: "meshcast.v1.RiderService"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", r, err)
	}
	go ts.srv.Shutdown(context.Background())
	if r, err := w.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch during shutdown: %v %v", r, err)
	}
}
