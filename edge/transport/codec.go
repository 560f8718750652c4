package transport

import (
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// rawMessage is a message already encoded as protobuf (an event of a batch). The codec sends it
// as is: encode once, never per rider. buf, when set, is a reference to the batch's pooled
// buffer that the codec hands over to grpc-go (which releases it once written); else b is sent
// (not pooled). A stream reuses one rawMessage for all its sends (SendMsg is done with it when
// it returns).
type rawMessage struct {
	buf mem.Buffer
	b   []byte
}

// codec is the server's gRPC codec (registered under the "proto" name through
// grpc.ForceServerCodecV2, so native gRPC and gRPC-Web both use it): rawMessage passes through
// without a copy, everything else (requests, health, reflection) goes to the standard codec.
type codec struct{ std encoding.CodecV2 }

func newCodec() codec {
	std := encoding.GetCodecV2(protocodec.Name)
	if std == nil {
		panic("transport: grpc proto codec not registered")
	}
	return codec{std: std}
}

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*rawMessage); ok {
		if r.buf != nil {
			buf := r.buf
			r.buf = nil // grpc-go owns this reference now
			return mem.BufferSlice{buf}, nil
		}
		// SliceBuffer's Ref and Free do nothing: these bytes are not pooled.
		return mem.BufferSlice{mem.SliceBuffer(r.b)}, nil
	}
	return c.std.Marshal(v)
}

// rawRequest receives a request's bytes undecoded, so the handler can answer a message that is
// not a WatchRequest with INVALID_ARGUMENT (grpc-go reports codec errors as INTERNAL).
type rawRequest struct{ b []byte }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawRequest); ok {
		r.b = data.Materialize()
		return nil
	}
	return c.std.Unmarshal(data, v)
}

func (c codec) Name() string { return protocodec.Name }
