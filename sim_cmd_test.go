package main

import (
	"strings"
	"testing"
)

func TestRetimeJSON(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`{"lat":1,"ts":1732260000123,"status":"vacant"}`, `{"lat":1,"ts":42,"status":"vacant"}`},
		{`{"ts": 1.7e12}`, `{"ts": 42}`},
		{`{"lat":1}`, `{"lat":1}`},
		{`{"ts":"x"}`, `{"ts":"x"}`},
	} {
		if got := string(retimeJSON([]byte(tt.in), 42)); got != tt.want {
			t.Errorf("retimeJSON(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestSplitCommaList(t *testing.T) {
	got := splitCommaList(" a, ,b,")
	if len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("splitCommaList = %q", got)
	}
}

// FuzzRetimeJSON: replay files are outside input; retiming never panics, leaves payloads
// without a numeric "ts" alone and otherwise changes only that number.
func FuzzRetimeJSON(f *testing.F) {
	for _, s := range []string{`{"lat":1,"ts":1732260000123,"status":"vacant"}`, `{"ts":`, `"ts":-`, `{"ts":1e`, ``, `"ts":"ts":1`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		in := string(p)
		out := string(retimeJSON(p, 7))
		if string(p) != in {
			t.Fatal("retimeJSON modified its input")
		}
		if out != in && !strings.Contains(out, `"ts":`) {
			t.Fatalf("retimeJSON(%q) = %q", in, out)
		}
	})
}
