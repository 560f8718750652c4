package main

import (
	"context"
	"errors"
	"io"
)

// runDemo is filled in as the parts land (issue 7 makes it the full demo).
func runDemo(ctx context.Context, args []string, stdout io.Writer) error {
	return errors.New("demo is not built yet")
}
