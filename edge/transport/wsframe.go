package transport

import (
	"encoding/binary"
	"net"
)

// frameWriter sits under coder/websocket's bufio.Writer (see smallBuffers) and makes every
// WebSocket frame one write system call, whatever its size against the bufio buffer: it passes
// on whole frames as they come and gathers a frame that arrives in pieces (the bufio buffer
// flushed mid-frame, then the rest of the payload written past it) in a pooled buffer until it is
// complete. So the connection's bufio buffer can be tiny (an idle rider holds it for the
// connection's life) and a batch of any size is still one write. coder/websocket writes frames
// under its own write lock, so a frameWriter sees one writer at a time.
type frameWriter struct {
	c    net.Conn
	pend *[]byte // bytes of an incomplete frame (pooled), nil when there is none
}

func (w *frameWriter) Write(p []byte) (int, error) {
	if w.pend == nil {
		n := completeFrames(p)
		if n == len(p) {
			return w.c.Write(p)
		}
		if n > 0 {
			if _, err := w.c.Write(p[:n]); err != nil {
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
	_, err := w.c.Write(b[:n])
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
