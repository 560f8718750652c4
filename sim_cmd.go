package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/meshcast/meshcast/core/config"
	"github.com/meshcast/meshcast/core/sim"
)

// runSim drives simulated taxis (or replays a recording) against an MQTT broker.
func runSim(ctx context.Context, args []string, stdout io.Writer) error {
	fs := config.NewFlagSet("sim", `Simulate taxi terminals: N taxis drive plausible paths inside the service
area of a zones file (sometimes leaving it or stopping in no-dispatch zones),
cycle vacant → dispatched → occupied → vacant on realistic timers, and each
publishes its fix every interval over MQTT v5 QoS 1 to
taxi/<fleet>/<vehicle>/state, the fleet's reports spread evenly over the
interval. -replay publishes a recording ("topic<TAB>payload" lines, as written
by -record) instead.`)
	brokers := fs.String("broker", "mqtt://127.0.0.1:1883", "MQTT broker URLs, comma-separated")
	clientID := fs.String("client-id", fmt.Sprintf("meshcast-sim-%d", os.Getpid()), "client id prefix (one connection each: <id>-<n>)")
	taxis := fs.Int("taxis", 100, "number of simulated taxis")
	interval := fs.Duration("interval", sim.DefaultInterval, "report interval of one taxi")
	rate := fs.Float64("rate", 0, "total messages per second; when set, the interval is taxis/rate (replay: 0 is as fast as possible)")
	seed := fs.Uint64("seed", 1, "random seed (the same seed gives the same drives)")
	duration := fs.Duration("duration", 0, "stop after this long (0: until interrupted)")
	fleet := fs.String("fleet", sim.DefaultFleet, "fleet names, comma-separated (taxis are assigned round-robin)")
	zonesFile := fs.String("zones", "", zonesUsage)
	timeScale := fs.Float64("time-scale", 1, "divide the status durations (minutes) by this, e.g. 30 for a lively demo")
	hotspots := fs.String("hotspots", "none", "where the taxis gather and drive to: none (spread over the service area) or tokyo (stations and busy districts of the 23 wards, weighted)")
	format := fs.String("format", "json", "payload format: json or proto")
	conns := fs.Int("conns", 1, "MQTT connections")
	inflight := fs.Int("inflight", 64, "concurrent QoS 1 publishes per connection")
	replay := fs.String("replay", "", "publish the messages of this file instead of simulating")
	retime := fs.Bool("retime", true, `with -replay: set each JSON payload's "ts" to the time of publishing`)
	record := fs.String("record", "", "also write every simulated message to this file (JSON only)")
	statsEvery := fs.Duration("stats", 10*time.Second, "print progress this often (0: only at the end)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	logger, err := bridgeLogger(*logLevel, "text")
	if err != nil {
		return err
	}
	f, err := sim.ParseFormat(*format)
	if err != nil {
		return err
	}
	spots, err := sim.ParseHotspots(*hotspots)
	if err != nil {
		return err
	}
	if *rate < 0 {
		return fmt.Errorf("-rate %v must not be negative", *rate)
	}
	if *replay == "" && *taxis < 1 {
		return fmt.Errorf("-taxis %d must be at least 1", *taxis)
	}
	if *record != "" && f != sim.JSON {
		return errors.New("-record writes text lines: use it with -format json")
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	pub, err := sim.Dial(ctx, sim.PublisherConfig{Brokers: splitCommaList(*brokers), ClientID: *clientID,
		Conns: *conns, InFlight: *inflight, QoS: 1, Logger: logger})
	if err != nil {
		return err
	}
	start := time.Now()
	stopStats := simProgress(stdout, pub, *statsEvery)
	if *replay != "" {
		err = simReplay(ctx, *replay, *rate, *retime, pub)
	} else {
		err = simDrive(ctx, pub, sim.Config{Taxis: *taxis, Fleets: splitCommaList(*fleet), Seed: *seed,
			Interval: *interval, TimeScale: *timeScale, Format: f, Hotspots: spots}, *rate, *zonesFile, *record)
	}
	stopStats()
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cerr := pub.Close(cctx)
	n, failed := pub.Stats()
	el := time.Since(start)
	fmt.Fprintf(stdout, "sim: published %d messages in %v (%.0f/s), %d given up\n", n, el.Round(time.Millisecond), float64(n)/el.Seconds(), failed)
	return errors.Join(err, cerr)
}

func simDrive(ctx context.Context, pub *sim.Publisher, cfg sim.Config, rate float64, zonesFile, record string) error {
	zones, err := loadZones(zonesFile)
	if err != nil {
		return err
	}
	cfg.Zones = zones
	if rate > 0 {
		cfg.Interval = time.Duration(float64(cfg.Taxis) / rate * float64(time.Second))
	}
	s, err := sim.New(cfg, time.Now())
	if err != nil {
		return err
	}
	ct := s.ContentType()
	emit := func(topic string, payload []byte) { pub.Publish(topic, ct, payload) }
	if record != "" {
		file, err := os.Create(record)
		if err != nil {
			return err
		}
		w := bufio.NewWriter(file)
		defer func() { w.Flush(); file.Close() }()
		emit = func(topic string, payload []byte) {
			w.WriteString(topic)
			w.WriteByte('\t')
			w.Write(payload)
			w.WriteByte('\n')
			pub.Publish(topic, ct, payload)
		}
	}
	sim.Drive(ctx, s, emit)
	return nil
}

// simReplay publishes the "topic<TAB>payload" lines of file, at rate messages per second
// (0: as fast as possible), with "ts" set to the publishing time when retime is set.
func simReplay(ctx context.Context, file string, rate float64, retime bool, pub *sim.Publisher) error {
	fd, err := os.Open(file)
	if err != nil {
		return err
	}
	defer fd.Close()
	sc := bufio.NewScanner(fd)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	start := time.Now()
	for n, line := 0, 1; sc.Scan(); line++ {
		topic, payload, ok := bytes.Cut(sc.Bytes(), []byte{'\t'})
		if !ok || len(topic) == 0 {
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			return fmt.Errorf("%s:%d: want topic<TAB>payload", file, line)
		}
		if rate > 0 {
			due := start.Add(time.Duration(float64(n) / rate * float64(time.Second)))
			if d := time.Until(due); d > time.Millisecond {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil
				case <-t.C:
				}
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if retime {
			payload = retimeJSON(payload, time.Now().UnixMilli())
		}
		pub.Publish(string(topic), "", payload)
		n++
	}
	return sc.Err()
}

// retimeJSON replaces the number after the first `"ts":` with ts (payloads written by the
// simulator; anything else is returned unchanged).
func retimeJSON(p []byte, ts int64) []byte {
	i := bytes.Index(p, []byte(`"ts":`))
	if i < 0 {
		return p
	}
	j := i + len(`"ts":`)
	for j < len(p) && p[j] == ' ' {
		j++
	}
	k := j
	for k < len(p) && (p[k] >= '0' && p[k] <= '9' || p[k] == '-' || p[k] == '.' || p[k] == 'e' || p[k] == 'E' || p[k] == '+') {
		k++
	}
	if k == j {
		return p
	}
	out := make([]byte, 0, len(p)+8)
	out = append(out, p[:j]...)
	out = strconv.AppendInt(out, ts, 10)
	return append(out, p[k:]...)
}

// simProgress prints a progress line every interval until stop is called.
func simProgress(w io.Writer, pub *sim.Publisher, every time.Duration) (stop func()) {
	if every <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		last, lastT := int64(0), time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				n, _ := pub.Stats()
				fmt.Fprintf(w, "sim: %d published, %.0f/s\n", n, float64(n-last)/now.Sub(lastT).Seconds())
				last, lastT = n, now
			}
		}
	}()
	return func() { close(done); <-finished }
}
