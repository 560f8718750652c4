package transport

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Plain-text HTTP/2 (h2c, prior knowledge) carries native gRPC and, from tools and proxies,
// gRPC-Web, SSE and the page too (API.md: HTTP/1.1 and HTTP/2). The preface alone does not tell
// them apart, so h2route reads a connection's first frames up to its first request's headers:
// a content type of application/grpc (not grpc-web) goes to grpc-go (the native transport),
// anything else to net/http's h2c server. A connection is routed by its first request; a
// native gRPC request that follows on a connection routed to net/http is still served
// (grpc.Server.ServeHTTP), a gRPC-Web request on a native one gets grpc-go's 415.
//
// Clients may wait for the server's SETTINGS before sending a request (grpc-go does), so h2route
// sends an empty SETTINGS frame first (a valid server preface: the defaults), and removes the
// client's acknowledgement of it from the bytes replayed to the server that takes the
// connection: that server sends its own SETTINGS, and net/http treats an acknowledgement of
// settings it never sent as a protocol error. For the HTTP route h2route therefore also waits
// for that acknowledgement (clients send it at once); grpc-go ignores acknowledgements, so a
// late one does no harm there.

// emptySettings is a SETTINGS frame without parameters: the server connection preface.
var emptySettings = []byte{0, 0, 0, byte(http2.FrameSettings), 0, 0, 0, 0, 0}

// maxH2Sniff bounds what h2route buffers: headers up to the header cap plus what a client may
// send before our acknowledgement arrives (its first stream's initial window, 64 KiB).
const maxH2Sniff = 128 << 10

var errH2Sniff = errors.New("http/2 connection: no request headers and settings acknowledgement within the first frames")

// h2route reads the frames that follow the client preface from r, after writing the server
// preface to w, until the first request's headers (and, for the HTTP route, the acknowledgement
// of our SETTINGS) have arrived. It returns whether the connection is native gRPC and the bytes
// read, acknowledgement removed, to replay after the preface. A read error before any headers
// (a client that connects ahead of its first call, then the handshake timeout) routes to
// native gRPC, which owns idle HTTP/2 connections; maxHeader caps the decoded header list.
func h2route(r io.Reader, w io.Writer, maxHeader int) (toGRPC bool, head []byte, err error) {
	if _, err := w.Write(emptySettings); err != nil {
		return false, nil, fmt.Errorf("write settings: %w", err)
	}
	rec := &recorder{r: r}
	fr := http2.NewFramer(io.Discard, rec)
	fr.SetMaxReadFrameSize(16 << 10) // the default we announced
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = uint32(maxHeader)
	var headers, acked bool
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if !headers && isTimeout(err) {
				return true, rec.buf, nil
			}
			return false, nil, err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() && !acked {
				acked = true
				rec.buf = rec.buf[:len(rec.buf)-len(emptySettings)] // the frame just read
			}
		case *http2.MetaHeadersFrame:
			if !headers {
				headers = true
				toGRPC = isNativeGRPC(f)
			}
		}
		if headers && (toGRPC || acked) {
			return toGRPC, rec.buf, nil
		}
		if len(rec.buf) > maxH2Sniff {
			return false, nil, errH2Sniff
		}
	}
}

// isNativeGRPC reports a request for grpc-go: POST with content type application/grpc[+...].
func isNativeGRPC(f *http2.MetaHeadersFrame) bool {
	if f.PseudoValue("method") != "POST" {
		return false
	}
	for _, hf := range f.RegularFields() {
		if hf.Name == "content-type" {
			return isGRPCContentType(hf.Value)
		}
	}
	return false
}

func isGRPCContentType(ct string) bool {
	return strings.HasPrefix(ct, "application/grpc") && !strings.HasPrefix(ct, "application/grpc-web")
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// recorder keeps every byte read through it.
type recorder struct {
	r   io.Reader
	buf []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.buf = append(r.buf, p[:n]...)
	return n, err
}
