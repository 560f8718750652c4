package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// chunkConn returns its data in the given chunks, one per Read, then err.
type chunkConn struct {
	net.Conn
	chunks [][]byte
	err    error
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, c.err
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func TestSniff(t *testing.T) {
	timeout := &net.OpError{Op: "read", Err: errTimeout{}}
	tests := []struct {
		name   string
		chunks []string
		err    error
		want   route
		n      int
		fail   bool
	}{
		{"preface in one read", []string{preface + "rest"}, io.EOF, routeGRPC, 24, false},
		{"preface byte by byte", split(preface), io.EOF, routeGRPC, 24, false},
		{"http get", []string{"GET /v1/ws HTTP/1.1\r\n"}, io.EOF, routeHTTP, 21, false},
		{"http post", []string{"POST /meshcast.v1.RiderService/Watch HTTP/1.1\r\n"}, io.EOF, routeHTTP, 24, false},
		{"starts like the preface", []string{"PRI * HTTP/1.1\r\n"}, io.EOF, routeHTTP, 16, false},
		{"short request then EOF", []string{"PR"}, io.EOF, routeHTTP, 2, false},
		{"nothing then EOF", nil, io.EOF, routeHTTP, 0, true},
		{"partial preface then timeout", []string{"PRI * HT"}, timeout, routeHTTP, 8, true},
		{"silent client", nil, timeout, routeHTTP, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &chunkConn{err: tt.err}
			for _, s := range tt.chunks {
				c.chunks = append(c.chunks, []byte(s))
			}
			var buf [len(preface)]byte
			r, n, err := sniff(c, &buf)
			if (err != nil) != tt.fail {
				t.Fatalf("err = %v, want failure %v", err, tt.fail)
			}
			if tt.fail {
				return
			}
			if r != tt.want || n != tt.n {
				t.Fatalf("route %v n %d, want %v %d", r, n, tt.want, tt.n)
			}
			all := []byte(join(tt.chunks))
			if !bytes.Equal(buf[:n], all[:n]) {
				t.Fatalf("sniffed %q, want %q", buf[:n], all[:n])
			}
		})
	}
}

type errTimeout struct{}

func (errTimeout) Error() string { return "i/o timeout" }
func (errTimeout) Timeout() bool { return true }

func split(s string) []string {
	var out []string
	for i := range len(s) {
		out = append(out, s[i:i+1])
	}
	return out
}

func join(ss []string) string {
	var b bytes.Buffer
	for _, s := range ss {
		b.WriteString(s)
	}
	return b.String()
}

func TestSniffedConnReplays(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	sc := &sniffedConn{Conn: a, head: []byte("GET ")}
	go b.Write([]byte("/ HTTP/1.1\r\n"))
	got := make([]byte, 0, 32)
	buf := make([]byte, 3)
	for len(got) < len("GET / HTTP/1.1\r\n") {
		n, err := sc.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "GET / HTTP/1.1\r\n" {
		t.Fatalf("read %q", got)
	}
}

// TestSplitterRoutes checks that real connections reach the right queue with their first bytes
// intact, that a silent connection is closed after the timeout, and that closing the listener
// closes both queues.
func TestSplitterRoutes(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sp := newSplitter(l, 200*time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- sp.run() }()

	send := func(s string) net.Conn {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
		return c
	}
	readAll := func(c net.Conn, n int) string {
		b := make([]byte, n)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	c1 := send(preface + "xyz")
	defer c1.Close()
	g, err := sp.grpc.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(g, len(preface)+3); got != preface+"xyz" {
		t.Fatalf("grpc side read %q", got)
	}
	g.Close()

	c2 := send("GET / HTTP/1.1\r\n")
	defer c2.Close()
	h, err := sp.http.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(h, 16); got != "GET / HTTP/1.1\r\n" {
		t.Fatalf("http side read %q", got)
	}
	h.Close()

	// A client that sends nothing is closed by the server after the timeout.
	c3, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	c3.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c3.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("silent client: read err %v, want EOF (closed by the server)", err)
	}

	sp.close()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if _, err := sp.grpc.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("grpc queue after close: %v", err)
	}
	if _, err := sp.http.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("http queue after close: %v", err)
	}
}

func FuzzSniff(f *testing.F) {
	f.Add([]byte(preface), 24)
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), 3)
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nXX"), 5)
	f.Add([]byte{}, 1)
	f.Fuzz(func(t *testing.T, data []byte, chunk int) {
		if chunk <= 0 {
			chunk = 1
		}
		c := &chunkConn{err: io.EOF}
		for i := 0; i < len(data); i += chunk {
			c.chunks = append(c.chunks, append([]byte(nil), data[i:min(i+chunk, len(data))]...))
		}
		var buf [len(preface)]byte
		r, n, err := sniff(c, &buf)
		if err != nil {
			if len(data) != 0 {
				t.Fatalf("error %v with %d bytes", err, len(data))
			}
			return
		}
		if n > len(data) || !bytes.Equal(buf[:n], data[:n]) {
			t.Fatalf("sniffed %q from %q", buf[:n], data)
		}
		isPreface := len(data) >= len(preface) && string(data[:len(preface)]) == preface
		if (r == routeGRPC) != isPreface {
			t.Fatalf("route %v for %q", r, data)
		}
	})
}
