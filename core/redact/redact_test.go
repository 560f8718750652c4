package redact

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"redis://127.0.0.1:6379", "redis://127.0.0.1:6379"},
		{"redis://:s3cr3tPW@redis:6379", "redis://:xxxxx@redis:6379"},
		{"redis://default:s3cr3tPW@redis:6379/2", "redis://default:xxxxx@redis:6379/2"},
		{"redis+cluster://:pw@a:1,b:2,c:3", "redis+cluster://:xxxxx@a:1,b:2,c:3"},
		{"redis://s3cr3tPW@redis:6379", "redis://xxxxx@redis:6379"},
		// a raw '@' or '/' in the password (core/bus takes the last '@')
		{"redis://:p@ss/w@rd@h:1", "redis://:xxxxx@h:1"},
		// inside an error, quoted (%q) and not
		{`bus address "redis://:pw@h:x": bad port`, `bus address "redis://:xxxxx@h:x": bad port`},
		{`bus address "redis://:p\"w@h:1": bad`, `bus address "redis://:xxxxx@h:1": bad`},
		{"edge: bus redis://:pw@h:1: dial tcp: refused", "edge: bus redis://:xxxxx@h:1: dial tcp: refused"},
		// two URLs in one line
		{"a redis://:one@h:1 b mqtt://u:two@m:1883", "a redis://:xxxxx@h:1 b mqtt://u:xxxxx@m:1883"},
		// ... and with nothing between them: masked as one (more than needed, nothing leaks)
		{"redis://:one@h:1,mqtt://u:two@m:1", "redis://:xxxxx@m:1"},
		{"redis://u://pw@h", "redis://u:xxxxx@h"},
		// no user information: '@' after the authority's end is left alone
		{"https://example.com/x mail me@example.com", "https://example.com/x mail me@example.com"},
		{"no url here: user:pw@host", "no url here: user:pw@host"},
		{"://", "://"},
		{"", ""},
	} {
		if got := URL(tc.in); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestURLWithoutSchemeDoesNotAllocate(t *testing.T) {
	s := "edge serving on 127.0.0.1:8080"
	if n := testing.AllocsPerRun(100, func() { _ = URL(s) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

// TestReplaceAttr logs a password in the message, a string attribute, an error, a wrapped
// error, a Stringer and a group through both slog handlers and finds it nowhere.
func TestReplaceAttr(t *testing.T) {
	const pw = "s3cr3tPW"
	url := "redis+cluster://:" + pw + "@redis-cluster:6379"
	for name, newHandler := range map[string]func(*bytes.Buffer) slog.Handler{
		"json": func(b *bytes.Buffer) slog.Handler {
			return slog.NewJSONHandler(b, &slog.HandlerOptions{ReplaceAttr: ReplaceAttr})
		},
		"text": func(b *bytes.Buffer) slog.Handler {
			return slog.NewTextHandler(b, &slog.HandlerOptions{ReplaceAttr: ReplaceAttr})
		},
	} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			l := slog.New(newHandler(&b))
			l.Info("opening "+url, "bus", url, "err", errors.New("dial "+url+": refused"),
				"wrapped", fmt.Errorf("edge: %w", errors.New("bus "+url)), "s", stringer(url),
				slog.Group("g", "bus", url), "n", 3, "brokers", []string{"mqtt://u:" + pw + "@m:1883"},
				"m", map[string]string{"bus": url})
			l.With("bus", url).Warn("x")
			out := b.String()
			if strings.Contains(out, pw) {
				t.Fatalf("password in the log:\n%s", out)
			}
			if n := strings.Count(out, "redis-cluster:6379"); n != 8 {
				t.Errorf("%d redacted addresses, want 8:\n%s", n, out)
			}
		})
	}
}

// FuzzURL: whatever text comes before it, a URL's password is replaced and nothing else
// changes; text without "://" is returned unchanged.
func FuzzURL(f *testing.F) {
	f.Add("redis", "", "s3cr3tPW", "h:1", "error: ")
	f.Add("redis+cluster", "user", "p@ss/w\\\"rd", "a:1,b:2", `bus address "`)
	f.Add("mqtt", "u", "x", "m:1883/", "")
	f.Fuzz(func(t *testing.T, scheme, user, pwd, hosts, prefix string) {
		out := URL(prefix)
		if !strings.Contains(prefix, "://") && out != prefix {
			t.Fatalf("URL(%q) = %q, changed text without a URL", prefix, out)
		}
		const stops = " \t\r\n`\""
		if strings.Contains(prefix+scheme, "://") || strings.ContainsAny(scheme, stops) ||
			strings.ContainsAny(user, stops+":@") || strings.ContainsAny(pwd, stops) || strings.Contains(pwd, "://") ||
			strings.ContainsAny(hosts, stops+"@") || strings.Contains(hosts, "://") {
			return // not one URL after the prefix
		}
		in := prefix + scheme + "://" + user + ":" + pwd + "@" + hosts
		want := prefix + scheme + "://" + user + ":" + Mask + "@" + hosts
		if got := URL(in); got != want {
			t.Fatalf("URL(%q) = %q, want %q", in, got, want)
		}
	})
}
