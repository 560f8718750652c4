package ops

import (
	"context"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// requestIDKey is the request id's metadata key.
var requestIDKey = strings.ToLower(RequestIDHeader)

// grpcRequestID takes the client's x-request-id when sane, else makes one, and stores it.
func grpcRequestID(ctx context.Context) (context.Context, string) {
	md, _ := metadata.FromIncomingContext(ctx)
	id := ""
	if v := md.Get(requestIDKey); len(v) > 0 && validID(v[0]) {
		id = v[0]
	} else {
		id = NewRequestID()
	}
	return WithRequestID(ctx, id), id
}

// recovered turns a recovered panic into INTERNAL.
func recovered(logger *slog.Logger, m *Metrics, ctx context.Context, method string, p any) error {
	if m != nil {
		m.panics.Inc()
	}
	logger.Error("panic in gRPC handler", "request_id", RequestID(ctx), "method", method, "panic", p, "stack", string(debug.Stack()))
	return status.Error(codes.Internal, "internal error")
}

func (m *Metrics) countGRPC(method string, err error) {
	if m != nil {
		m.grpc.WithLabelValues(method, status.Code(err).String()).Inc()
	}
}

// StreamInterceptor is the gRPC counterpart of HTTP for streams: a request id (x-request-id
// metadata or a new one, in the context), panic recovery (INTERNAL), a log line at debug level
// when the call ends and the call counter. m may be nil.
func StreamInterceptor(logger *slog.Logger, m *Metrics) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		ctx, id := grpcRequestID(ss.Context())
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				err = recovered(logger, m, ctx, info.FullMethod, p)
			}
			m.countGRPC(info.FullMethod, err)
			logger.LogAttrs(ctx, slog.LevelDebug, "grpc call", slog.String("request_id", id),
				slog.String("method", info.FullMethod), slog.String("code", status.Code(err).String()),
				slog.Duration("duration", time.Since(start)))
		}()
		return handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
	}
}

// UnaryInterceptor is StreamInterceptor for unary calls (health, reflection is a stream).
func UnaryInterceptor(logger *slog.Logger, m *Metrics) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		ctx, id := grpcRequestID(ctx)
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				err = recovered(logger, m, ctx, info.FullMethod, p)
			}
			m.countGRPC(info.FullMethod, err)
			logger.LogAttrs(ctx, slog.LevelDebug, "grpc call", slog.String("request_id", id),
				slog.String("method", info.FullMethod), slog.String("code", status.Code(err).String()),
				slog.Duration("duration", time.Since(start)))
		}()
		return handler(ctx, req)
	}
}

// ctxStream replaces a stream's context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }
