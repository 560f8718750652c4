package validate

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// Bundle is everything one overlay deploys, rendered and decoded: the Kubernetes objects, the
// Envoy bootstrap and SDS file from the rendered envoy-config ConfigMap, and the Redis chart
// values and EMQX configuration installed beside it.
type Bundle struct {
	Overlay  string // "dev", "prod"
	Objects  []Object
	Envoy    *bootstrapv3.Bootstrap
	SDS      []proto.Message
	DrainSh  string // the Envoy preStop script (envoy-config drain.sh)
	Redis    RedisValues
	EMQXConf string // EMQX HOCON (spec.config.data)
}

// RedisValues is the part of deploy/redis/values.yaml the rules read.
type RedisValues struct {
	Redis struct {
		Configmap string `json:"configmap"`
		Resources struct {
			Requests corev1.ResourceList `json:"requests"`
			Limits   corev1.ResourceList `json:"limits"`
		} `json:"resources"`
	} `json:"redis"`
	NetworkPolicy struct {
		Enabled       bool `json:"enabled"`
		AllowExternal bool `json:"allowExternal"`
	} `json:"networkPolicy"`
}

// Load renders deployDir/k8s/overlays/<overlay> and reads the files deployed beside it.
func Load(deployDir, overlay string) (*Bundle, error) {
	objs, err := Render(filepath.Join(deployDir, "k8s", "overlays", overlay))
	if err != nil {
		return nil, err
	}
	b := &Bundle{Overlay: overlay, Objects: objs}
	cm := b.configMap("envoy-config")
	if cm == nil {
		return nil, fmt.Errorf("%s: no envoy-config ConfigMap", overlay)
	}
	if b.Envoy, err = EnvoyBytes("envoy-config/envoy.yaml", []byte(cm.Data["envoy.yaml"])); err != nil {
		return nil, err
	}
	if s, ok := cm.Data["sds-tls.yaml"]; ok {
		if b.SDS, err = SDS("envoy-config/sds-tls.yaml", []byte(s)); err != nil {
			return nil, err
		}
	}
	b.DrainSh = cm.Data["drain.sh"]
	y, err := os.ReadFile(filepath.Join(deployDir, "redis", "values.yaml"))
	if err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal(y, &b.Redis); err != nil {
		return nil, fmt.Errorf("redis values: %w", err)
	}
	var emqx struct {
		Spec struct {
			Config struct {
				Data string `json:"data"`
			} `json:"config"`
		} `json:"spec"`
	}
	y, err = os.ReadFile(filepath.Join(deployDir, "mqtt", "emqx.yaml"))
	if err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal(y, &emqx); err != nil {
		return nil, fmt.Errorf("emqx: %w", err)
	}
	b.EMQXConf = emqx.Spec.Config.Data
	return b, nil
}

// Rule is one deployment promise, checked over a Bundle; Check returns what breaks it.
type Rule struct {
	ID, Doc string
	Check   func(b *Bundle) []string
}

// Check runs every rule and returns its problems, each prefixed with the rule's id.
func Check(b *Bundle) []string {
	var out []string
	for _, r := range Rules {
		for _, p := range r.Check(b) {
			out = append(out, r.ID+": "+p)
		}
	}
	return out
}

// Figures the rules compare against.
const (
	// capacityExampleEdges is deploy/CAPACITY.md's upper figure for 200,000 riders.
	capacityExampleEdges = 65
	// graceMargin is the least room a grace period leaves after the worst-case stop.
	graceMargin = 10 * time.Second
	// bridgeDefaultReceiveMaximum is the bridge's -receive-maximum default.
	bridgeDefaultReceiveMaximum = 2048
	monitoringNamespace         = "monitoring"
)

// Rules are the checks `task deploy:validate` runs on every overlay (TestRules) and that
// TestRulesCatchBrokenVariants breaks one at a time.
var Rules = []Rule{
	{"envoy-drain-prestop", "Envoy's preStop drains through the admin API (POST /drain_listeners?inboundonly&graceful&skip_exit) and waits for the riders' connections; only the riders listener is INBOUND", ruleEnvoyDrain},
	{"envoy-grace", "Envoy's grace period covers the drain deadline, which covers --drain-time-s + drain_timeout, which covers every stream's own age at the edge (max age + 10% + write timeout)", ruleEnvoyGrace},
	{"envoy-liveness", "Envoy's liveness probe is not on the riders port (the drain closes that listener)", ruleEnvoyLiveness},
	{"edge-grace", "a meshcast pod's grace period covers preStop + drain window + shutdown timeout + write timeout (edge) or preStop + drain timeout (bridge), with a margin", ruleMeshcastGrace},
	{"rollout", "Deployments roll one pod at a time (maxSurge 1, maxUnavailable 0) and wait minReadySeconds >= one pod's drain wave before the next", ruleRollout},
	{"hpa-scale-down", "every HPA scales in one pod per period >= the target's grace period (one drain at a time)", ruleHPAScaleDown},
	{"hpa-no-replicas", "objects an HPA scales set no spec.replicas", ruleNoReplicas},
	{"hpa-connections", "the edge and Envoy HPAs also scale on open connections, below the per-pod cap", ruleHPAConnections},
	{"capacity-max-replicas", "prod: the edge HPA may reach deploy/CAPACITY.md's example (200,000 riders)", ruleCapacity},
	{"gomemlimit", "every meshcast container sets GOMEMLIMIT between 50% and 90% of its memory limit", ruleGOMEMLIMIT},
	{"memory-request-limit", "every container's memory request equals its limit", ruleMemoryRequestLimit},
	{"envoy-concurrency", "Envoy runs --concurrency no larger than its CPU limit", ruleEnvoyConcurrency},
	{"envoy-overload", "Envoy's overload manager watches memory and downstream connections and stops accepting before the limit", ruleEnvoyOverload},
	{"envoy-timeouts", "request_headers_timeout set, stream idle timeouts above the heartbeat, max_connection_duration set", ruleEnvoyTimeouts},
	{"envoy-upstream-idle", "edge_http's idle timeout is below the edge's HTTP/1.1 idle timeout", ruleEnvoyUpstreamIdle},
	{"envoy-access-log-no-query", "no access log field carries the query string (riders' ?access_token=)", ruleAccessLogNoQuery},
	{"envoy-host-removal", "the edge clusters drop a host that left DNS at once (ignore_health_on_host_removal)", ruleHostRemoval},
	{"envoy-retry-503", "WebSocket, SSE and gRPC-Web routes retry a 503 refusal on another edge", ruleRetry503},
	{"tls", "riders reach Envoy only over TLS (ALPN h2 and http/1.1) with the cert-manager Certificate's Secret", ruleTLS},
	{"networkpolicy-admin", "admin and metrics ports are reachable only from the monitoring namespace", ruleNetpolAdmin},
	{"networkpolicy-riders", "the edge's rider port is reachable only from Envoy (whose X-Forwarded-For the edge trusts)", ruleNetpolRiders},
	{"redis-client-label", "edge and bridge pods carry the label the Redis chart's NetworkPolicy admits", ruleRedisLabel},
	{"session-expiry", "the bridges' broker session expires soon after a scale-in (<= 3 x TTL), in the bridge and in EMQX", ruleSessionExpiry},
	{"emqx-inflight", "EMQX's max_inflight is at least the bridge's Receive Maximum", ruleEMQXInflight},
	{"zone-spread", "every workload spreads over zones", ruleZoneSpread},
	{"prod-no-reflection", "prod: the edges do not serve gRPC reflection to the public", ruleNoReflection},
	{"redis-memory", "Redis: maxmemory + the edges' pub/sub output buffers fit the memory limit, request = limit", ruleRedisMemory},
}

// --- lookups ---

func (b *Bundle) configMap(name string) *corev1.ConfigMap {
	for _, o := range b.Objects {
		// kustomize appends a content hash to generated names: name-<10 characters>.
		if cm, ok := o.Typed.(*corev1.ConfigMap); ok && (cm.Name == name ||
			(strings.HasPrefix(cm.Name, name+"-") && len(cm.Name) == len(name)+11 && !strings.Contains(cm.Name[len(name)+1:], "-"))) {
			return cm
		}
	}
	return nil
}

func (b *Bundle) deployment(name string) *appsv1.Deployment {
	for _, o := range b.Objects {
		if d, ok := o.Typed.(*appsv1.Deployment); ok && d.Name == name {
			return d
		}
	}
	return nil
}

func (b *Bundle) hpa(target string) *autoscalingv2.HorizontalPodAutoscaler {
	for _, o := range b.Objects {
		if h, ok := o.Typed.(*autoscalingv2.HorizontalPodAutoscaler); ok && h.Spec.ScaleTargetRef.Name == target {
			return h
		}
	}
	return nil
}

// pod is a workload's pod template with its kind and name.
type pod struct {
	kind, name string
	tmpl       *corev1.PodTemplateSpec
}

func (b *Bundle) pods() []pod {
	var out []pod
	for _, o := range b.Objects {
		switch w := o.Typed.(type) {
		case *appsv1.Deployment:
			out = append(out, pod{"Deployment", w.Name, &w.Spec.Template})
		case *appsv1.StatefulSet:
			out = append(out, pod{"StatefulSet", w.Name, &w.Spec.Template})
		}
	}
	return out
}

func (b *Bundle) pod(name string) *pod {
	for _, p := range b.pods() {
		if p.name == name {
			return &p
		}
	}
	return nil
}

func (p *pod) grace() time.Duration {
	if p.tmpl.Spec.TerminationGracePeriodSeconds == nil {
		return 30 * time.Second // the Kubernetes default
	}
	return time.Duration(*p.tmpl.Spec.TerminationGracePeriodSeconds) * time.Second
}

// meshcast reports whether c runs meshcast (and which subcommand).
func meshcastCmd(c corev1.Container) string {
	if c.Name == "envoy" || len(c.Args) == 0 {
		return ""
	}
	return c.Args[0]
}

// containerEnv resolves c's environment: its envFrom ConfigMaps, then env (values; Secret and
// field references resolve to "<from NAME>").
func (b *Bundle) containerEnv(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil {
			if cm := b.configMap(ef.ConfigMapRef.Name); cm != nil {
				maps.Copy(out, cm.Data)
			}
		}
	}
	for _, e := range c.Env {
		out[e.Name] = e.Value
		if e.ValueFrom != nil {
			out[e.Name] = "<from " + e.Name + ">"
		}
	}
	return out
}

// dur reads a duration variable, def when unset; a bad value is reported through bad.
func dur(env map[string]string, key string, def time.Duration, bad *[]string) time.Duration {
	v, ok := env[key]
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		*bad = append(*bad, fmt.Sprintf("%s=%q: %v", key, v, err))
	}
	return d
}

// edgeEnv is the edge container's resolved environment.
func (b *Bundle) edgeEnv() map[string]string {
	if p := b.pod("meshcast-edge"); p != nil && len(p.tmpl.Spec.Containers) > 0 {
		return b.containerEnv(p.tmpl.Spec.Containers[0])
	}
	return map[string]string{}
}

// streamLife is the longest an edge stream lives before its own max age ends it: max age + 10%
// jitter + the write timeout of its last write (transport.MinConnAgeGrace).
func (b *Bundle) streamLife(bad *[]string) time.Duration {
	e := b.edgeEnv()
	age := dur(e, "MESHCAST_MAX_CONN_AGE", 15*time.Minute, bad)
	return age + age/10 + dur(e, "MESHCAST_WRITE_TIMEOUT", 10*time.Second, bad)
}

func preStopSleep(c corev1.Container) time.Duration {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		return 0
	}
	return time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
}

// hcm returns the HTTP connection manager of the named listener (nil if none).
func (b *Bundle) hcm(listener string) (*listenerv3.Listener, *hcmv3.HttpConnectionManager) {
	for _, l := range b.Envoy.GetStaticResources().GetListeners() {
		if l.GetName() != listener {
			continue
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var h hcmv3.HttpConnectionManager
				if f.GetTypedConfig().UnmarshalTo(&h) == nil {
					return l, &h
				}
			}
		}
		return l, nil
	}
	return nil, nil
}

// setHCM writes h back into the named listener (for the broken variants).
func (b *Bundle) setHCM(listener string, h *hcmv3.HttpConnectionManager) {
	for _, l := range b.Envoy.GetStaticResources().GetListeners() {
		if l.GetName() == listener {
			for _, fc := range l.GetFilterChains() {
				for _, f := range fc.GetFilters() {
					var old hcmv3.HttpConnectionManager
					if f.GetTypedConfig().UnmarshalTo(&old) == nil {
						if err := f.GetTypedConfig().MarshalFrom(h); err != nil {
							panic(err)
						}
					}
				}
			}
		}
	}
}

func (b *Bundle) envoyContainer() *corev1.Container {
	if d := b.deployment("envoy"); d != nil {
		for i := range d.Spec.Template.Spec.Containers {
			if d.Spec.Template.Spec.Containers[i].Name == "envoy" {
				return &d.Spec.Template.Spec.Containers[i]
			}
		}
	}
	return nil
}

// envoyArg returns the value after flag in Envoy's args ("" if absent).
func envoyArg(c *corev1.Container, flag string) string {
	for i, a := range c.Args {
		if a == flag && i+1 < len(c.Args) {
			return c.Args[i+1]
		}
	}
	return ""
}

func envValue(c *corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

// --- rules ---

func ruleEnvoyDrain(b *Bundle) (bad []string) {
	c := b.envoyContainer()
	if c == nil {
		return []string{"no envoy container"}
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil ||
		!slices.ContainsFunc(c.Lifecycle.PreStop.Exec.Command, func(s string) bool { return strings.HasSuffix(s, "drain.sh") }) {
		bad = append(bad, "the envoy container's preStop does not run drain.sh (a sleep alone lets SIGTERM drop every rider at once)")
	}
	// The request itself (not a comment): admin POST '/drain_listeners?...'.
	m := regexp.MustCompile(`(?m)^[^#\n]*admin POST '/drain_listeners\?([^']*)'`).FindStringSubmatch(b.DrainSh)
	if m == nil {
		bad = append(bad, "drain.sh does not POST /drain_listeners")
	} else {
		for _, want := range []string{"graceful", "skip_exit", "inboundonly"} {
			if !slices.Contains(strings.Split(m[1], "&"), want) {
				bad = append(bad, fmt.Sprintf("drain.sh: /drain_listeners?%s lacks %s", m[1], want))
			}
		}
	}
	if !regexp.MustCompile(`(?m)^[^#\n]*admin GET '/stats\?filter=downstream_cx_active'`).MatchString(b.DrainSh) {
		bad = append(bad, "drain.sh does not wait for the riders' connections (downstream_cx_active)")
	}
	for _, l := range b.Envoy.GetStaticResources().GetListeners() {
		inbound := l.GetTrafficDirection().String() == "INBOUND"
		if (l.GetName() == "riders") != inbound {
			bad = append(bad, fmt.Sprintf("listener %s: traffic_direction %v (only riders may be INBOUND: drain_listeners?inboundonly drains it and keeps the probes' listener)", l.GetName(), l.GetTrafficDirection()))
		}
	}
	return bad
}

func ruleEnvoyGrace(b *Bundle) (bad []string) {
	c := b.envoyContainer()
	p := b.pod("envoy")
	if c == nil || p == nil {
		return []string{"no envoy container"}
	}
	life := b.streamLife(&bad)
	_, h := b.hcm("riders")
	drainTimeout := h.GetDrainTimeout().AsDuration()
	if h.GetDrainTimeout() == nil {
		drainTimeout = 5 * time.Second // Envoy's default
	}
	if drainTimeout < life {
		bad = append(bad, fmt.Sprintf("riders drain_timeout %v < a stream's life at the edge %v: the drain would cut streams before their own age", drainTimeout, life))
	}
	dt, err := strconv.Atoi(envoyArg(c, "--drain-time-s"))
	if err != nil {
		dt = 600 // Envoy's default
	}
	deadline := 1050 * time.Second // drain.sh's default
	if e, ok := envValue(c, "DRAIN_DEADLINE_SECONDS"); ok {
		n, err := strconv.Atoi(e.Value)
		if err != nil {
			bad = append(bad, fmt.Sprintf("DRAIN_DEADLINE_SECONDS=%q", e.Value))
		}
		deadline = time.Duration(n) * time.Second
	}
	if need := time.Duration(dt)*time.Second + drainTimeout; deadline < need {
		bad = append(bad, fmt.Sprintf("drain deadline %v < --drain-time-s %ds + drain_timeout %v", deadline, dt, drainTimeout))
	}
	if g := p.grace(); g < deadline+graceMargin {
		bad = append(bad, fmt.Sprintf("terminationGracePeriodSeconds %v < drain deadline %v + %v", g, deadline, graceMargin))
	}
	return bad
}

func ruleEnvoyLiveness(b *Bundle) (bad []string) {
	c := b.envoyContainer()
	if c == nil || c.LivenessProbe == nil {
		return []string{"no envoy liveness probe"}
	}
	var port intstr.IntOrString
	switch {
	case c.LivenessProbe.TCPSocket != nil:
		port = c.LivenessProbe.TCPSocket.Port
	case c.LivenessProbe.HTTPGet != nil:
		port = c.LivenessProbe.HTTPGet.Port
		if c.LivenessProbe.HTTPGet.Path == "/ready" {
			bad = append(bad, "liveness on /ready: a draining Envoy is not ready but alive")
		}
	}
	n := port.IntValue()
	for _, p := range c.Ports {
		if p.Name == port.String() {
			n = int(p.ContainerPort)
		}
	}
	if l, _ := b.hcm("riders"); n == int(l.GetAddress().GetSocketAddress().GetPortValue()) {
		bad = append(bad, fmt.Sprintf("liveness on the riders port %d: the drain closes it and the kubelet would restart a draining Envoy", n))
	}
	return bad
}

func ruleMeshcastGrace(b *Bundle) (bad []string) {
	for _, p := range b.pods() {
		for _, c := range p.tmpl.Spec.Containers {
			cmd := meshcastCmd(c)
			if cmd == "" {
				continue
			}
			e := b.containerEnv(c)
			var need time.Duration
			var what string
			switch cmd {
			case "edge":
				win := dur(e, "MESHCAST_DRAIN_WINDOW", 10*time.Second, &bad)
				st := dur(e, "MESHCAST_SHUTDOWN_TIMEOUT", 15*time.Second, &bad)
				wt := dur(e, "MESHCAST_WRITE_TIMEOUT", 10*time.Second, &bad)
				need = preStopSleep(c) + win + st + wt
				what = fmt.Sprintf("preStop %v + drain window %v + shutdown %v + write timeout %v", preStopSleep(c), win, st, wt)
			case "bridge":
				dt := dur(e, "MESHCAST_DRAIN_TIMEOUT", 10*time.Second, &bad)
				need = preStopSleep(c) + dt
				what = fmt.Sprintf("preStop %v + drain timeout %v", preStopSleep(c), dt)
			}
			if g := p.grace(); g < need+graceMargin {
				bad = append(bad, fmt.Sprintf("%s: terminationGracePeriodSeconds %v < %s + margin %v", p.name, g, what, graceMargin))
			}
		}
	}
	return bad
}

// wave is how long one pod's drain disturbs its peers: the riders of an edge reconnect over
// preStop + the drain window; an Envoy needs the load balancer to take it in (30 s).
func (b *Bundle) wave(p *pod, bad *[]string) time.Duration {
	for _, c := range p.tmpl.Spec.Containers {
		if meshcastCmd(c) == "edge" {
			return preStopSleep(c) + dur(b.containerEnv(c), "MESHCAST_DRAIN_WINDOW", 10*time.Second, bad)
		}
	}
	return 30 * time.Second
}

func ruleRollout(b *Bundle) (bad []string) {
	for _, o := range b.Objects {
		d, ok := o.Typed.(*appsv1.Deployment)
		if !ok {
			continue
		}
		ru := d.Spec.Strategy.RollingUpdate
		if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil || ru.MaxSurge == nil || ru.MaxUnavailable == nil {
			bad = append(bad, fmt.Sprintf("Deployment %s: want a RollingUpdate with maxSurge and maxUnavailable set", d.Name))
			continue
		}
		if ru.MaxSurge.Type != intstr.Int || ru.MaxSurge.IntVal != 1 {
			bad = append(bad, fmt.Sprintf("Deployment %s: maxSurge %s, want 1 (a percentage drains many pods at once on a large fleet)", d.Name, ru.MaxSurge.String()))
		}
		if ru.MaxUnavailable.String() != "0" {
			bad = append(bad, fmt.Sprintf("Deployment %s: maxUnavailable %s, want 0 (capacity before removal)", d.Name, ru.MaxUnavailable.String()))
		}
		p := b.pod(d.Name)
		if w := b.wave(p, &bad); time.Duration(d.Spec.MinReadySeconds)*time.Second < w {
			bad = append(bad, fmt.Sprintf("Deployment %s: minReadySeconds %d < one pod's drain wave %v: waves would overlap", d.Name, d.Spec.MinReadySeconds, w))
		}
	}
	return bad
}

func ruleHPAScaleDown(b *Bundle) (bad []string) {
	for _, o := range b.Objects {
		h, ok := o.Typed.(*autoscalingv2.HorizontalPodAutoscaler)
		if !ok {
			continue
		}
		p := b.pod(h.Spec.ScaleTargetRef.Name)
		if p == nil {
			continue // checked elsewhere (targets exist)
		}
		sd := h.Spec.Behavior
		if sd == nil || sd.ScaleDown == nil {
			bad = append(bad, fmt.Sprintf("HPA %s: no scaleDown behaviour (the default removes many pods at once)", h.Name))
			continue
		}
		okPolicy := false
		for _, pol := range sd.ScaleDown.Policies {
			if pol.Type == autoscalingv2.PodsScalingPolicy && pol.Value == 1 && time.Duration(pol.PeriodSeconds)*time.Second >= p.grace() {
				okPolicy = true
			}
		}
		if !okPolicy || (sd.ScaleDown.SelectPolicy != nil && *sd.ScaleDown.SelectPolicy == autoscalingv2.MaxChangePolicySelect && len(sd.ScaleDown.Policies) > 1) {
			bad = append(bad, fmt.Sprintf("HPA %s: want a scaleDown policy of 1 pod per period >= the grace period %v", h.Name, p.grace()))
		}
	}
	return bad
}

func ruleNoReplicas(b *Bundle) (bad []string) {
	for _, o := range b.Objects {
		h, ok := o.Typed.(*autoscalingv2.HorizontalPodAutoscaler)
		if !ok {
			continue
		}
		ref := h.Spec.ScaleTargetRef
		for _, o2 := range b.Objects {
			if o2.Kind != ref.Kind || o2.Name != ref.Name {
				continue
			}
			var r *int32
			switch w := o2.Typed.(type) {
			case *appsv1.Deployment:
				r = w.Spec.Replicas
			case *appsv1.StatefulSet:
				r = w.Spec.Replicas
			}
			if r != nil {
				bad = append(bad, fmt.Sprintf("%s/%s sets spec.replicas %d although HPA %s owns it (every apply would reset the count)", ref.Kind, ref.Name, *r, h.Name))
			}
		}
	}
	return bad
}

func podsMetric(h *autoscalingv2.HorizontalPodAutoscaler, name string) *resource.Quantity {
	for _, m := range h.Spec.Metrics {
		if m.Type == autoscalingv2.PodsMetricSourceType && m.Pods != nil && m.Pods.Metric.Name == name && m.Pods.Target.AverageValue != nil {
			return m.Pods.Target.AverageValue
		}
	}
	return nil
}

func ruleHPAConnections(b *Bundle) (bad []string) {
	if h := b.hpa("meshcast-edge"); h == nil {
		bad = append(bad, "no edge HPA")
	} else {
		maxConns, err := strconv.Atoi(b.edgeEnv()["MESHCAST_MAX_CONNS"])
		if err != nil || maxConns <= 0 {
			bad = append(bad, "MESHCAST_MAX_CONNS is not set: the HPA has nothing to aim below")
		}
		if q := podsMetric(h, "meshcast_edge_connections"); q == nil {
			bad = append(bad, "edge HPA: no Pods metric meshcast_edge_connections (CPU alone misses a pod full of quiet riders)")
		} else if q.Value()*10 > int64(maxConns)*8 {
			bad = append(bad, fmt.Sprintf("edge HPA: connections target %v above 80%% of MESHCAST_MAX_CONNS %d", q, maxConns))
		}
	}
	if h := b.hpa("envoy"); h == nil {
		bad = append(bad, "no Envoy HPA")
	} else {
		var limit int64
		for _, m := range b.Envoy.GetOverloadManager().GetResourceMonitors() {
			if strings.HasSuffix(m.GetName(), "downstream_max_connections") {
				j, _ := protojson.Marshal(m.GetTypedConfig())
				var v struct {
					Max string `json:"maxActiveDownstreamConnections"`
				}
				_ = json.Unmarshal(j, &v)
				limit, _ = strconv.ParseInt(v.Max, 10, 64)
			}
		}
		if q := podsMetric(h, "envoy_http_downstream_cx_active"); q == nil {
			bad = append(bad, "Envoy HPA: no Pods metric envoy_http_downstream_cx_active")
		} else if limit > 0 && q.Value()*10 > limit*8 {
			bad = append(bad, fmt.Sprintf("Envoy HPA: connections target %v above 80%% of the overload manager's %d", q, limit))
		}
	}
	return bad
}

func ruleCapacity(b *Bundle) (bad []string) {
	if b.Overlay != "prod" {
		return nil
	}
	if h := b.hpa("meshcast-edge"); h == nil || h.Spec.MaxReplicas < capacityExampleEdges {
		bad = append(bad, fmt.Sprintf("edge HPA maxReplicas below %d, deploy/CAPACITY.md's edges for 200,000 riders", capacityExampleEdges))
	}
	return bad
}

func ruleGOMEMLIMIT(b *Bundle) (bad []string) {
	for _, p := range b.pods() {
		for _, c := range p.tmpl.Spec.Containers {
			if meshcastCmd(c) == "" {
				continue
			}
			lim, ok := c.Resources.Limits[corev1.ResourceMemory]
			e, set := envValue(&c, "GOMEMLIMIT")
			if !set || !ok {
				bad = append(bad, fmt.Sprintf("%s: no GOMEMLIMIT (or no memory limit): the heap grows into the OOM killer", p.name))
				continue
			}
			v, err := parseGoMemLimit(e.Value)
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s: GOMEMLIMIT=%q: %v", p.name, e.Value, err))
				continue
			}
			if f := float64(v) / float64(lim.Value()); f < 0.5 || f > 0.9 {
				bad = append(bad, fmt.Sprintf("%s: GOMEMLIMIT %s is %.0f%% of the memory limit %v, want 50-90%%", p.name, e.Value, 100*f, &lim))
			}
		}
	}
	return bad
}

// parseGoMemLimit parses GOMEMLIMIT's syntax: a number of bytes with an optional B, KiB, MiB,
// GiB or TiB suffix.
func parseGoMemLimit(s string) (int64, error) {
	m := regexp.MustCompile(`^([0-9]+)(B|KiB|MiB|GiB|TiB)?$`).FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("not a GOMEMLIMIT value")
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	shift := map[string]uint{"": 0, "B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[m[2]]
	return n << shift, err
}

func ruleMemoryRequestLimit(b *Bundle) (bad []string) {
	for _, p := range b.pods() {
		for _, c := range p.tmpl.Spec.Containers {
			req, ok1 := c.Resources.Requests[corev1.ResourceMemory]
			lim, ok2 := c.Resources.Limits[corev1.ResourceMemory]
			if !ok1 || !ok2 || req.Cmp(lim) != 0 {
				bad = append(bad, fmt.Sprintf("%s/%s: memory request %v != limit %v", p.name, c.Name, &req, &lim))
			}
		}
	}
	return bad
}

func ruleEnvoyConcurrency(b *Bundle) (bad []string) {
	c := b.envoyContainer()
	if c == nil {
		return []string{"no envoy container"}
	}
	v := envoyArg(c, "--concurrency")
	if v == "" {
		return []string{"Envoy without --concurrency runs a worker per node core, above its CPU limit"}
	}
	lim := c.Resources.Limits.Cpu()
	if name, ok := strings.CutPrefix(v, "$("); ok {
		e, found := envValue(c, strings.TrimSuffix(name, ")"))
		if !found || e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil || e.ValueFrom.ResourceFieldRef.Resource != "limits.cpu" {
			bad = append(bad, fmt.Sprintf("--concurrency %s: not the container's limits.cpu", v))
		}
		return bad
	}
	if n, err := strconv.Atoi(v); err != nil || n < 1 || int64(n)*1000 > lim.MilliValue() {
		bad = append(bad, fmt.Sprintf("--concurrency %s above the CPU limit %v", v, lim))
	}
	return bad
}

func ruleEnvoyOverload(b *Bundle) (bad []string) {
	om := b.Envoy.GetOverloadManager()
	mem, conns := "", false
	for _, m := range om.GetResourceMonitors() {
		switch m.GetName() {
		case "envoy.resource_monitors.cgroup_memory":
			mem = m.GetName()
		case "envoy.resource_monitors.fixed_heap":
			mem = m.GetName()
			j, _ := protojson.Marshal(m.GetTypedConfig())
			var v struct {
				Max string `json:"maxHeapSizeBytes"`
			}
			_ = json.Unmarshal(j, &v)
			n, _ := strconv.ParseInt(v.Max, 10, 64)
			if c := b.envoyContainer(); c != nil && n*10 > c.Resources.Limits.Memory().Value()*9 {
				bad = append(bad, fmt.Sprintf("fixed_heap max %d above 90%% of Envoy's memory limit", n))
			}
		case "envoy.resource_monitors.global_downstream_max_connections":
			conns = true
		}
	}
	if mem == "" {
		bad = append(bad, "no memory resource monitor (cgroup_memory or fixed_heap)")
	}
	if !conns {
		bad = append(bad, "no global_downstream_max_connections monitor")
	}
	stops := false
	for _, a := range om.GetActions() {
		if a.GetName() == "envoy.overload_actions.stop_accepting_requests" {
			for _, t := range a.GetTriggers() {
				stops = stops || (t.GetName() == mem && mem != "")
			}
		}
	}
	if !stops {
		bad = append(bad, "no stop_accepting_requests action on the memory monitor")
	}
	return bad
}

// streamRoute reports whether a route carries long-lived rider streams.
func streamRoute(key string) bool {
	switch key {
	case "prefix /meshcast.v1.RiderService/", "prefix /meshcast.v1.RiderService/ [content-type]", "path /v1/ws", "path /v1/sse":
		return true
	}
	return false
}

func routeKeyOf(m *routev3.RouteMatch) string {
	k := "?"
	switch {
	case m.GetPath() != "":
		k = "path " + m.GetPath()
	case m.GetPrefix() != "":
		k = "prefix " + m.GetPrefix()
	}
	for _, h := range m.GetHeaders() {
		if h.GetName() != ":method" {
			k += " [" + h.GetName() + "]"
		} else {
			k += " [:method]"
		}
	}
	return k
}

func ruleEnvoyTimeouts(b *Bundle) (bad []string) {
	_, h := b.hcm("riders")
	if h == nil {
		return []string{"no riders HTTP connection manager"}
	}
	hb := dur(b.edgeEnv(), "MESHCAST_HEARTBEAT", 15*time.Second, &bad)
	if h.GetRequestHeadersTimeout().AsDuration() <= 0 {
		bad = append(bad, "request_headers_timeout unset: a client may hold a connection without ever sending headers")
	}
	if d := h.GetStreamIdleTimeout(); d == nil || d.AsDuration() < 2*hb || d.AsDuration() > 5*time.Minute {
		bad = append(bad, fmt.Sprintf("stream_idle_timeout %v: want between 2 heartbeats (%v) and 5m (0 keeps dead streams forever)", d.AsDuration(), 2*hb))
	}
	if h.GetCommonHttpProtocolOptions().GetMaxConnectionDuration().AsDuration() <= 0 {
		bad = append(bad, "no max_connection_duration: riders' connections never move to new Envoys")
	}
	for _, vh := range h.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			k := routeKeyOf(r.GetMatch())
			if !streamRoute(k) {
				continue
			}
			if d := r.GetRoute().GetIdleTimeout(); d == nil || d.AsDuration() < 2*hb {
				bad = append(bad, fmt.Sprintf("stream route %s: idle_timeout %v, want >= 2 heartbeats (%v) and not 0", k, d.AsDuration(), 2*hb))
			}
		}
	}
	return bad
}

func ruleEnvoyUpstreamIdle(b *Bundle) (bad []string) {
	ka := dur(b.edgeEnv(), "MESHCAST_KEEPALIVE_TIME", 30*time.Second, &bad)
	edgeIdle := 2 * ka // edge/transport: http.Server.IdleTimeout
	for _, c := range b.Envoy.GetStaticResources().GetClusters() {
		if c.GetName() != "edge_http" {
			continue
		}
		j, _ := protojson.Marshal(c)
		var v struct {
			TEPO map[string]struct {
				Common struct {
					Idle string `json:"idleTimeout"`
				} `json:"commonHttpProtocolOptions"`
			} `json:"typedExtensionProtocolOptions"`
		}
		_ = json.Unmarshal(j, &v)
		idle := time.Hour // Envoy's default
		for _, o := range v.TEPO {
			if o.Common.Idle != "" {
				idle, _ = time.ParseDuration(o.Common.Idle)
			}
		}
		if idle >= edgeIdle {
			bad = append(bad, fmt.Sprintf("edge_http idle_timeout %v >= the edge's HTTP idle timeout %v: Envoy would reuse connections the edge closes", idle, edgeIdle))
		}
	}
	return bad
}

var pathWithQuery = regexp.MustCompile(`%(REQ|RESP|TRAILER)\((X-ENVOY-ORIGINAL-PATH\?)?:PATH\)|%REQ\(X-ENVOY-ORIGINAL-PATH\)|%PATH(\(WQ[^)]*\))?%|%REQ\((?i:authorization)\)`)

func ruleAccessLogNoQuery(b *Bundle) (bad []string) {
	for _, l := range b.Envoy.GetStaticResources().GetListeners() {
		_, h := b.hcm(l.GetName())
		for _, al := range h.GetAccessLog() {
			j, _ := protojson.Marshal(al)
			if m := pathWithQuery.FindString(string(j)); m != "" {
				bad = append(bad, fmt.Sprintf("listener %s: access log field %s carries the query string (riders' ?access_token=) or a token", l.GetName(), m))
			}
			if strings.Contains(string(j), "%REQ_WITHOUT_QUERY(") && !strings.Contains(string(j), "envoy.formatter.req_without_query") {
				bad = append(bad, fmt.Sprintf("listener %s: %%REQ_WITHOUT_QUERY%% without its formatter extension", l.GetName()))
			}
		}
	}
	return bad
}

func ruleHostRemoval(b *Bundle) (bad []string) {
	for _, c := range b.Envoy.GetStaticResources().GetClusters() {
		if strings.HasPrefix(c.GetName(), "edge_") && !c.GetIgnoreHealthOnHostRemoval() {
			bad = append(bad, fmt.Sprintf("cluster %s: ignore_health_on_host_removal is false: Envoy keeps sending new streams to an edge that left DNS while it still passes health checks", c.GetName()))
		}
	}
	return bad
}

func ruleRetry503(b *Bundle) (bad []string) {
	_, h := b.hcm("riders")
	want := map[string]bool{"path /v1/ws": false, "path /v1/sse": false, "prefix /meshcast.v1.RiderService/ [content-type]": false}
	for _, vh := range h.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			k := routeKeyOf(r.GetMatch())
			if _, ok := want[k]; !ok {
				continue
			}
			rp := r.GetRoute().GetRetryPolicy()
			on := strings.Split(rp.GetRetryOn(), ",")
			want[k] = rp.GetNumRetries().GetValue() > 0 && len(rp.GetRetryHostPredicate()) > 0 &&
				(slices.Contains(on, "5xx") || (slices.Contains(on, "retriable-status-codes") && slices.Contains(rp.GetRetriableStatusCodes(), 503)))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if !want[k] {
			bad = append(bad, fmt.Sprintf("route %s: no retry of a 503 refusal on another host", k))
		}
	}
	return bad
}

func ruleTLS(b *Bundle) (bad []string) {
	l, _ := b.hcm("riders")
	if l == nil {
		return []string{"no riders listener"}
	}
	sdsPaths := map[string]bool{}
	for i, fc := range l.GetFilterChains() {
		ts := fc.GetTransportSocket()
		var ctx tlsv3.DownstreamTlsContext
		if ts == nil || ts.GetTypedConfig().UnmarshalTo(&ctx) != nil {
			bad = append(bad, fmt.Sprintf("riders filter chain %d: no TLS (DownstreamTlsContext): tokens in clear, no ws:// from https pages, no ALPN h2", i))
			continue
		}
		alpn := ctx.GetCommonTlsContext().GetAlpnProtocols()
		if !slices.Contains(alpn, "h2") || !slices.Contains(alpn, "http/1.1") {
			bad = append(bad, fmt.Sprintf("riders filter chain %d: ALPN %v, want h2 and http/1.1", i, alpn))
		}
		for _, s := range ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs() {
			if p := s.GetSdsConfig().GetPathConfigSource().GetPath(); p != "" {
				sdsPaths[p] = true
			}
		}
		if len(ctx.GetCommonTlsContext().GetTlsCertificates()) == 0 && len(sdsPaths) == 0 {
			bad = append(bad, fmt.Sprintf("riders filter chain %d: no certificate", i))
		}
	}
	// The SDS file's certificate lives in a volume from the Certificate's Secret.
	var certSecret string
	for _, o := range b.Objects {
		if c, ok := o.Typed.(*Certificate); ok {
			certSecret = c.Spec.SecretName
			if len(c.Spec.DNSNames) == 0 || c.Spec.IssuerRef.Name == "" {
				bad = append(bad, fmt.Sprintf("Certificate %s: no dnsNames or issuer", c.Metadata.Name))
			}
		}
	}
	if certSecret == "" {
		bad = append(bad, "no cert-manager Certificate")
	}
	d := b.deployment("envoy")
	c := b.envoyContainer()
	if d == nil || c == nil {
		return append(bad, "no envoy Deployment")
	}
	mounts := map[string]string{} // mount path -> Secret name
	for _, v := range d.Spec.Template.Spec.Volumes {
		for _, m := range c.VolumeMounts {
			if m.Name == v.Name && v.Secret != nil {
				mounts[m.MountPath] = v.Secret.SecretName
			}
		}
	}
	if len(sdsPaths) > 0 && len(b.SDS) == 0 {
		bad = append(bad, "the riders' certificate comes from an SDS file that the envoy-config ConfigMap lacks")
	}
	for _, m := range b.SDS {
		s, ok := m.(*tlsv3.Secret)
		if !ok {
			continue
		}
		for _, f := range []string{s.GetTlsCertificate().GetCertificateChain().GetFilename(), s.GetTlsCertificate().GetPrivateKey().GetFilename()} {
			if sec := mounts[filepath.Dir(f)]; sec == "" || sec != certSecret {
				bad = append(bad, fmt.Sprintf("SDS %s: %s is not in a volume of the Certificate's Secret %q", s.GetName(), f, certSecret))
			}
		}
		if s.GetTlsCertificate().GetWatchedDirectory().GetPath() == "" {
			bad = append(bad, fmt.Sprintf("SDS %s: no watched_directory: a renewed certificate is not reloaded", s.GetName()))
		}
	}
	// Every Service port of Envoy leads to the TLS listener.
	tlsPort := int32(l.GetAddress().GetSocketAddress().GetPortValue())
	for _, o := range b.Objects {
		svc, ok := o.Typed.(*corev1.Service)
		if !ok || svc.Spec.Selector["app.kubernetes.io/name"] != "envoy" {
			continue
		}
		for _, sp := range svc.Spec.Ports {
			port := sp.TargetPort.IntVal
			for _, cp := range c.Ports {
				if cp.Name == sp.TargetPort.String() {
					port = cp.ContainerPort
				}
			}
			if port != tlsPort {
				bad = append(bad, fmt.Sprintf("Service %s port %d leads to %d, not the TLS listener %d", svc.Name, sp.Port, port, tlsPort))
			}
		}
	}
	return bad
}

// ingressRules returns the ingress rules of every NetworkPolicy that selects pods with labels
// lbls, and whether any policy selects them for Ingress at all.
func (b *Bundle) ingressRules(lbls map[string]string) (rules []networkingv1.NetworkPolicyIngressRule, selected bool) {
	for _, o := range b.Objects {
		np, ok := o.Typed.(*networkingv1.NetworkPolicy)
		if !ok {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(labels.Set(lbls)) {
			continue
		}
		if len(np.Spec.PolicyTypes) == 0 || slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			selected = true
			rules = append(rules, np.Spec.Ingress...)
		}
	}
	return rules, selected
}

// allows reports whether rule r admits traffic to the container port (number n, name name).
func allows(r networkingv1.NetworkPolicyIngressRule, n int32, name string) bool {
	if len(r.Ports) == 0 {
		return true
	}
	for _, p := range r.Ports {
		if p.Port == nil || p.Port.String() == name || (p.Port.Type == intstr.Int && p.Port.IntVal == n) ||
			(p.EndPort != nil && p.Port.Type == intstr.Int && p.Port.IntVal <= n && n <= *p.EndPort) {
			return true
		}
	}
	return false
}

// checkPeers reports the pods' port whose admitting peers fail ok.
func (b *Bundle) checkPeers(p pod, portName string, what string, ok func(networkingv1.NetworkPolicyPeer) bool) []string {
	var port *corev1.ContainerPort
	for _, c := range p.tmpl.Spec.Containers {
		for i := range c.Ports {
			if c.Ports[i].Name == portName {
				port = &c.Ports[i]
			}
		}
	}
	if port == nil {
		return nil
	}
	rules, selected := b.ingressRules(p.tmpl.Labels)
	if !selected {
		return []string{fmt.Sprintf("%s: no NetworkPolicy selects it: port %s is open to every pod", p.name, portName)}
	}
	var bad []string
	for _, r := range rules {
		if !allows(r, port.ContainerPort, port.Name) {
			continue
		}
		if len(r.From) == 0 {
			bad = append(bad, fmt.Sprintf("%s: port %s admitted from anywhere, want %s only", p.name, portName, what))
		}
		for _, peer := range r.From {
			if !ok(peer) {
				bad = append(bad, fmt.Sprintf("%s: port %s admitted from %v, want %s only", p.name, portName, peer, what))
			}
		}
	}
	return bad
}

func fromMonitoring(peer networkingv1.NetworkPolicyPeer) bool {
	return peer.IPBlock == nil && peer.NamespaceSelector != nil &&
		peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == monitoringNamespace
}

func ruleNetpolAdmin(b *Bundle) (bad []string) {
	for _, p := range b.pods() {
		port := "admin"
		if p.name == "envoy" {
			port = "metrics"
		}
		bad = append(bad, b.checkPeers(p, port, "the "+monitoringNamespace+" namespace", fromMonitoring)...)
	}
	return bad
}

func ruleNetpolRiders(b *Bundle) (bad []string) {
	p := b.pod("meshcast-edge")
	if p == nil {
		return []string{"no edge"}
	}
	return b.checkPeers(*p, "riders", "the Envoy pods (the edge trusts their X-Forwarded-For)", func(peer networkingv1.NetworkPolicyPeer) bool {
		return peer.IPBlock == nil && peer.NamespaceSelector == nil && peer.PodSelector != nil &&
			peer.PodSelector.MatchLabels["app.kubernetes.io/name"] == "envoy" && len(peer.PodSelector.MatchExpressions) == 0
	})
}

func ruleRedisLabel(b *Bundle) (bad []string) {
	if !b.Redis.NetworkPolicy.Enabled || b.Redis.NetworkPolicy.AllowExternal {
		return nil
	}
	for _, p := range b.pods() {
		if strings.HasPrefix(p.name, "meshcast-") && p.tmpl.Labels["redis-cluster-client"] != "true" {
			bad = append(bad, fmt.Sprintf("%s: no label redis-cluster-client: \"true\": the Redis chart's NetworkPolicy (allowExternal false) drops its connections", p.name))
		}
	}
	return bad
}

// hocon returns the value of key in EMQX's HOCON text ("" if absent).
func hocon(conf, key string) string {
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(key) + `\s*=\s*([^\s#]+)`).FindStringSubmatch(conf)
	if m == nil {
		return ""
	}
	return m[1]
}

func ruleSessionExpiry(b *Bundle) (bad []string) {
	p := b.pod("meshcast-bridge")
	if p == nil {
		return []string{"no bridge"}
	}
	e := b.containerEnv(p.tmpl.Spec.Containers[0])
	ttl := dur(e, "MESHCAST_TTL", 10*time.Second, &bad)
	limit := max(30*time.Second, 3*ttl)
	if se := dur(e, "MESHCAST_SESSION_EXPIRY", time.Hour, &bad); se > limit {
		bad = append(bad, fmt.Sprintf("MESHCAST_SESSION_EXPIRY %v > %v: after a scale-in the broker parks ~1/N of the fixes in the gone bridge's session, worthless after the TTL %v", se, limit, ttl))
	}
	if v := hocon(b.EMQXConf, "session_expiry_interval"); v == "" {
		bad = append(bad, "EMQX session_expiry_interval not set")
	} else if d, err := time.ParseDuration(v); err != nil || d > limit {
		bad = append(bad, fmt.Sprintf("EMQX session_expiry_interval %s > %v", v, limit))
	}
	return bad
}

func ruleEMQXInflight(b *Bundle) (bad []string) {
	want := bridgeDefaultReceiveMaximum
	if p := b.pod("meshcast-bridge"); p != nil {
		if v, ok := b.containerEnv(p.tmpl.Spec.Containers[0])["MESHCAST_RECEIVE_MAXIMUM"]; ok {
			want, _ = strconv.Atoi(v)
		}
	}
	if n, err := strconv.Atoi(hocon(b.EMQXConf, "max_inflight")); err != nil || n < want {
		bad = append(bad, fmt.Sprintf("EMQX max_inflight %q below the bridge's Receive Maximum %d", hocon(b.EMQXConf, "max_inflight"), want))
	}
	return bad
}

func ruleZoneSpread(b *Bundle) (bad []string) {
	for _, p := range b.pods() {
		if !slices.ContainsFunc(p.tmpl.Spec.TopologySpreadConstraints, func(c corev1.TopologySpreadConstraint) bool {
			return c.TopologyKey == "topology.kubernetes.io/zone"
		}) {
			bad = append(bad, fmt.Sprintf("%s: no topology spread over zones: one zone's outage takes more than its share", p.name))
		}
	}
	return bad
}

func ruleRedisMemory(b *Bundle) (bad []string) {
	conf := b.Redis.Redis.Configmap
	lim, ok := b.Redis.Redis.Resources.Limits[corev1.ResourceMemory]
	req := b.Redis.Redis.Resources.Requests[corev1.ResourceMemory]
	if !ok || req.Cmp(lim) != 0 {
		bad = append(bad, fmt.Sprintf("redis memory request %v != limit %v", &req, &lim))
	}
	mm := regexp.MustCompile(`(?m)^\s*maxmemory\s+(\S+)`).FindStringSubmatch(conf)
	pb := regexp.MustCompile(`(?m)^\s*client-output-buffer-limit\s+pubsub\s+(\S+)`).FindStringSubmatch(conf)
	if mm == nil || pb == nil {
		return append(bad, "redis configmap lacks maxmemory or client-output-buffer-limit pubsub")
	}
	maxmem, err1 := redisBytes(mm[1])
	hard, err2 := redisBytes(pb[1])
	if err1 != nil || err2 != nil {
		return append(bad, fmt.Sprintf("redis sizes %q %q", mm[1], pb[1]))
	}
	edges := int64(0)
	if h := b.hpa("meshcast-edge"); h != nil {
		edges = int64(h.Spec.MaxReplicas)
	}
	if need := maxmem + edges*hard; ok && need > lim.Value() {
		bad = append(bad, fmt.Sprintf("redis maxmemory %s + %d edges x pubsub %s = %d bytes > the memory limit %v", mm[1], edges, pb[1], need, &lim))
	}
	return bad
}

// redisBytes parses a redis.conf size (1gb, 512mb, 64k, 100).
func redisBytes(s string) (int64, error) {
	m := regexp.MustCompile(`^(?i)([0-9]+)(b|k|kb|m|mb|g|gb)?$`).FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("size %q", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	mult := map[string]int64{"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000 * 1000, "mb": 1 << 20, "g": 1000 * 1000 * 1000, "gb": 1 << 30}[strings.ToLower(m[2])]
	return n * mult, err
}

func ruleNoReflection(b *Bundle) (bad []string) {
	if b.Overlay != "prod" {
		return nil
	}
	if v := b.edgeEnv()["MESHCAST_REFLECTION"]; v != "false" {
		bad = append(bad, fmt.Sprintf("MESHCAST_REFLECTION=%q: the public endpoint serves gRPC reflection (want false)", v))
	}
	return bad
}
