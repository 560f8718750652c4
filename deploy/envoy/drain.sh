#!/bin/bash
# preStop hook of the Envoy container (deploy/envoy/k8s.yaml): drain through the admin API, then
# wait until the riders' connections are gone or the deadline passes; the kubelet sends SIGTERM
# when this returns. Needs bash (the envoyproxy/envoy image has it; /dev/tcp, no curl needed).
#
#   ENVOY_ADMIN_PORT        admin port on 127.0.0.1 (default 9901)
#   DRAIN_DEADLINE_SECONDS  longest wait (default 1050): --drain-time-s + drain_timeout + margin,
#                           inside terminationGracePeriodSeconds (checked by deploy/validate)
#   DRAIN_POLL_SECONDS      how often the connections are counted (default 2)
set -u
port=${ENVOY_ADMIN_PORT:-9901}
deadline=${DRAIN_DEADLINE_SECONDS:-1050}
poll=${DRAIN_POLL_SECONDS:-2}

# admin METHOD PATH: one HTTP/1.1 request to the admin interface; prints the response body.
admin() {
	local resp
	resp=$(
		exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
		printf '%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' "$1" "$2" >&3
		cat <&3
	) || return 1
	case ${resp%%$'\r'*} in
	"HTTP/1.1 200"*) printf '%s\n' "${resp#*$'\r\n\r\n'}" ;;
	*) return 1 ;;
	esac
}

# Into Envoy's own stdout (the pod's log) when possible: a hook's output is not logged.
log() { { echo "envoy-drain: $*" >/proc/1/fd/1; } 2>/dev/null || echo "envoy-drain: $*"; }

# Only the INBOUND listener (riders) drains: the metrics listener keeps answering the kubelet.
# /ready turns 503 at once (the pod leaves the Service and the load balancer); each connection
# gets its GOAWAY or Connection: close over --drain-time-s, then drain_timeout for its streams.
# skip_exit: Envoy does not exit when --drain-time-s ends; SIGTERM after this hook does that.
start=$SECONDS
until admin POST '/drain_listeners?inboundonly&graceful&skip_exit' >/dev/null; do
	if ((SECONDS - start >= 10)); then
		log "admin API not answering; giving up the drain"
		exit 1
	fi
	sleep 0.5
done
log "draining; waiting up to ${deadline}s for the riders' connections to end"
while ((SECONDS - start < deadline)); do
	n=$(admin GET '/stats?filter=downstream_cx_active' | tr -d '\r' | sed -n 's/^http\.riders\.downstream_cx_active: \([0-9]*\)$/\1/p')
	if [[ $n == 0 ]]; then
		log "no rider connection left after $((SECONDS - start))s"
		exit 0
	fi
	sleep "$poll"
done
log "deadline ${deadline}s reached with ${n:-?} rider connections"
exit 0
