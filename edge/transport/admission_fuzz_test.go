package transport

import (
	"net/netip"
	"testing"

	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/protobuf/proto"
)

// FuzzClientIP: any X-Forwarded-For and peer address give a valid address or none, never a
// trusted proxy's when an untrusted hop is named, and never panic.
func FuzzClientIP(f *testing.F) {
	s := &Server{o: Options{TrustedProxyHeader: "X-Forwarded-For",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	f.Add("10.0.0.1:80", "203.0.113.1, 10.0.0.2")
	f.Add("192.0.2.1:80", "")
	f.Add("[::1]:1", ",,,")
	f.Add("garbage", "1.2.3.4")
	f.Fuzz(func(t *testing.T, remote, xff string) {
		ip := s.clientIP(client{remote: remote, header: func(string) string { return xff }})
		if ip.IsValid() && ip.Is4In6() {
			t.Fatalf("clientIP(%q, %q) = %v: not unmapped", remote, xff, ip)
		}
	})
}

// FuzzObservedAtMs: any bytes decode without panicking; an encoded upsert gives its time back.
func FuzzObservedAtMs(f *testing.F) {
	good, _ := proto.Marshal(&meshcastv1.RiderEvent{Seq: 3, Kind: &meshcastv1.RiderEvent_Upsert{
		Upsert: &meshcastv1.Vehicle{Id: "a/1", ObservedAtMs: 1764000000000}}})
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0x5a, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, ok := observedAtMs(b)
		ev := new(meshcastv1.RiderEvent)
		if ok && proto.Unmarshal(b, ev) == nil && ev.GetUpsert() != nil && ev.GetUpsert().GetObservedAtMs() != ms {
			t.Fatalf("observedAtMs = %d, proto says %d", ms, ev.GetUpsert().GetObservedAtMs())
		}
	})
}

func TestObservedAtMs(t *testing.T) {
	for _, tc := range []struct {
		ev   *meshcastv1.RiderEvent
		want int64
		ok   bool
	}{
		{&meshcastv1.RiderEvent{Seq: 1, Kind: &meshcastv1.RiderEvent_Upsert{Upsert: &meshcastv1.Vehicle{Id: "x", Lat: 35, ObservedAtMs: 42}}}, 42, true},
		{&meshcastv1.RiderEvent{Seq: 1, Kind: &meshcastv1.RiderEvent_Upsert{Upsert: &meshcastv1.Vehicle{Id: "x"}}}, 0, false},
		{&meshcastv1.RiderEvent{Seq: 1, Kind: &meshcastv1.RiderEvent_Heartbeat{Heartbeat: &meshcastv1.Heartbeat{}}}, 0, false},
	} {
		b, _ := proto.Marshal(tc.ev)
		if got, ok := observedAtMs(b); got != tc.want || ok != tc.ok {
			t.Errorf("observedAtMs(%v) = %d, %v; want %d, %v", tc.ev, got, ok, tc.want, tc.ok)
		}
	}
}
