package transport

import (
	"net/netip"
	"testing"
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

// FuzzCompleteFrames: any bytes are measured without panicking, to a prefix of whole frames
// that measures the same again.
func FuzzCompleteFrames(f *testing.F) {
	f.Add([]byte{0x81, 0x02, 'h', 'i', 0x88, 0x00})
	f.Add([]byte{0x82, 126, 0x01, 0x00})
	f.Add([]byte{0x82, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, 'h'})
	f.Fuzz(func(t *testing.T, b []byte) {
		n := completeFrames(b)
		if n < 0 || n > len(b) || completeFrames(b[:n]) != n {
			t.Fatalf("completeFrames(%x) = %d", b, n)
		}
	})
}
