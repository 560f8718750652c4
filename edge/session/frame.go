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

// Framing writes a batch in one transport's wire format: each event is encoded once, in the
// framing's encoding (protobuf or protojson), straight into the transport's write buffer, with
// what the transport puts around it (a length prefix, an SSE event's fields, a gRPC message
// header). Implementations keep only their framing; see NextBatch.
type Framing interface {
	// JSON reports whether events are encoded as protojson RiderEvents (else protobuf).
	JSON() bool
	// Begin appends what goes before event i (0-based in the batch) of kind k and seq.
	Begin(b []byte, i int, seq uint64, k Kind) []byte
	// End completes the event whose encoding is b[start:].
	End(b []byte, start int) []byte
}

// Batch describes the events one NextBatch appended.
type Batch struct {
	Events  int
	LastSeq uint64
	// Observed holds the observed_at_ms of the batch's upserts, in order (for the delivery
	// latency): valid until the next NextBatch.
	Observed []int64
}

// appendEventBody appends one event's RiderEvent encoding (protojson if json).
func appendEventBody(b []byte, json bool, seq uint64, o *out, snap []vehicle, nowMs int64) []byte {
	switch o.kind {
	case KindSnapshot:
		if json {
			return appendSnapshotJSON(b, seq, snap)
		}
		return appendSnapshotProto(b, seq, snap)
	case KindUpsert:
		if json {
			return appendUpsertJSON(b, seq, o.v)
		}
		return appendUpsertProto(b, seq, o.v)
	case KindRemove:
		if json {
			return appendRemoveJSON(b, seq, o.r)
		}
		return appendRemoveProto(b, seq, o.r)
	default:
		if json {
			return appendHeartbeatJSON(b, seq, nowMs)
		}
		return appendHeartbeatProto(b, seq, nowMs)
	}
}

func appendUpsertProto(b []byte, seq uint64, v vehicle) []byte {
	b = appendSeqProto(b, seq)
	b = protowire.AppendTag(b, fUpsert, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(sizeVehicle(v)))
	return appendVehicleProto(b, v)
}

func appendUpsertJSON(b []byte, seq uint64, v vehicle) []byte {
	b = appendSeqJSON(b, seq)
	b = append(b, `"upsert":`...)
	b = appendVehicleJSON(b, v)
	return append(b, '}')
}

func appendRemoveProto(b []byte, seq uint64, r *hub.Removal) []byte {
	b = appendSeqProto(b, seq)
	b = protowire.AppendTag(b, fRemove, protowire.BytesType)
	return protowire.AppendBytes(b, r.Proto)
}

func appendRemoveJSON(b []byte, seq uint64, r *hub.Removal) []byte {
	b = appendSeqJSON(b, seq)
	b = append(b, `"remove":`...)
	b = append(b, r.JSON...)
	return append(b, '}')
}

func appendHeartbeatProto(b []byte, seq uint64, nowMs int64) []byte {
	b = appendSeqProto(b, seq)
	b = protowire.AppendTag(b, fHeartbeat, protowire.BytesType)
	if nowMs != 0 {
		b = protowire.AppendVarint(b, uint64(protowire.SizeTag(fHeartbeatTime)+protowire.SizeVarint(uint64(nowMs))))
		b = protowire.AppendTag(b, fHeartbeatTime, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(nowMs))
	}
	return protowire.AppendVarint(b, 0)
}

func appendHeartbeatJSON(b []byte, seq uint64, nowMs int64) []byte {
	b = appendSeqJSON(b, seq)
	b = append(b, `"heartbeat":{`...)
	if nowMs != 0 {
		b = append(b, `"serverTimeMs":"`...)
		b = strconv.AppendInt(b, nowMs, 10)
		b = append(b, '"')
	}
	return append(b, "}}"...)
}

func appendSnapshotProto(b []byte, seq uint64, vs []vehicle) []byte {
	n := 0
	for _, v := range vs {
		s := sizeVehicle(v)
		n += protowire.SizeTag(fSnapshotVehicles) + protowire.SizeVarint(uint64(s)) + s
	}
	b = appendSeqProto(b, seq)
	b = protowire.AppendTag(b, fSnapshot, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	for _, v := range vs {
		b = protowire.AppendTag(b, fSnapshotVehicles, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeVehicle(v)))
		b = appendVehicleProto(b, v)
	}
	return b
}

func appendSnapshotJSON(b []byte, seq uint64, vs []vehicle) []byte {
	b = appendSeqJSON(b, seq)
	if len(vs) == 0 {
		return append(b, `"snapshot":{}}`...)
	}
	b = append(b, `"snapshot":{"vehicles":[`...)
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendVehicleJSON(b, v)
	}
	return append(b, "]}}"...)
}
