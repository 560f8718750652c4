package bridge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/redact"
	"github.com/meshcast/meshcast/core/telemetry"
)

// Defaults of Config.
const (
	DefaultGroup             = "meshcast"
	DefaultTopicFilter       = "taxi/+/+/state"
	DefaultQueueSize         = 8
	DefaultReceiveMaximum    = 2048
	DefaultSessionExpiry     = time.Hour
	DefaultKeepAlive         = 30 * time.Second
	DefaultConnectTimeout    = 10 * time.Second
	DefaultReconnectMin      = 250 * time.Millisecond
	DefaultReconnectMax      = 15 * time.Second
	DefaultRetryMin          = 50 * time.Millisecond
	DefaultRetryMax          = 5 * time.Second
	DefaultApplyTimeout      = 5 * time.Second
	DefaultAckInterval       = 5 * time.Millisecond
	DefaultDrainTimeout      = 10 * time.Second
	DefaultRejectLogInterval = 10 * time.Second
)

// DefaultWorkers is the default number of workers: enough concurrent bus.Apply calls to keep
// the Redis pipelines full. Each Apply waits for two round trips, so by Little's law 512
// workers at ~2 ms per Apply carry ~256,000 messages/s; more concurrent Applies also mean
// larger batches per Redis script call (the bus batches by hash-tag bucket), which cut the CPU
// per message of both the bridge and Redis (BENCHMARKS.md: 512 workers with Receive Maximum
// 2048 drained a backlog ~8% faster than 256 with 1024). A worker is a goroutine and a small
// queue.
func DefaultWorkers() int { return max(512, 128*runtime.GOMAXPROCS(0)) }

// DefaultClientID returns "meshcast-bridge-<hostname>": stable across restarts of one host or
// Kubernetes StatefulSet pod, which is what a persistent session needs.
func DefaultClientID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "local"
	}
	return "meshcast-bridge-" + h
}

// Config configures a Bridge. Bus is required; every other field has a default.
type Config struct {
	// Brokers are the MQTT server URLs (mqtt://host:port or tcp://; TLS: mqtts://, tls://,
	// ssl://), tried in turn. Default mqtt://127.0.0.1:1883.
	Brokers []string
	// TLS configures TLS connections (nil: the system roots, the URL's host name).
	TLS *tls.Config
	// ClientID must be stable across restarts (the broker keeps the session, and the
	// unacknowledged messages, under it) and unique per replica. Default DefaultClientID().
	ClientID string
	// Username and Password are sent in CONNECT when set.
	Username string
	Password string
	// Group is the shared subscription group: replicas with the same group split the messages.
	// Default DefaultGroup. NoShare subscribes to TopicFilter without $share instead (every
	// replica then gets every message).
	Group   string
	NoShare bool
	// TopicFilter is what is subscribed to (inside $share/<group>/). Default taxi/+/+/state.
	TopicFilter string
	// Workers is the number of concurrent workers; QueueSize the capacity of each worker's queue.
	Workers   int
	QueueSize int
	// ReceiveMaximum is the MQTT v5 Receive Maximum the bridge announces: how many QoS 1
	// messages the broker may have in flight (delivered, not yet acknowledged) to it. mosquitto
	// 2.0 honours it for v5 clients (max_inflight_messages applies to v3 clients only). It
	// bounds paho's acknowledgement bookkeeping, whose cost grows with it (linear scans per
	// message); backpressure does not depend on it (a full queue stops reading the
	// connection). Default DefaultReceiveMaximum.
	ReceiveMaximum int
	// SessionExpiry is how long the broker keeps the session (subscription and unacknowledged
	// messages) while the bridge is away. Default 1h; at least 1s.
	SessionExpiry time.Duration
	// KeepAlive is the MQTT keep-alive; ConnectTimeout bounds one connection attempt.
	KeepAlive      time.Duration
	ConnectTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the exponential backoff between connection attempts.
	ReconnectMin, ReconnectMax time.Duration
	// RetryMin and RetryMax bound the exponential backoff between attempts of a failing bus.Apply.
	RetryMin, RetryMax time.Duration
	// ReadDelay coalesces the reads of the MQTT connection: while messages keep coming, the
	// connection is read at most once per ReadDelay, so one system call and one wake-up bring the
	// messages of that time together (and they reach the bus together, where their script calls
	// share writes). It adds up to ReadDelay (plus the timer's lateness, ~1ms on an idle
	// process) before a message is received. With BusBatchDelay too, the bus's rounds open early
	// (bus.Options.BatchEarly): the fixes of one read go to Redis in one round as soon as they
	// have all reached the bus, and their mesh writes in the next. 0 (default): read as soon as
	// data is there. At most 5ms.
	ReadDelay time.Duration
	// ApplyTimeout bounds one bus.Apply attempt: a bus that does not answer in time (Redis
	// killed: its client retries the connection for as long as the call's context allows) fails
	// the attempt, which is counted (meshcast_bridge_bus_errors_total), logged and retried with
	// backoff like any bus error. Default DefaultApplyTimeout.
	ApplyTimeout time.Duration
	// AckInterval is how often paho sends the acknowledgements that are ready (in receive order).
	AckInterval time.Duration
	// DrainTimeout bounds the shutdown: how long the workers may take to finish queued messages.
	DrainTimeout time.Duration
	// RejectLogInterval: at most one log line per rejection reason per interval.
	RejectLogInterval time.Duration

	// Bus receives the updates. New requires it; Run opens BusAddr when it is nil (and then
	// closes it when it stops).
	Bus bus.Bus
	// BusAddr is the bus address Run opens when Bus is nil: redis://host:port,
	// redis+cluster://host:port,..., memory:// (see bus.Open). BusPrefix is the prefix of its
	// keys and channels (default "mc"); the bus TTL is the Classifier's.
	BusAddr, BusPrefix string
	// BusBatchDelay, for the bus Run opens (Redis), is bus.Options.BatchDelay: 0 (default) sends
	// an idle bucket's call at once; up to 2ms waits that long to send the calls of all idle
	// buckets in one pipeline, less CPU under light load for a few ms more latency.
	BusBatchDelay time.Duration
	// Admin, for Run: the admin listener's address (/metrics, /healthz, /readyz,
	// /debug/pprof/; keep it private). Empty: off.
	Admin string
	// Ready, for Run, when set, is called once the admin listener accepts connections, with its
	// address: for logs and tests that listen on port 0.
	Ready func(admin net.Addr)
	// Classifier classifies fixes. Default: no zones (nothing dispatchable), default TTL and skew.
	Classifier *telemetry.Classifier
	// Decoder decodes payloads (size limit). The zero value applies the defaults.
	Decoder telemetry.Decoder
	// Now is the clock used for classification. Default time.Now.
	Now func() time.Time
	// Logger, default slog.Default().
	Logger *slog.Logger
	// Registerer gets the bridge metrics. Nil: the metrics are kept but not registered.
	Registerer prometheus.Registerer
}

// withDefaults validates c and fills in the defaults.
func (c Config) withDefaults() (Config, []*url.URL, error) {
	var errs []error
	if c.Bus == nil && c.BusAddr == "" {
		errs = append(errs, errors.New("bridge: no bus (Config.Bus, or for Run Config.BusAddr)"))
	}
	if c.BusBatchDelay < 0 || c.BusBatchDelay > 2*time.Millisecond {
		errs = append(errs, fmt.Errorf("bridge: bus batch delay %v outside 0-2ms", c.BusBatchDelay))
	}
	if c.ReadDelay < 0 || c.ReadDelay > 5*time.Millisecond {
		errs = append(errs, fmt.Errorf("bridge: read delay %v outside 0-5ms", c.ReadDelay))
	}
	if c.BusPrefix == "" {
		c.BusPrefix = "mc"
	}
	if len(c.Brokers) == 0 {
		c.Brokers = []string{"mqtt://127.0.0.1:1883"}
	}
	var urls []*url.URL
	for _, b := range c.Brokers {
		u, err := url.Parse(strings.TrimSpace(b))
		switch {
		case err != nil || u.Host == "":
			errs = append(errs, fmt.Errorf("bridge: broker URL %q: want scheme://host:port, e.g. mqtt://127.0.0.1:1883", redact.URL(b)))
		default:
			switch u.Scheme {
			case "mqtt", "tcp", "mqtts", "ssl", "tls":
				urls = append(urls, u)
			default:
				errs = append(errs, fmt.Errorf("bridge: broker URL %q: scheme %q is not one of mqtt, tcp, mqtts, ssl, tls", redact.URL(b), u.Scheme))
			}
		}
	}
	if c.ClientID == "" {
		c.ClientID = DefaultClientID()
	}
	if len(c.ClientID) > 65535 {
		errs = append(errs, errors.New("bridge: client id longer than 65535 bytes"))
	}
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if strings.ContainsAny(c.Group, "/+#") {
		errs = append(errs, fmt.Errorf("bridge: share group %q must not contain '/', '+' or '#'", c.Group))
	}
	if c.TopicFilter == "" {
		c.TopicFilter = DefaultTopicFilter
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers()
	}
	if c.Workers < 1 || c.Workers > 65536 {
		errs = append(errs, fmt.Errorf("bridge: workers %d out of range [1, 65536]", c.Workers))
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.QueueSize < 1 || c.QueueSize > 1<<20 {
		errs = append(errs, fmt.Errorf("bridge: queue size %d out of range [1, 1048576]", c.QueueSize))
	}
	if c.ReceiveMaximum == 0 {
		c.ReceiveMaximum = DefaultReceiveMaximum
	}
	if c.ReceiveMaximum < 1 || c.ReceiveMaximum > 65535 {
		errs = append(errs, fmt.Errorf("bridge: receive maximum %d out of range [1, 65535]", c.ReceiveMaximum))
	}
	dur := func(name string, v *time.Duration, def, lo, hi time.Duration) {
		if *v == 0 {
			*v = def
		}
		if *v < lo || *v > hi {
			errs = append(errs, fmt.Errorf("bridge: %s %v out of range [%v, %v]", name, *v, lo, hi))
		}
	}
	dur("session expiry", &c.SessionExpiry, DefaultSessionExpiry, time.Second, 0xFFFFFFFE*time.Second)
	dur("keep-alive", &c.KeepAlive, DefaultKeepAlive, time.Second, 65535*time.Second)
	dur("connect timeout", &c.ConnectTimeout, DefaultConnectTimeout, time.Millisecond, time.Hour)
	dur("reconnect min", &c.ReconnectMin, DefaultReconnectMin, time.Millisecond, time.Hour)
	dur("reconnect max", &c.ReconnectMax, max(DefaultReconnectMax, 2*c.ReconnectMin), 2*c.ReconnectMin, time.Hour)
	dur("retry min", &c.RetryMin, DefaultRetryMin, time.Millisecond, time.Hour)
	dur("retry max", &c.RetryMax, max(DefaultRetryMax, c.RetryMin), c.RetryMin, time.Hour)
	dur("apply timeout", &c.ApplyTimeout, DefaultApplyTimeout, time.Millisecond, time.Hour)
	dur("ack interval", &c.AckInterval, DefaultAckInterval, 100*time.Microsecond, 10*time.Second)
	dur("drain timeout", &c.DrainTimeout, DefaultDrainTimeout, time.Millisecond, time.Hour)
	dur("reject log interval", &c.RejectLogInterval, DefaultRejectLogInterval, time.Millisecond, 24*time.Hour)
	if c.Classifier == nil {
		c.Classifier = &telemetry.Classifier{}
	}
	if c.Classifier.TTL < 0 || c.Classifier.MaxSkew < 0 {
		errs = append(errs, fmt.Errorf("bridge: ttl %v and max skew %v must not be negative", c.Classifier.TTL, c.Classifier.MaxSkew))
	}
	if m := c.Decoder.MaxPayloadBytes; m < 0 || m > 1<<20 {
		errs = append(errs, fmt.Errorf("bridge: max payload %d out of range [1, 1048576]", m))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, urls, errors.Join(errs...)
}

// subscription returns the topic filter the bridge subscribes to.
func (c *Config) subscription() string {
	if c.NoShare {
		return c.TopicFilter
	}
	return "$share/" + c.Group + "/" + c.TopicFilter
}
