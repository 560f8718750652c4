package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestDispatchUnknownSubcommand(t *testing.T) {
	var out, errOut bytes.Buffer
	err := dispatch(context.Background(), []string{"fly"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), `unknown subcommand "fly"`) {
		t.Fatalf("want unknown subcommand error, got %v", err)
	}
	if !strings.Contains(errOut.String(), "Subcommands:") {
		t.Errorf("usage not printed:\n%s", errOut.String())
	}
}

func TestZonesClassifiesPoints(t *testing.T) {
	var out bytes.Buffer
	err := dispatch(context.Background(), []string{"zones", "-zones", "deploy/zones/tokyo.geojson",
		"35.681236,139.767125", "35.4437,139.6380"}, &out, &out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"1 service areas, 12 no-dispatch zones",
		`35.681236,139.767125: mesh 53394611, service area "Tokyo 23 wards", no-dispatch -, dispatchable true`,
		"35.4437,139.6380: mesh 53391531, service area -, no-dispatch -, dispatchable false",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestZonesRejectsBadPoint(t *testing.T) {
	var out bytes.Buffer
	err := dispatch(context.Background(), []string{"zones", "35.6"}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), `point "35.6": want lat,lon`) {
		t.Fatalf("want a bad point error, got %v", err)
	}
}
