package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/meshcast/meshcast/bridge"
	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/config"
	"github.com/meshcast/meshcast/core/mesh"
	"github.com/meshcast/meshcast/core/ops"
	"github.com/meshcast/meshcast/core/telemetry"
)

func init() {
	register("bridge", "MQTT telemetry → classification → Redis Cluster", runBridge)
}

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
	drain := fs.Duration("drain-timeout", bridge.DefaultDrainTimeout, "on shutdown, how long to finish queued messages before handing the rest back")
	busAddr := fs.String("bus", "redis://127.0.0.1:6379", "bus address: redis://host:port, redis+cluster://host:port,host:port, memory://")
	busPrefix := fs.String("bus-prefix", "mc", "prefix of every Redis key and channel")
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
	if *maxPayload < 1 || *maxPayload > 1<<20 {
		return fmt.Errorf("-max-payload %d out of range [1, 1048576]", *maxPayload)
	}
	if *ttl <= 0 || *maxSkew < 0 {
		return errors.New("-ttl must be positive and -max-skew not negative")
	}
	zones, err := loadZones(*zonesFile)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	b, err := bus.Open(octx, *busAddr, bus.Options{TTL: *ttl, KeyPrefix: *busPrefix, Logger: logger, Registerer: reg})
	cancel()
	if err != nil {
		return fmt.Errorf("bus %s: %w", *busAddr, err)
	}
	defer b.Close()

	br, err := bridge.New(bridge.Config{
		Brokers: splitCommaList(*brokers), ClientID: *clientID, Username: *username, Password: *password,
		Group: *group, TopicFilter: *topic, Workers: *workers, QueueSize: *queue, ReceiveMaximum: *receiveMax,
		SessionExpiry: *sessionExpiry, KeepAlive: *keepAlive, AckInterval: *ackInterval, DrainTimeout: *drain,
		Bus:        b,
		Classifier: &telemetry.Classifier{Zones: zones, TTL: *ttl, MaxSkew: *maxSkew},
		Decoder:    telemetry.Decoder{MaxPayloadBytes: *maxPayload},
		Logger:     logger, Registerer: reg,
	})
	if err != nil {
		return err
	}
	if *admin != "" {
		// Ready: connected and subscribed to the broker, not stopping, and the bus answers.
		probeMesh, _ := mesh.Third(35.681236, 139.767125)
		busReady := ops.Cached(time.Second, 500*time.Millisecond, func(ctx context.Context) error {
			_, err := b.Snapshot(ctx, probeMesh)
			return err
		})
		stop, err := serveBridgeAdmin(*admin, reg, br.Ready, busReady, logger, stdout)
		if err != nil {
			return err
		}
		defer stop()
	}
	return br.Run(ctx)
}

// serveBridgeAdmin serves the admin endpoints (core/ops) on addr and prints the address it
// listens on (useful with port 0). stop shuts it down.
func serveBridgeAdmin(addr string, g prometheus.Gatherer, ready func() bool, busReady func() error, logger *slog.Logger, stdout io.Writer) (stop func(), err error) {
	a, err := ops.ServeAdmin(addr, g, func() error {
		if !ready() {
			return errors.New("broker not connected and subscribed, or shutting down")
		}
		if err := busReady(); err != nil {
			return fmt.Errorf("bus: %w", err)
		}
		return nil
	}, logger)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "admin listening on http://%s\n", a.Addr())
	return a.Close, nil
}

// bridgeLogger returns a slog logger writing to stderr.
func bridgeLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	o := &slog.HandlerOptions{Level: lv}
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
