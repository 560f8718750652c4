package edge

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// TestReflectionSwitch: the reflection service answers by default and is absent (UNIMPLEMENTED)
// with Reflection false, as the prod overlay sets it (MESHCAST_REFLECTION=false).
func TestReflectionSwitch(t *testing.T) {
	for _, on := range []bool{true, false} {
		c := Defaults()
		c.Reflection = on
		e := startEdge(t, c)
		cc, err := grpc.NewClient("passthrough:///"+e.listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		st, err := rpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
		var resp *rpb.ServerReflectionResponse
		if err == nil {
			// Send's error is io.EOF when the server has already ended the stream; the status
			// comes from Recv.
			_ = st.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}})
			resp, err = st.Recv()
		}
		switch {
		case on && (err != nil || len(resp.GetListServicesResponse().GetService()) == 0):
			t.Errorf("reflection on: %v, %v", resp, err)
		case !on && status.Code(err) != codes.Unimplemented:
			t.Errorf("reflection off: %v, %v, want UNIMPLEMENTED", resp, err)
		}
		cancel()
		cc.Close()
	}
}
