package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"

	"github.com/meshcast/meshcast/bridge"
	"github.com/meshcast/meshcast/core/config"
	"github.com/meshcast/meshcast/core/redact"
	"github.com/meshcast/meshcast/core/telemetry"
)

// runBridge runs one bridge replica until ctx ends (SIGINT/SIGTERM), then drains.
func runBridge(ctx context.Context, args []string, stdout io.Writer) error {
	fs := config.NewFlagSet("bridge", `Subscribe to taxi telemetry on an MQTT v5 broker (shared subscription
$share/<group>/taxi/+/+/state, QoS 1), classify every fix against the zones
and publish the transitions on the bus. A message is acknowledged only once its
result is in the bus (or it was rejected as invalid), so a crash loses nothing:
the broker redelivers to the same client id. Replicas need distinct client ids
and the same group.`)
	brokers := fs.String("broker", "mqtt://127.0.0.1:1883", "MQTT broker URLs, comma-separated (mqtt://host:port, tls://host:port)")
	clientID := fs.String("client-id", bridge.DefaultClientID(), "MQTT client id: stable across restarts, unique per replica")
	username := fs.String("username", "", "MQTT user name")
	password := fs.String("password", "", "MQTT password (prefer the environment variable)")
	group := fs.String("group", bridge.DefaultGroup, "shared subscription group")
	topic := fs.String("topic", bridge.DefaultTopicFilter, "topic filter inside the shared subscription")
	workers := fs.Int("workers", bridge.DefaultWorkers(), "concurrent workers (each owns a bounded queue; one vehicle always goes to one worker)")
	queue := fs.Int("queue", bridge.DefaultQueueSize, "capacity of each worker's queue; when full, reading from the broker waits")
	receiveMax := fs.Int("receive-maximum", bridge.DefaultReceiveMaximum, "MQTT v5 Receive Maximum: messages the broker may have in flight to this bridge")
	sessionExpiry := fs.Duration("session-expiry", bridge.DefaultSessionExpiry, "how long the broker keeps the session and unacknowledged messages while the bridge is away")
	keepAlive := fs.Duration("keepalive", bridge.DefaultKeepAlive, "MQTT keep-alive")
	ackInterval := fs.Duration("ack-interval", bridge.DefaultAckInterval, "how often ready acknowledgements are sent")
	applyTimeout := fs.Duration("apply-timeout", bridge.DefaultApplyTimeout, "bound of one bus write attempt: a bus that does not answer in time (Redis down) fails the attempt, which is counted, logged and retried")
	drain := fs.Duration("drain-timeout", bridge.DefaultDrainTimeout, "on shutdown, how long to finish queued messages before handing the rest back")
	busAddr := fs.String("bus", "redis://127.0.0.1:6379", "bus address: redis://host:port, redis+cluster://host:port,host:port, memory://")
	busPrefix := fs.String("bus-prefix", "mc", "prefix of every Redis key and channel")
	busBatchDelay := fs.Duration("bus-batch-delay", 0, "Redis: 0 sends each idle bucket's script call at once; up to 2ms waits that long and sends the calls of all idle buckets in one pipeline (less CPU per fix at low rates, a few ms more latency; see BENCHMARKS.md)")
	readDelay := fs.Duration("read-delay", 0, "MQTT: while messages keep coming, read the connection at most once per this delay (0-5ms), so that one system call brings several (less CPU per fix at a steady rate, up to this much more latency; with -bus-batch-delay the fixes of one read go to Redis in one round without waiting for that delay; see BENCHMARKS.md); 0 reads at once")
	zonesFile := fs.String("zones", "", zonesUsage)
	ttl := fs.Duration("ttl", telemetry.DefaultTTL, "how long a fix keeps a vehicle dispatchable")
	maxSkew := fs.Duration("max-skew", telemetry.DefaultMaxSkew, "how far in the future a fix's ts may be")
	maxPayload := fs.Int("max-payload", telemetry.MaxPayloadBytes, "largest payload accepted, in bytes")
	admin := fs.String("admin", "127.0.0.1:9101", "admin listener: /metrics, /healthz, /readyz, /debug/pprof/ (keep it private; empty: off)")
	gcDefault := 400
	if os.Getenv("GOGC") != "" {
		gcDefault = -1 // the environment decides
	}
	gcPercent := fs.Int("gc-percent", gcDefault, "Go GC target (as GOGC) for this process: the bridge's live heap is small, so 400 costs little memory and ~10% less CPU per message than Go's 100; -1 keeps GOGC's (the default when GOGC is set)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	logger, err := bridgeLogger(*logLevel, *logFormat)
	if err != nil {
		return err
	}
	switch {
	case *gcPercent == -1:
	case *gcPercent < 10:
		return fmt.Errorf("-gc-percent %d: use at least 10, or -1 to keep GOGC", *gcPercent)
	default:
		debug.SetGCPercent(*gcPercent)
	}
	zones, err := loadZones(*zonesFile)
	if err != nil {
		return err
	}
	return bridge.Run(ctx, bridge.Config{
		Brokers: splitCommaList(*brokers), ClientID: *clientID, Username: *username, Password: *password,
		Group: *group, TopicFilter: *topic, Workers: *workers, QueueSize: *queue, ReceiveMaximum: *receiveMax,
		SessionExpiry: *sessionExpiry, KeepAlive: *keepAlive, AckInterval: *ackInterval, ApplyTimeout: *applyTimeout, DrainTimeout: *drain,
		BusAddr: *busAddr, BusPrefix: *busPrefix, BusBatchDelay: *busBatchDelay, ReadDelay: *readDelay, Admin: *admin,
		Classifier: &telemetry.Classifier{Zones: zones, TTL: *ttl, MaxSkew: *maxSkew},
		Decoder:    telemetry.Decoder{MaxPayloadBytes: *maxPayload},
		Logger:     logger,
		Ready:      func(admin net.Addr) { fmt.Fprintf(stdout, "admin listening on http://%s\n", admin) },
	})
}

// bridgeLogger returns a slog logger writing to stderr.
func bridgeLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	// Every string and error attribute passes through redact: no URL password reaches a log line.
	o := &slog.HandlerOptions{Level: lv, ReplaceAttr: redact.ReplaceAttr}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, o)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", format)
}

// splitCommaList splits a comma-separated flag value, dropping empty items.
func splitCommaList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
