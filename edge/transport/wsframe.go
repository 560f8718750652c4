package transport

import (
	"encoding/binary"
)

// frameWriter sits under coder/websocket's bufio.Writer (see smallBuffers) and makes every
// WebSocket frame one write system call, whatever its size against the bufio buffer: it passes
// on whole frames as they come and gathers a frame that arrives in pieces (the bufio buffer
// flushed mid-frame, then the rest of the payload written past it) in a pooled buffer until it is
// complete. So the connection's bufio buffer can be tiny (an idle rider holds it for the
// connection's life) and a batch of any size is still one write. coder/websocket writes frames
// under its own write lock, so a frameWriter sees one writer at a time; the socket writes go
// through the rider's sockWriter, whose lock they share with the batches the transport writes
// as its own frames (direct.go), so whole frames only ever reach the socket.
type frameWriter struct {
	s    *sockWriter
	pend *[]byte // bytes of an incomplete frame (pooled), nil when there is none
}

// write writes whole frames to the socket under the rider's write lock, after the rest of a
// batch if one is waiting, within the write timeout.
func (w *frameWriter) write(p []byte) (int, error) {
	if err := w.s.write(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *frameWriter) Write(p []byte) (int, error) {
	if w.pend == nil {
		n := completeFrames(p)
		if n == len(p) {
			return w.write(p)
		}
		if n > 0 {
			if _, err := w.write(p[:n]); err != nil {
				return 0, err
			}
		}
		w.pend = getBuf()
		*w.pend = append((*w.pend)[:0], p[n:]...)
		return len(p), nil
	}
	*w.pend = append(*w.pend, p...)
	b := *w.pend
	n := completeFrames(b)
	if n == 0 {
		return len(p), nil
	}
	_, err := w.write(b[:n])
	rest := copy(b, b[n:])
	*w.pend = b[:rest]
	if rest == 0 {
		putBuf(w.pend)
		w.pend = nil
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// completeFrames returns the length of the longest prefix of b made of whole WebSocket frames
// (RFC 6455 §5.2: 2 bytes, a 16- or 64-bit extended length, a 4-byte mask key if masked, then
// the payload).
func completeFrames(b []byte) int {
	off := 0
	for {
		r := b[off:]
		if len(r) < 2 {
			return off
		}
		hdr, n := 2, uint64(r[1]&0x7f)
		switch n {
		case 126:
			hdr = 4
			if len(r) < hdr {
				return off
			}
			n = uint64(binary.BigEndian.Uint16(r[2:4]))
		case 127:
			hdr = 10
			if len(r) < hdr {
				return off
			}
			n = binary.BigEndian.Uint64(r[2:10])
		}
		if r[1]&0x80 != 0 {
			hdr += 4
		}
		if n > uint64(len(r)) || uint64(len(r)) < uint64(hdr)+n {
			return off
		}
		off += hdr + int(n)
	}
}

// wsHeadroom is the room a direct WebSocket batch leaves before its payload for the frame
// header (a server's frame header is at most 10 bytes: it is not masked).
const wsHeadroom = 10

func (w *wsWriter) headroom() int { return wsHeadroom }

// frame puts the header of one final, unmasked text or binary frame (the message's type) before
// the payload b[wsHeadroom:] and returns the frame.
func (w *wsWriter) frame(b []byte) []byte {
	op := byte(0x81) // FIN, text
	if w.proto {
		op = 0x82 // FIN, binary
	}
	n := len(b) - wsHeadroom
	switch {
	case n <= 125:
		b[8], b[9] = op, byte(n)
		return b[8:]
	case n <= 0xffff:
		b[6], b[7] = op, 126
		binary.BigEndian.PutUint16(b[8:10], uint16(n))
		return b[6:]
	default:
		b[0], b[1] = op, 127
		binary.BigEndian.PutUint64(b[2:10], uint64(n))
		return b
	}
}
