// Package transport carries rider sessions (package session) to clients over four transports on
// one listener, as thin adapters: each opens a session from the client's request, writes the
// session's pre-encoded frames, applies moves, and maps errors to its protocol. It owns the
// listener split, the wire framing of each transport and graceful stop; it does not own the
// rider's view (session) or the per-mesh state (hub).
//
// # One port
//
// Server.Serve peeks at the first bytes of every accepted connection: HTTP/1.x goes to
// net/http; the HTTP/2 client preface (plain-text HTTP/2 with prior knowledge, h2c) is routed by
// its first request's headers (h2route): native gRPC (content type application/grpc) to the
// grpc-go transport (grpc.Server.Serve, with keepalive enforcement), anything else (gRPC-Web,
// SSE, the page) to net/http's h2c server. TLS and HTTP/2 for browsers are terminated in front
// of the edge. A connection that does not send its first bytes within Options.HandshakeTimeout
// is closed and counted in meshcast_edge_stalled_total{reason="first_bytes"}.
//
// # Transports (API.md §3)
//
//   - gRPC: RiderService.Watch and Track. Frames are sent as their protobuf bytes through a codec
//     that passes raw bytes through (encode once, never per rider) and uses the standard proto
//     codec for everything else. A request that does not decode, or is invalid, ends the stream
//     with INVALID_ARGUMENT before any event; a request over MaxMessageBytes gets grpc-go's
//     RESOURCE_EXHAUSTED. A cut rider gets RESOURCE_EXHAUSTED "too slow...", a stream told to
//     go away UNAVAILABLE. gRPC health (grpc.health.v1, SERVING until Shutdown) and server reflection are
//     registered.
//   - gRPC-Web (improbable-eng/grpc-web): the same service at the same paths, binary and text,
//     CORS for Options.AllowedOrigins (a request from another origin gets 403 from the server
//     itself, as on WebSocket and SSE), and its grpc-websockets transport for Track. Every write
//     of a gRPC-Web response has a write deadline (the websocket transport's writes have none:
//     the library owns them). Binary Watch over plain HTTP/1.1 (what browsers' fetch sends) is
//     not served by grpc-go: the package's WrapHandler over the edge's own handler answers CORS
//     and refusals, then the connection is hijacked and the stream written like SSE (direct
//     writes; chunked, one gRPC-Web data frame per event, the trailer frame at the end; see
//     grpcweb.go). A grpc-timeout ends it with DEADLINE_EXCEEDED; a body that is not exactly one
//     WatchRequest message is INVALID_ARGUMENT. Text mode, HTTP/2, the websocket transport and
//     the other methods go through the package over grpc-go.
//   - WebSocket, GET /v1/ws: query lat, lon, radius_m, classes (comma-separated
//     standard|premium|van|accessible), max_vehicles, min_interval_ms. Subprotocol
//     meshcast.v1.json (the default when the client offers none: text frames, protojson events
//     joined by "\n") or meshcast.v1.proto (binary frames, varint length-delimited events); the
//     first one the client offers that the server speaks wins. A bad query, or offering only
//     unknown subprotocols, is refused with HTTP 400 {"error":{"code":"invalid_argument",...}}
//     before the upgrade; a cross-origin request from an origin not allowed gets 403. Each
//     session batch is one message. A client text frame holding a protojson WatchRequest moves
//     the area (a new Snapshot follows); a binary frame, text that is not a WatchRequest or an
//     invalid one closes with 1008 and what is wrong; a frame over MaxMessageBytes closes with
//     1008 too, as API.md says for anything but a move. OPTIONS answers a CORS preflight (as on
//     /v1/sse), and a query that does not parse (a bad %-escape) is "malformed". Close codes: 1001 going away (max age, drain, stop),
//     4008 too slow, 1011 server failure. Compression is off. Each write has WriteTimeout: a write that times out
//     drops the connection (the slow-consumer cut when the queue alone does not catch it).
//   - SSE, GET /v1/sse with the same query: text/event-stream, a retry: hint first, then per frame
//     "id: <seq>", "event: <kind>", "data: <protojson RiderEvent>"; heartbeats are events too
//     (the same events on every transport) and are preceded by a ": hb" comment. Last-Event-ID
//     (or the lastEventId query parameter) continues the numbering after that id, starting with
//     a fresh Snapshot. Batches are written with a write deadline. The stream ends after a
//     comment naming the reason when the rider is cut or the server stops. On HTTP/1.x the
//     connection is hijacked and the response (Connection: close) written straight to the socket.
//
// # Riders that stop reading
//
// The session coalesces by vehicle, so a rider that stops reading in a quiet area never
// overflows its queue; what shows it is the transport. WebSocket, SSE and gRPC-Web riders own
// their socket: its SO_SNDBUF is set to Options.SendBuffer, and the bytes the client has not
// acknowledged (SIOCOUTQ on Linux) are compared with it before a batch that could take the
// queue past it (sendQueue: not at every write). A rider past it is held (its session keeps
// coalescing) until it acknowledges enough to be under it again; one that acknowledges nothing
// for WriteTimeout meanwhile is cut with its "too slow" (4008, the SSE comment,
// RESOURCE_EXHAUSTED), which still fits in the socket, so the client reads it after what it had
// not read. A client that reads, however slowly, is never cut. Native gRPC riders share
// connections: HTTP/2 flow control blocks a stalled stream's send once its window (and grpc-go's
// 64 KiB write quota) is used up, and a send blocked for WriteTimeout ends the stream with
// RESOURCE_EXHAUSTED (stallWatch). How soon a stalled rider is cut depends on how fast its area
// changes: Options.SendBuffer plus the client's receive buffer (or its HTTP/2 window) must fill
// first; until then it costs the edge one coalesced update per vehicle plus the kernel's buffer.
// Every write also has WriteTimeout, the last resort when the send queue cannot be measured.
//
// # Admission (API.md §3 "Query errors and auth")
//
// Every stream is admitted from its headers (admit), before anything waits on a body and
// before any upgrade or event; WebSocket and SSE then parse their query, gRPC and gRPC-Web
// receive their request message, which must be complete within Options.HandshakeTimeout (for
// gRPC-Web over HTTP: the whole body): a stalled one is cut with DEADLINE_EXCEEDED and counted
// in meshcast_edge_stalled_total (see firstRequest). Native HTTP/2 connections hold at most
// Options.MaxStreamsPerConn streams; headers and metadata are capped at Options.MaxHeaderBytes
// on both paths. Admission refuses, in this order: refused while draining or stopping (UNAVAILABLE, HTTP 503
// unavailable); over Options.ConnRate (token bucket: UNAVAILABLE, 503); without a valid bearer
// token when Options.Authenticate is set (the authorization header or metadata, or the
// access_token query parameter on WebSocket and SSE: UNAUTHENTICATED, HTTP 401
// {"error":{"code":"unauthenticated",...}} with WWW-Authenticate); over Options.MaxConns
// (UNAVAILABLE, 503) or Options.MaxConnsPerIP (RESOURCE_EXHAUSTED, 503 resource_exhausted).
// Every HTTP 503 carries Retry-After; every refusal counts in meshcast_edge_rejected_total. The
// client address is the peer's, or, when the peer is in Options.TrustedProxies, the right-most
// address of Options.TrustedProxyHeader that is not a trusted proxy. A token's Grant.MaxRadiusM
// lowers the radius limit of that rider's session (moves included).
//
// # Going away: max age, drain, stop
//
// Each stream waits in Session.Next on a context of its own, derived from the server's stop
// context, with a cause: Options.MaxConnAge (+ up to 10% jitter) ends it with "max connection
// age reached", Drain with "server draining" at a random moment in the drain window (so the
// riders' reconnects are spread evenly, not a storm), Shutdown with "server shutting down".
// Each transport says it its own way: WebSocket close 1001 with the reason, SSE a comment with
// the reason then the end of the stream (EventSource reconnects after the retry: hint), gRPC and
// gRPC-Web UNAVAILABLE with the reason. grpc-go's MaxConnectionAge (GOAWAY) and
// MaxConnectionAgeGrace are set too, so a native gRPC connection itself is replaced; the grace
// defaults to MinConnAgeGrace, so that the streams a proxy multiplexes on one connection still
// each end at their own age instead of all together when the connection closes.
//
// # Memory per rider
//
// A WebSocket or SSE stream gives back net/http's connection goroutine, request and 4 KiB
// buffers once accepted: it lives in one small goroutine (a reader that notices the client
// leaving or applies its moves), with small or no buffers, and has no writer goroutine while it
// keeps up: its batches are written by a flusher (or the fan-out) with one non-blocking system
// call each, and only what would wait gets a goroutine of the rider's own (direct.go). A binary
// gRPC-Web Watch over HTTP/1.1 is served the same way (grpcweb.go). The gRPC
// transports use one send pump (pump: a
// riderWriter is a transport's framing and its write): each batch is encoded once, in the
// rider's own format, straight into a pooled buffer taken when the batch is ready and given
// back once written (for gRPC the batch moves into a buffer of grpc-go's pool, of its size class,
// and each message is a mem.Buffer view of it that grpc-go releases once written: a stalled
// stream's queued messages pin no more than their own batches). A WebSocket batch is one write
// system call whatever its size (its own frame), a gRPC-Web batch one flush. A native gRPC stream
// is grpc-go's handler goroutine. BenchmarkIdleRiderMemory measures each (see BENCHMARKS.md).
//
// # Stop
//
// Drain turns health NOT_SERVING and refuses new streams while the open ones go away over the
// window; WaitIdle waits for them. Shutdown stops accepting, turns health NOT_SERVING, ends
// every stream left (WebSocket 1001, SSE end of stream, gRPC and gRPC-Web UNAVAILABLE), waits
// for them, then stops the gRPC server (GOAWAY) and the HTTP server, all bounded by its context,
// after which it closes what is left.
//
// # Operations
//
// Options.HTTPMiddleware and the gRPC interceptors carry the process's request id, access log,
// request metrics and panic recovery (core/ops). The server's own metrics (see metrics.go):
// meshcast_edge_connections{transport}, meshcast_edge_rejected_total{reason},
// meshcast_edge_streams_ended_total{reason}, meshcast_edge_stalled_total{reason},
// meshcast_edge_delivery_latency_seconds (from the
// fix's observed_at_ms to the write of its upsert), meshcast_edge_queued_updates and _max.
package transport
