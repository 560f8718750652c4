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
)

// command is one subcommand: run gets the arguments after its name and stops
// when ctx is cancelled (SIGINT/SIGTERM).
type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout io.Writer) error
}

// commands is the registry, in help order. Each role's file (demo.go,
// zones.go, and one per package it runs) replaces its entry from an init
// function with register, so roles can land without touching this file.
var commands = []command{
	{"demo", "run the embedded broker, bridge, in-memory bus and simulator in one process", notYet("demo", 7)},
	{"edge", "serve the rider stream (not built yet: issue 5)", notYet("edge", 5)},
	{"bridge", "MQTT telemetry to Redis Cluster (not built yet: issue 4)", notYet("bridge", 4)},
	{"sim", "simulated taxis over real MQTT (not built yet: issue 4)", notYet("sim", 4)},
	{"bench", "end-to-end load and latency (not built yet: issue 9)", notYet("bench", 9)},
	{"zones", "validate a GeoJSON zones file and classify points against it", nil},
}

// register sets a subcommand's summary and function.
func register(name, summary string, run func(ctx context.Context, args []string, stdout io.Writer) error) {
	for i := range commands {
		if commands[i].name == name {
			commands[i] = command{name, summary, run}
			return
		}
	}
	commands = append(commands, command{name, summary, run})
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	default:
		fmt.Fprintln(os.Stderr, "meshcast:", err)
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

func notYet(name string, issue int) func(context.Context, []string, io.Writer) error {
	return func(context.Context, []string, io.Writer) error {
		return fmt.Errorf("%s is not built yet (see issue %d)", name, issue)
	}
}
