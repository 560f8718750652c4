// Package bridge owns MQTT ingest: it subscribes to taxi telemetry on an MQTT
// v5 broker and turns every message into a bus update (proto/API.md §1-2; the architecture:
// README.md). Run wires one bridge process (bus, metrics, admin) around a Bridge.
//
// # Flow
//
//	broker --$share/<group>/taxi/+/+/state, QoS 1--> autopaho (one receive goroutine)
//	   -> queue of worker hash(topic) (bounded; full: the receive goroutine waits)
//	   -> worker: telemetry.Decode -> Classifier.Classify(now) -> bus.Apply -> ack
//
// The receive callback (autopaho's OnPublishReceived, called serially) only
// picks the worker by a hash of the topic, so all messages of one vehicle go
// to the same worker and are applied in the order the broker delivered them.
// A full queue blocks the callback, which stops paho reading the connection:
// backpressure reaches the broker through TCP, not through an unbounded
// number of goroutines, and without relying on the broker honouring Receive
// Maximum.
//
// # At-least-once
//
// Acknowledgements are manual (paho EnableManualAcknowledgment; paho sends the
// PUBACKs in receive order). A message is acknowledged only when its result is
// in the bus, or when it was rejected (undecodable, invalid, timestamp too far
// in the future or older than the TTL, e.g. in seconds: counted by
// telemetry.Reason, logged at most once per
// RejectLogInterval per reason, and dropped). A bus error (or an attempt that
// gets no answer within ApplyTimeout, e.g. Redis is down) is counted, logged and
// retried with exponential backoff until it succeeds or the bridge stops; a message whose
// result is not in the bus is never acknowledged. The session is persistent
// (Clean Start false, SessionExpiry > 0, a stable client id), so the broker
// redelivers every unacknowledged message after a reconnect, a restart or a
// crash; bus.Apply is idempotent, so a redelivery changes nothing that was
// already applied.
//
// autopaho reconnects with backoff; the bridge subscribes again on every
// connection (autopaho does not). Shared subscriptions let replicas with
// different client ids split the load; per-vehicle state lives in the bus, not
// here, so any replica may process any message.
//
// # Shutdown
//
// When Run's context ends, the receive callback stops taking messages (those
// it refuses are not acknowledged), the workers finish what is queued for up
// to DrainTimeout (retries of a failing bus stop at that deadline: the rest is
// handed back, i.e. not acknowledged), pending acknowledgements are flushed,
// and the client disconnects, keeping its session.
//
// # Metrics
//
//	meshcast_bridge_messages_received_total          messages delivered by the broker
//	meshcast_bridge_messages_rejected_total{reason}  rejected by telemetry.Reason (acknowledged, dropped)
//	meshcast_bridge_messages_applied_total{result}   bus.Apply outcomes: applied, stale (older or duplicate fix)
//	meshcast_bridge_events_published_total           mesh events published by those applies
//	meshcast_bridge_bus_errors_total                 failed bus.Apply attempts (each is retried)
//	meshcast_bridge_messages_handed_back_total       messages left unacknowledged at shutdown
//	meshcast_bridge_queue_depth                      messages waiting in the worker queues
//	meshcast_bridge_processing_seconds               receipt to acknowledgement, per message
//	meshcast_bridge_fix_age_seconds                  the fix's ts to acknowledgement, per applied fix
//	meshcast_bridge_connected                        1 while connected to the broker
//	meshcast_bridge_connections_total                connections established (first and reconnects)
package bridge
