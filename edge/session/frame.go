package session

import (
	"strconv"

	"github.com/meshcast/meshcast/edge/hub"
	"google.golang.org/protobuf/encoding/protowire"
)

// Kind is the kind of a RiderEvent.
type Kind uint8

// The kinds of RiderEvent. Their String is the SSE event name.
const (
	KindSnapshot Kind = iota + 1
	KindUpsert
	KindRemove
	KindHeartbeat
)

// String returns the SSE event name: "snapshot", "upsert", "remove" or "heartbeat".
func (k Kind) String() string {
	switch k {
	case KindSnapshot:
		return "snapshot"
	case KindUpsert:
		return "upsert"
	case KindRemove:
		return "remove"
	case KindHeartbeat:
		return "heartbeat"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Frame is one RiderEvent in both wire formats.
type Frame struct {
	Seq  uint64
	Kind Kind
	// Proto is the complete protobuf RiderEvent (seq included), without a length prefix.
	Proto []byte
	// JSON is the complete protojson RiderEvent on one line, without a trailing newline.
	JSON []byte
}

// RiderEvent field numbers (proto/meshcast/v1/rider.proto).
const (
	fSeq       = 1
	fSnapshot  = 10
	fUpsert    = 11
	fRemove    = 12
	fHeartbeat = 13

	fSnapshotVehicles = 1
	fVehicleDistance  = 10
	fHeartbeatTime    = 1
)

// vehicle is one vehicle of a frame: the shared entry and the rider's distance.
type vehicle struct {
	e    *hub.Entry
	dist uint32
}

// sizeVehicle is the size of the Vehicle message e + distance.
func sizeVehicle(v vehicle) int {
	n := len(v.e.Proto)
	if v.dist != 0 {
		n += protowire.SizeTag(fVehicleDistance) + protowire.SizeVarint(uint64(v.dist))
	}
	return n
}

func appendVehicleProto(b []byte, v vehicle) []byte {
	b = append(b, v.e.Proto...)
	if v.dist != 0 {
		b = protowire.AppendTag(b, fVehicleDistance, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v.dist))
	}
	return b
}

// appendVehicleJSON appends the entry's JSON with "distanceM" spliced in before the closing brace.
func appendVehicleJSON(b []byte, v vehicle) []byte {
	js := v.e.JSON
	if v.dist == 0 {
		return append(b, js...)
	}
	body := js[:len(js)-1] // without '}'
	b = append(b, body...)
	if !emptyObject(body) {
		b = append(b, ',')
	}
	b = append(b, `"distanceM":`...)
	b = strconv.AppendUint(b, uint64(v.dist), 10)
	return append(b, '}')
}

// emptyObject reports whether body (an object without its closing brace) has no member yet.
func emptyObject(body []byte) bool {
	for _, c := range body[1:] {
		if c != ' ' && c != '\n' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

func appendSeqProto(b []byte, seq uint64) []byte {
	b = protowire.AppendTag(b, fSeq, protowire.VarintType)
	return protowire.AppendVarint(b, seq)
}

func appendSeqJSON(b []byte, seq uint64) []byte {
	b = append(b, `{"seq":"`...)
	b = strconv.AppendUint(b, seq, 10)
	return append(b, `",`...)
}

// encoder appends the frames of a batch to one buffer (each frame's protobuf, then its JSON) and
// slices it into Frames once the batch is complete (appends may move the buffer).
type encoder struct {
	buf   []byte
	marks []mark
}

type mark struct {
	seq    uint64
	kind   Kind
	p0, j0 int // start of the protobuf and of the JSON
	end    int
}

func (x *encoder) begin(seq uint64, k Kind) {
	x.marks = append(x.marks, mark{seq: seq, kind: k, p0: len(x.buf)})
}

// json marks the end of the frame's protobuf and the start of its JSON.
func (x *encoder) json() { x.marks[len(x.marks)-1].j0 = len(x.buf) }

func (x *encoder) end() { x.marks[len(x.marks)-1].end = len(x.buf) }

func (x *encoder) upsert(seq uint64, v vehicle) {
	x.begin(seq, KindUpsert)
	b := appendSeqProto(x.buf, seq)
	b = protowire.AppendTag(b, fUpsert, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(sizeVehicle(v)))
	x.buf = appendVehicleProto(b, v)
	x.json()
	b = appendSeqJSON(x.buf, seq)
	b = append(b, `"upsert":`...)
	b = appendVehicleJSON(b, v)
	x.buf = append(b, '}')
	x.end()
}

func (x *encoder) remove(seq uint64, r *hub.Removal) {
	x.begin(seq, KindRemove)
	b := appendSeqProto(x.buf, seq)
	b = protowire.AppendTag(b, fRemove, protowire.BytesType)
	x.buf = protowire.AppendBytes(b, r.Proto)
	x.json()
	b = appendSeqJSON(x.buf, seq)
	b = append(b, `"remove":`...)
	b = append(b, r.JSON...)
	x.buf = append(b, '}')
	x.end()
}

func (x *encoder) heartbeat(seq uint64, nowMs int64) {
	x.begin(seq, KindHeartbeat)
	b := appendSeqProto(x.buf, seq)
	b = protowire.AppendTag(b, fHeartbeat, protowire.BytesType)
	if nowMs != 0 {
		b = protowire.AppendVarint(b, uint64(protowire.SizeTag(fHeartbeatTime)+protowire.SizeVarint(uint64(nowMs))))
		b = protowire.AppendTag(b, fHeartbeatTime, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(nowMs))
	} else {
		b = protowire.AppendVarint(b, 0)
	}
	x.buf = b
	x.json()
	b = appendSeqJSON(x.buf, seq)
	b = append(b, `"heartbeat":{`...)
	if nowMs != 0 {
		b = append(b, `"serverTimeMs":"`...)
		b = strconv.AppendInt(b, nowMs, 10)
		b = append(b, '"')
	}
	x.buf = append(b, "}}"...)
	x.end()
}

func (x *encoder) snapshot(seq uint64, vs []vehicle) {
	x.begin(seq, KindSnapshot)
	n := 0
	for _, v := range vs {
		s := sizeVehicle(v)
		n += protowire.SizeTag(fSnapshotVehicles) + protowire.SizeVarint(uint64(s)) + s
	}
	b := appendSeqProto(x.buf, seq)
	b = protowire.AppendTag(b, fSnapshot, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	for _, v := range vs {
		b = protowire.AppendTag(b, fSnapshotVehicles, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeVehicle(v)))
		b = appendVehicleProto(b, v)
	}
	x.buf = b
	x.json()
	b = appendSeqJSON(x.buf, seq)
	if len(vs) == 0 {
		b = append(b, `"snapshot":{}}`...)
	} else {
		b = append(b, `"snapshot":{"vehicles":[`...)
		for i, v := range vs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendVehicleJSON(b, v)
		}
		b = append(b, "]}}"...)
	}
	x.buf = b
	x.end()
}

// frames appends the batch's frames to dst. The frames share the batch's buffer, which the
// encoder then forgets (the next batch gets a new one), so the frames stay valid for the caller.
func (x *encoder) frames(dst []Frame) []Frame {
	for _, m := range x.marks {
		dst = append(dst, Frame{
			Seq: m.seq, Kind: m.kind,
			Proto: x.buf[m.p0:m.j0:m.j0],
			JSON:  x.buf[m.j0:m.end:m.end],
		})
	}
	x.buf, x.marks = nil, x.marks[:0]
	return dst
}
