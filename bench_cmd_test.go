package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestBenchFlagValidation: bad flags are refused before anything connects.
func TestBenchFlagValidation(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-mix", "quic=1"}, "mix entry"},
		{[]string{"-mix", ""}, "empty mix"},
		{[]string{"-radius", "0"}, "-radius"},
		{[]string{"-zones", "/nonexistent.geojson"}, "zones"},
		{[]string{"-procs", "0"}, "-procs"},
		{[]string{"-riders", "-1"}, "-riders"},
		{[]string{"-edge-pid", "x"}, "-edge-pid"},
	}
	for _, tt := range tests {
		err := dispatch(context.Background(), append([]string{"bench"}, tt.args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("bench %v: error %v, want one mentioning %q", tt.args, err, tt.want)
		}
	}
}
