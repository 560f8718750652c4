package telemetry

import "strings"

// MaxPayloadBytes is the largest payload [Decode] accepts; a fix is about
// 150 bytes of JSON. [Decoder.MaxPayloadBytes] overrides it.
const MaxPayloadBytes = 4096

// The MQTT v5 content types [Decode] understands. An absent content type
// (MQTT v3.1.1, or v5 without the property) means JSON.
const (
	ContentTypeJSON     = "application/json"
	ContentTypeProtobuf = "application/x-protobuf"
	contentTypeProtobuf = "application/protobuf" // also accepted
)

// Decoder decodes MQTT telemetry messages. The zero value is ready to use
// and applies the defaults.
type Decoder struct {
	// MaxPayloadBytes is the largest payload accepted; 0 means
	// [MaxPayloadBytes].
	MaxPayloadBytes int
}

// Decode is [Decoder.Decode] with the default limits.
func Decode(topic, contentType string, payload []byte, f *Fix) error {
	var d Decoder
	return d.Decode(topic, contentType, payload, f)
}

// Decode fills f from one MQTT message: it checks the payload size, takes
// Fleet and Vehicle from the topic ([ParseTopic]), picks the decoder by the
// MQTT v5 content type ("application/x-protobuf" or "application/protobuf":
// [DecodeProto]; "" or "application/json": [DecodeJSON]; media type
// parameters such as "; charset=utf-8" are ignored, case does not matter;
// anything else is rejected) and validates the fix. Every error is an
// [*Error]. It does not allocate on success.
func (d *Decoder) Decode(topic, contentType string, payload []byte, f *Fix) error {
	limit := d.MaxPayloadBytes
	if limit <= 0 {
		limit = MaxPayloadBytes
	}
	if len(payload) > limit {
		return errorf(ReasonOversized, "", "payload of %d bytes exceeds the limit of %d", len(payload), limit)
	}
	fleet, vehicle, err := ParseTopic(topic)
	if err != nil {
		return err
	}
	f.Fleet, f.Vehicle = fleet, vehicle
	mt := contentType
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = strings.TrimSpace(mt)
	switch {
	case mt == "" || strings.EqualFold(mt, ContentTypeJSON):
		return DecodeJSON(payload, f)
	case strings.EqualFold(mt, ContentTypeProtobuf) || strings.EqualFold(mt, contentTypeProtobuf):
		return DecodeProto(payload, f)
	}
	return errorf(ReasonBadContentType, "", "content type %q: want %s or %s", clip(contentType), ContentTypeJSON, ContentTypeProtobuf)
}
