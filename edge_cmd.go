package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/meshcast/meshcast/core/config"
	"github.com/meshcast/meshcast/edge"
)

// runEdge serves riders until ctx ends (SIGINT/SIGTERM), then stops gracefully.
func runEdge(ctx context.Context, args []string, stdout io.Writer) error {
	fs := config.NewFlagSet("edge", `Serve the rider stream: subscribe to the meshes riders watch on the bus (one
shared subscription per mesh) and stream the dispatchable taxis around each
rider over native gRPC (HTTP/2), gRPC-Web, WebSocket (/v1/ws) and SSE (/v1/sse),
all on the -listen port. The default bus is the local Redis that "meshcast
bridge" publishes to by default; use redis+cluster://host:port,... for a Redis
Cluster. On SIGTERM every stream ends with its transport's "going away"
(WebSocket 1001, gRPC UNAVAILABLE, end of the SSE stream) at its own moment
within -drain-window (readiness is false and new riders are refused meanwhile),
then the edge stops within -shutdown-timeout. Riders need a bearer JWT checked
against -auth-key-file or -auth-jwks-file; the edge refuses to start without
one unless -insecure-no-auth is given.`)
	c := edge.Defaults()
	c.RegisterFlags(fs)
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	logger, err := bridgeLogger(*logLevel, *logFormat)
	if err != nil {
		return err
	}
	if c.AuthKeyFile == "" && c.AuthJWKSFile == "" && !c.InsecureNoAuth {
		return errors.New("edge: no auth configured: set -auth-key-file or -auth-jwks-file, or -insecure-no-auth to serve riders without auth")
	}
	c.Logger = logger
	c.Ready = func(listen, admin net.Addr) {
		fmt.Fprintf(stdout, "edge listening on %s\n", listen)
		if admin != nil {
			fmt.Fprintf(stdout, "admin listening on http://%s\n", admin)
		}
	}
	return edge.Run(ctx, c)
}
