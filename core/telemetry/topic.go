package telemetry

import "strings"

// MaxIDLen is the longest fleet or vehicle name a topic may carry.
const MaxIDLen = 64

// ParseTopic splits an ingest topic taxi/{fleet}/{vehicle}/state. fleet and
// vehicle must match [A-Za-z0-9_-]{1,64}. The results are substrings of
// topic (no allocation on success).
func ParseTopic(topic string) (fleet, vehicle string, err error) {
	rest, ok := strings.CutPrefix(topic, "taxi/")
	if ok {
		rest, ok = strings.CutSuffix(rest, "/state")
	}
	if !ok {
		return "", "", errorf(ReasonBadTopic, "", "topic %q: want taxi/{fleet}/{vehicle}/state", clip(topic))
	}
	fleet, vehicle, ok = strings.Cut(rest, "/")
	if !ok {
		return "", "", errorf(ReasonBadTopic, "", "topic %q: want taxi/{fleet}/{vehicle}/state", clip(topic))
	}
	if msg := checkName(fleet); msg != "" {
		return "", "", errorf(ReasonBadTopic, "", "topic %q: fleet %s", clip(topic), msg)
	}
	if msg := checkName(vehicle); msg != "" {
		return "", "", errorf(ReasonBadTopic, "", "topic %q: vehicle %s", clip(topic), msg)
	}
	return fleet, vehicle, nil
}

// checkName returns "" when s matches [A-Za-z0-9_-]{1,64}, else what is wrong.
func checkName(s string) string {
	if len(s) == 0 {
		return "is empty"
	}
	if len(s) > MaxIDLen {
		return "is longer than 64 characters"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return "may only hold A-Z, a-z, 0-9, '_' and '-'"
		}
	}
	return ""
}

// clip shortens s for an error message.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
