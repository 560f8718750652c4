package transport

import (
	"github.com/meshcast/meshcast/edge/session"
	"google.golang.org/protobuf/encoding/protowire"
)

// riderWriter is a transport's side of the send pump: its framing (session.Framing: the encoding
// of each event and what goes around it) and how a framed batch is written. The pump is the same
// for every transport; each adapter keeps only its framing and its way of ending a stream.
type riderWriter interface {
	session.Framing
	// writeBatch writes one framed batch (within the write timeout) and owns *b from then on:
	// it returns the buffer to the pool (putBuf) once the bytes are written.
	writeBatch(b *[]byte) error
}

// pump sends the session's batches through w until the session ends (its error), a write fails
// (the writer's error) or q finds the rider stalled
// (session.ErrTooSlow). Each batch is encoded once, in w's encoding, straight into a pooled
// buffer that is taken only when a batch is ready: an idle rider holds none.
func (s *Server) pump(rs *stream, w riderWriter, q *sendQueue) error {
	var bp *[]byte
	get := func() []byte { bp = getBuf(); return (*bp)[:0] }
	for {
		b, bt, err := rs.sess.NextBatch(rs.ctx, w, get)
		if err != nil {
			return err
		}
		*bp = b
		if err := q.wait(rs.ctx, len(b)); err != nil {
			putBuf(bp)
			return err
		}
		if err := w.writeBatch(bp); err != nil {
			return err
		}
		s.m.observeBatch(bt)
	}
}

// endVarintPrefixed completes an event framed with a varint length prefix: Begin reserved one
// byte before start, which takes the length, and the event moves up for a longer varint.
func endVarintPrefixed(b []byte, start int) []byte {
	n := len(b) - start
	k := protowire.SizeVarint(uint64(n))
	if k > 1 {
		b = append(b, make([]byte, k-1)...)
		copy(b[start-1+k:], b[start:start+n])
	}
	protowire.AppendVarint(b[:start-1], uint64(n))
	return b
}
