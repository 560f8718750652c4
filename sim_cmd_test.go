package main

import "testing"

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
