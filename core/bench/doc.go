// Package bench owns meshcast's end-to-end load generator and its measurements: simulated taxis
// publishing over real MQTT, riders held open against one or more running edges over the four
// transports (WebSocket json and proto, SSE, native gRPC multiplexed over shared HTTP/2
// connections, gRPC-Web over HTTP/1.1), the end-to-end latency from a fix's timestamp
// (Vehicle.observed_at_ms) to its arrival at a rider in a log-linear histogram, delivered events,
// cuts (WebSocket 4008, gRPC RESOURCE_EXHAUSTED, the SSE "too slow" comment), drops, connect
// rate, and the servers' CPU and RSS from /proc or their /metrics.
//
// Riders can be spread over child processes (the running binary re-executed, see Child) so that
// no process exceeds its open-files limit; each child uses its own 127.0.0.x source address on
// loopback so that the ephemeral ports of one address are not exhausted either. Children report
// cumulative counters and their histogram as JSON lines on stdout; the parent sums them.
package bench
