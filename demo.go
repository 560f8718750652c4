package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/meshcast/meshcast/bridge"
	"github.com/meshcast/meshcast/bridge/broker"
	"github.com/meshcast/meshcast/core/bus"
	"github.com/meshcast/meshcast/core/config"
	"github.com/meshcast/meshcast/core/redact"
	"github.com/meshcast/meshcast/core/sim"
	"github.com/meshcast/meshcast/core/telemetry"
	"github.com/meshcast/meshcast/edge"
	"github.com/meshcast/meshcast/web"
)

// runDemo runs the whole system in one process: simulated taxis publish over real MQTT to the
// embedded broker, the bridge classifies and applies them to the bus, and the edge serves the
// rider API and the map page. Flags swap in a real broker and Redis Cluster.
func runDemo(ctx context.Context, args []string, stdout io.Writer) error {
	fs := config.NewFlagSet("demo", `Run meshcast in one process on embedded defaults: an MQTT broker (reachable by
real MQTT clients on -mqtt), the bridge, an in-memory bus, the edge (gRPC,
gRPC-Web, WebSocket, SSE and the live map page on -listen) and a simulator of
taxis in Tokyo. -broker and -bus swap in a real broker and Redis (Cluster).
Stops cleanly on Ctrl-C.`)
	listen := fs.String("listen", "127.0.0.1:8080", "rider port: gRPC, gRPC-Web, WebSocket, SSE and the map page")
	mqttAddr := fs.String("mqtt", broker.DefaultAddr, "address of the embedded MQTT broker (loopback)")
	brokerURL := fs.String("broker", "", "use this MQTT broker (mqtt://host:port) instead of the embedded one")
	busAddr := fs.String("bus", "memory://", "bus: memory://, redis://host:port or redis+cluster://host:port,...")
	zonesFile := fs.String("zones", "", zonesUsage)
	taxis := fs.Int("taxis", 1000, "simulated taxis (0: none; publish your own to taxi/<fleet>/<vehicle>/state)")
	timeScale := fs.Float64("time-scale", 20, "divide the simulated status durations by this, for a lively map")
	hotspots := fs.String("hotspots", "tokyo", "where the simulated taxis gather and drive to: tokyo (stations and busy districts of the 23 wards, weighted) or none (spread over the service area)")
	seed := fs.Uint64("seed", 1, "simulator random seed")
	ttl := fs.Duration("ttl", telemetry.DefaultTTL, "how long a fix keeps a vehicle shown")
	admin := fs.String("admin", "127.0.0.1:9102", "edge admin listener: /metrics, /healthz, /readyz, /debug/pprof/ (empty: off)")
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn, error")
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	logger, err := bridgeLogger(*logLevel, "text")
	if err != nil {
		return err
	}
	if *taxis < 0 {
		return fmt.Errorf("-taxis %d must not be negative", *taxis)
	}
	spots, err := sim.ParseHotspots(*hotspots)
	if err != nil {
		return err
	}
	zones, err := loadZones(*zonesFile)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var b bus.Bus
	if *busAddr == "memory://" {
		b = bus.NewMemory(bus.Options{TTL: *ttl, Logger: logger})
	} else {
		octx, ocancel := context.WithTimeout(ctx, 30*time.Second)
		b, err = bus.Open(octx, *busAddr, bus.Options{TTL: *ttl, Logger: logger})
		ocancel()
		if err != nil {
			return fmt.Errorf("bus %s: %w", redact.URL(*busAddr), err)
		}
	}
	defer b.Close()

	mqttURL := *brokerURL
	if mqttURL == "" {
		brk, err := broker.Start(broker.Options{Addr: *mqttAddr})
		if err != nil {
			return fmt.Errorf("embedded broker: %w", err)
		}
		defer brk.Close()
		mqttURL = brk.URL()
	}

	bc := bridge.Config{
		Brokers: []string{mqttURL}, ClientID: "meshcast-demo-bridge", Bus: b,
		Classifier: &telemetry.Classifier{Zones: zones, TTL: *ttl}, Logger: logger,
	}

	pages := http.NewServeMux()
	zonesJSON := zones.GeoJSON()
	pages.HandleFunc("GET /zones.geojson", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/geo+json")
		w.Write(zonesJSON)
	})
	pages.Handle("/", web.Handler())

	ec := edge.Defaults()
	ec.Listen, ec.Admin, ec.TTL, ec.Logger = *listen, *admin, *ttl, logger
	ec.SharedBus, ec.Pages = b, pages
	ec.Bus = *busAddr // what the edge logs: the bus it really uses
	// One process, nobody to reconnect to: Ctrl-C should not wait out a drain window.
	ec.DrainWindow = 0
	edgeUp := make(chan net.Addr, 1)
	ec.Ready = func(l, _ net.Addr) { edgeUp <- l }

	var wg sync.WaitGroup
	var errMu sync.Mutex
	var errs []error
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errMu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				errMu.Unlock()
				cancel(err)
			}
		}()
	}
	run("bridge", func() error { return bridge.Run(ctx, bc) })
	run("edge", func() error { return edge.Run(ctx, ec) })

	var addr net.Addr
	select {
	case addr = <-edgeUp:
	case <-ctx.Done():
		wg.Wait()
		return errors.Join(errs...)
	}

	var pub *sim.Publisher
	if *taxis > 0 {
		pub, err = sim.Dial(ctx, sim.PublisherConfig{Brokers: []string{mqttURL}, ClientID: "meshcast-demo-sim", Logger: logger})
		if err != nil {
			cancel(err)
			wg.Wait()
			return fmt.Errorf("simulator: %w", err)
		}
		s, err := sim.New(sim.Config{Zones: zones, Taxis: *taxis, Seed: *seed, TimeScale: *timeScale, Hotspots: spots}, time.Now())
		if err != nil {
			cancel(err)
			wg.Wait()
			return err
		}
		ct := s.ContentType()
		run("simulator", func() error {
			sim.Drive(ctx, s, func(topic string, payload []byte) { pub.Publish(topic, ct, payload) })
			return nil
		})
	}

	host := addr.String()
	if strings.HasPrefix(host, "127.0.0.1:") || strings.HasPrefix(host, "[::1]:") {
		host = "localhost" + host[strings.LastIndex(host, ":"):]
	}
	fmt.Fprintf(stdout, `meshcast demo is running (Ctrl-C stops it)

  map page     http://%s/
  WebSocket    ws://%s/v1/ws?lat=35.681236&lon=139.767125&radius_m=1000
  SSE          http://%s/v1/sse?lat=35.681236&lon=139.767125&radius_m=1000
  gRPC         %s  (meshcast.v1.RiderService, reflection on; gRPC-Web on the same port)
  MQTT broker  %s  (publish to taxi/<fleet>/<vehicle>/state)
  bus          %s
  admin        %s
  simulator    %d taxis in the service area of %s, hotspots: %s
`, host, host, host, addr, mqttURL, redact.URL(*busAddr), orOff(*admin), *taxis, zonesName(*zonesFile), *hotspots)

	<-ctx.Done()
	logger.Info("demo stopping")
	wg.Wait()
	if pub != nil {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		pub.Close(cctx)
		ccancel()
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "meshcast demo stopped")
	return nil
}

func orOff(s string) string {
	if s == "" {
		return "off"
	}
	return "http://" + s + "/metrics"
}
