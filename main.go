// Command meshcast pushes the live positions of dispatchable taxis to the
// riders near them. One binary, one subcommand per role:
//
//	meshcast demo     everything in one process on embedded defaults
//	meshcast edge     serve riders (gRPC, gRPC-Web, WebSocket, SSE on one port)
//	meshcast bridge   MQTT telemetry → classification → Redis Cluster
//	meshcast sim      simulated taxi terminals publishing over MQTT
//	meshcast bench    end-to-end load and latency measurement
//	meshcast zones    validate a zones file and classify points against it
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshcast/meshcast/core/redact"
)

// command is one subcommand: run gets the arguments after its name and stops
// when ctx is cancelled (SIGINT/SIGTERM).
type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout io.Writer) error
}

// commands are the subcommands, in help order; each lives in its own root file (demo.go,
// edge_cmd.go, bridge_cmd.go, sim_cmd.go, bench_cmd.go, zones.go).
var commands = []command{
	{"demo", "everything in one process: embedded MQTT broker, bridge, bus, edge, simulator and the live map", runDemo},
	{"edge", "serve the rider stream: gRPC, gRPC-Web, WebSocket, SSE on one port", runEdge},
	{"bridge", "MQTT telemetry → classification → Redis Cluster", runBridge},
	{"sim", "simulated taxis publishing telemetry over MQTT", runSim},
	{"bench", "end-to-end load and latency against a running deployment", runBench},
	{"zones", "validate a GeoJSON zones file and classify points against it", runZones},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	default:
		fmt.Fprintln(os.Stderr, "meshcast:", redact.URL(err.Error())) // no password in a URL reaches the terminal
		os.Exit(2)
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return errors.New("no subcommand given")
		}
		return nil
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout)
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown subcommand %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "meshcast pushes live positions of dispatchable taxis to nearby riders.\n\nUsage: meshcast <subcommand> [flags]   (meshcast <subcommand> -help for its flags)\n\nSubcommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
}
