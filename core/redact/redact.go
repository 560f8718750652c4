// Package redact hides credentials in text meant for logs and error messages: the password in
// the user information of URLs (redis://:password@host:6379, mqtt://user:password@broker:1883,
// redis+cluster://user:password@host:port,host:port), wherever such a URL appears in the text.
//
// The bus address of the edge and the bridge carries the Redis password in production; every
// place that logs it or wraps it into an error passes it through [URL] first, and the command's
// logger redacts every attribute again ([ReplaceAttr]) as a second line of defence.
package redact

import (
	"fmt"
	"log/slog"
	"strings"
)

// Mask replaces a password.
const Mask = "xxxxx"

// URL returns s with the password of every "scheme://user:password@" in it replaced by
// [Mask]; the user name, hosts and everything else stay. The user information of a URL
// runs from "://" to the last '@' before the next white space or unescaped quote (the rule
// core/bus uses to parse its addresses: a raw '@' or '/' in a password is still hidden; two
// URLs with nothing between them are masked as one, hosts of the first included).
// Text without "://" is returned unchanged and without allocation.
func URL(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	var b strings.Builder
	rest := s
	for {
		i := strings.Index(rest, "://")
		if i < 0 {
			b.WriteString(rest)
			return b.String()
		}
		start := i + 3
		b.WriteString(rest[:start])
		rest = rest[start:]
		end := authorityEnd(rest)
		seg := rest[:end]
		at := strings.LastIndexByte(seg, '@')
		if at < 0 {
			continue
		}
		user, _, hasPwd := strings.Cut(seg[:at], ":")
		if hasPwd {
			b.WriteString(user)
			b.WriteByte(':')
			b.WriteString(Mask)
		} else {
			// No colon: "scheme://secret@host" is how a password-only URL is often
			// mistyped; it is hidden too.
			b.WriteString(Mask)
		}
		rest = rest[at:]
	}
}

// authorityEnd returns the index in s of the first white space, unescaped double quote or
// backquote (the end of a URL inside a log line or an error), or len(s).
func authorityEnd(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\r', '`':
			return i
		case '"':
			if i == 0 || s[i-1] != '\\' {
				return i
			}
		}
	}
	return len(s)
}

// ReplaceAttr is a slog.HandlerOptions.ReplaceAttr that passes every string, error, Stringer,
// []string and any other value whose printed form holds a URL password through [URL].
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); strings.Contains(s, "://") {
			a.Value = slog.StringValue(URL(s))
		}
	case slog.KindAny:
		var s string
		switch v := a.Value.Any().(type) {
		case error:
			s = v.Error()
		case fmt.Stringer:
			s = v.String()
		case []string:
			out := make([]string, len(v))
			for i, e := range v {
				out[i] = URL(e)
			}
			a.Value = slog.AnyValue(out)
			return a
		default:
			s = fmt.Sprint(v)
			if r := URL(s); r != s {
				a.Value = slog.StringValue(r)
			}
			return a
		}
		if strings.Contains(s, "://") {
			a.Value = slog.StringValue(URL(s))
		}
	}
	return a
}
