package validate

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// brokenVariant breaks one promise of a rendered overlay; the rule named must report it. Most
// put back what the manifests had before issue 16 (every rule failed on those: see
// deploy/README.md, "Offline validation").
type brokenVariant struct {
	rule, name string
	breakIt    func(t *testing.T, b *Bundle)
}

// editHCM changes the riders' connection manager.
func editHCM(b *Bundle, f func(h *hcmv3.HttpConnectionManager)) {
	_, h := b.hcm("riders")
	f(h)
	b.setHCM("riders", h)
}

func edgeDeployment(t *testing.T, b *Bundle) *appsv1.Deployment {
	d := b.deployment("meshcast-edge")
	if d == nil {
		t.Fatal("no edge Deployment")
	}
	return d
}

func configMapSet(t *testing.T, b *Bundle, cm, key, value string) {
	c := b.configMap(cm)
	if c == nil {
		t.Fatalf("no ConfigMap %s", cm)
	}
	c.Data[key] = value
}

var brokenVariants = []brokenVariant{
	{"envoy-drain-prestop", "preStop sleep 5 only", func(t *testing.T, b *Bundle) {
		container(t, b, "envoy").Lifecycle.PreStop = &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 5}}
	}},
	{"envoy-drain-prestop", "drain without skip_exit (Envoy exits after --drain-time-s)", func(t *testing.T, b *Bundle) {
		mustContain(t, b.DrainSh, "&skip_exit")
		b.DrainSh = strings.ReplaceAll(b.DrainSh, "&skip_exit", "")
	}},
	{"envoy-drain-prestop", "metrics listener drained too", func(t *testing.T, b *Bundle) {
		for _, l := range b.Envoy.GetStaticResources().GetListeners() {
			l.TrafficDirection = corev3.TrafficDirection_INBOUND
		}
	}},
	{"envoy-grace", "grace 45 s (the old preStop 5 + --drain-time-s 30 + 10)", func(t *testing.T, b *Bundle) {
		g := int64(45)
		b.pod("envoy").tmpl.Spec.TerminationGracePeriodSeconds = &g
	}},
	{"envoy-grace", "drain_timeout shorter than a stream's age", func(t *testing.T, b *Bundle) {
		editHCM(b, func(h *hcmv3.HttpConnectionManager) { h.DrainTimeout = durationpb.New(30 * time.Second) })
	}},
	{"envoy-liveness", "liveness on the riders port", func(t *testing.T, b *Bundle) {
		container(t, b, "envoy").LivenessProbe.TCPSocket.Port = intstr.FromString("riders-tls")
	}},
	{"edge-grace", "edge grace = preStop + window + shutdown, no write timeout, no margin", func(t *testing.T, b *Bundle) {
		g := int64(40)
		edgeDeployment(t, b).Spec.Template.Spec.TerminationGracePeriodSeconds = &g
	}},
	{"edge-grace", "edge grace without margin", func(t *testing.T, b *Bundle) {
		g := int64(50) // 5 + 20 + 15 + 10
		edgeDeployment(t, b).Spec.Template.Spec.TerminationGracePeriodSeconds = &g
	}},
	{"rollout", "maxSurge 25%", func(t *testing.T, b *Bundle) {
		s := intstr.FromString("25%")
		edgeDeployment(t, b).Spec.Strategy.RollingUpdate.MaxSurge = &s
	}},
	{"rollout", "no minReadySeconds", func(t *testing.T, b *Bundle) {
		edgeDeployment(t, b).Spec.MinReadySeconds = 0
	}},
	{"hpa-scale-down", "Envoy HPA without scale-down behaviour", func(t *testing.T, b *Bundle) {
		b.hpa("envoy").Spec.Behavior = nil
	}},
	{"hpa-scale-down", "edge scale-in faster than one drain", func(t *testing.T, b *Bundle) {
		b.hpa("meshcast-edge").Spec.Behavior.ScaleDown.Policies[0].PeriodSeconds = 30
	}},
	{"hpa-no-replicas", "spec.replicas on the edge Deployment", func(t *testing.T, b *Bundle) {
		n := int32(3)
		edgeDeployment(t, b).Spec.Replicas = &n
	}},
	{"hpa-connections", "edge HPA on CPU only", func(t *testing.T, b *Bundle) {
		h := b.hpa("meshcast-edge")
		h.Spec.Metrics = h.Spec.Metrics[:1]
	}},
	{"hpa-connections", "edge connections target at the cap", func(t *testing.T, b *Bundle) {
		for _, m := range b.hpa("meshcast-edge").Spec.Metrics {
			if m.Pods != nil {
				q := resource.MustParse("20000")
				m.Pods.Target.AverageValue = &q
			}
		}
	}},
	{"capacity-max-replicas", "prod maxReplicas 30", func(t *testing.T, b *Bundle) {
		b.hpa("meshcast-edge").Spec.MaxReplicas = 30
	}},
	{"gomemlimit", "no GOMEMLIMIT on the edge", func(t *testing.T, b *Bundle) {
		dropEnv(container(t, b, "meshcast-edge"), "GOMEMLIMIT")
	}},
	{"gomemlimit", "bridge GOMEMLIMIT at the limit", func(t *testing.T, b *Bundle) {
		c := container(t, b, "meshcast-bridge")
		dropEnv(c, "GOMEMLIMIT")
		c.Env = append(c.Env, corev1.EnvVar{Name: "GOMEMLIMIT", Value: "512MiB"})
	}},
	{"memory-request-limit", "edge request 768Mi, limit 1Gi", func(t *testing.T, b *Bundle) {
		container(t, b, "meshcast-edge").Resources.Requests[corev1.ResourceMemory] = resource.MustParse("768Mi")
	}},
	{"envoy-concurrency", "no --concurrency", func(t *testing.T, b *Bundle) {
		c := container(t, b, "envoy")
		for i, a := range c.Args {
			if a == "--concurrency" {
				c.Args = append(c.Args[:i], c.Args[i+2:]...)
				return
			}
		}
		t.Fatal("no --concurrency to remove")
	}},
	{"envoy-concurrency", "--concurrency 8 above a 2-core limit", func(t *testing.T, b *Bundle) {
		c := container(t, b, "envoy")
		for i, a := range c.Args {
			if a == "--concurrency" {
				c.Args[i+1] = "8"
			}
		}
	}},
	{"envoy-overload", "no overload manager", func(t *testing.T, b *Bundle) {
		b.Envoy.OverloadManager = nil
	}},
	{"envoy-timeouts", "stream idle timeouts 0 (the old config)", func(t *testing.T, b *Bundle) {
		editHCM(b, func(h *hcmv3.HttpConnectionManager) { h.StreamIdleTimeout = durationpb.New(0) })
	}},
	{"envoy-timeouts", "no request_headers_timeout", func(t *testing.T, b *Bundle) {
		editHCM(b, func(h *hcmv3.HttpConnectionManager) { h.RequestHeadersTimeout = nil })
	}},
	{"envoy-timeouts", "no max_connection_duration", func(t *testing.T, b *Bundle) {
		editHCM(b, func(h *hcmv3.HttpConnectionManager) { h.CommonHttpProtocolOptions.MaxConnectionDuration = nil })
	}},
	{"envoy-timeouts", "WebSocket route idle_timeout 0s", func(t *testing.T, b *Bundle) {
		editHCM(b, func(h *hcmv3.HttpConnectionManager) {
			for _, r := range h.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
				if r.GetMatch().GetPath() == "/v1/ws" {
					r.GetRoute().IdleTimeout = durationpb.New(0)
				}
			}
		})
	}},
	{"envoy-upstream-idle", "the edge's keepalive 20s (HTTP idle 40s) below edge_http's 50s", func(t *testing.T, b *Bundle) {
		configMapSet(t, b, "meshcast-edge", "MESHCAST_KEEPALIVE_TIME", "20s") // the edge closes idle HTTP/1.1 after 40s
	}},
	{"envoy-access-log-no-query", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% (the old format)", func(t *testing.T, b *Bundle) {
		editHCM(b, func(h *hcmv3.HttpConnectionManager) {
			al := h.GetAccessLog()[0]
			j := string(must(t, al.GetTypedConfig()))
			mustContain(t, j, "%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%")
			h.AccessLog[0] = reparseAccessLog(t, al, strings.ReplaceAll(j, "%REQ_WITHOUT_QUERY(", "%REQ("))
		})
	}},
	{"envoy-host-removal", "edge_grpc keeps hosts that left DNS", func(t *testing.T, b *Bundle) {
		for _, c := range b.Envoy.GetStaticResources().GetClusters() {
			if c.GetName() == "edge_grpc" {
				c.IgnoreHealthOnHostRemoval = false
			}
		}
	}},
	{"envoy-retry-503", "SSE without a retry policy", func(t *testing.T, b *Bundle) {
		editHCM(b, func(h *hcmv3.HttpConnectionManager) {
			for _, r := range h.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
				if r.GetMatch().GetPath() == "/v1/sse" {
					r.GetRoute().RetryPolicy = nil
				}
			}
		})
	}},
	{"tls", "plaintext riders listener", func(t *testing.T, b *Bundle) {
		for _, l := range b.Envoy.GetStaticResources().GetListeners() {
			if l.GetName() == "riders" {
				l.GetFilterChains()[0].TransportSocket = nil
			}
		}
	}},
	{"tls", "ALPN h2 only (WebSocket and SSE need http/1.1)", func(t *testing.T, b *Bundle) {
		ts := b.Envoy.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetTransportSocket()
		j := strings.Replace(string(must(t, ts)), `"h2", "http/1.1"`, `"h2"`, 1)
		j = strings.Replace(j, `"h2","http/1.1"`, `"h2"`, 1)
		reparse(t, j, ts)
	}},
	{"tls", "certificate Secret not mounted", func(t *testing.T, b *Bundle) {
		d := b.deployment("envoy")
		for i := range d.Spec.Template.Spec.Volumes {
			if v := &d.Spec.Template.Spec.Volumes[i]; v.Secret != nil {
				v.Secret.SecretName = "some-other-secret"
			}
		}
	}},
	{"tls", "Service port 80 to a plaintext port", func(t *testing.T, b *Bundle) {
		for _, o := range b.Objects {
			if s, ok := o.Typed.(*corev1.Service); ok && s.Name == "envoy" {
				s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)})
			}
		}
	}},
	{"networkpolicy-admin", "no NetworkPolicy for the admin ports (pprof open to every pod)", func(t *testing.T, b *Bundle) {
		dropNetpol(b, "meshcast-admin")
	}},
	{"networkpolicy-admin", "admin port admitted from every pod of the namespace", func(t *testing.T, b *Bundle) {
		np := netpol(t, b, "meshcast-admin")
		np.Spec.Ingress[0].From = nil
	}},
	{"networkpolicy-riders", "rider port open to every pod (X-Forwarded-For trusted from 10.0.0.0/8)", func(t *testing.T, b *Bundle) {
		dropNetpol(b, "meshcast-edge-riders")
		dropNetpol(b, "meshcast-admin")
	}},
	{"networkpolicy-riders", "rider port admitted from an ipBlock", func(t *testing.T, b *Bundle) {
		np := netpol(t, b, "meshcast-edge-riders")
		np.Spec.Ingress[0].From = append(np.Spec.Ingress[0].From, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}})
	}},
	{"redis-client-label", "edge pods without redis-cluster-client", func(t *testing.T, b *Bundle) {
		delete(edgeDeployment(t, b).Spec.Template.Labels, "redis-cluster-client")
	}},
	{"session-expiry", "bridge session expiry 1h (the old value)", func(t *testing.T, b *Bundle) {
		configMapSet(t, b, "meshcast-bridge", "MESHCAST_SESSION_EXPIRY", "1h")
	}},
	{"session-expiry", "EMQX session_expiry_interval 1h", func(t *testing.T, b *Bundle) {
		mustContain(t, b.EMQXConf, "session_expiry_interval = 30s")
		b.EMQXConf = strings.Replace(b.EMQXConf, "session_expiry_interval = 30s", "session_expiry_interval = 1h", 1)
	}},
	{"emqx-inflight", "max_inflight 1024 below Receive Maximum 2048", func(t *testing.T, b *Bundle) {
		mustContain(t, b.EMQXConf, "max_inflight = 2048")
		b.EMQXConf = strings.Replace(b.EMQXConf, "max_inflight = 2048", "max_inflight = 1024", 1)
	}},
	{"zone-spread", "edge spread over hosts only", func(t *testing.T, b *Bundle) {
		s := &edgeDeployment(t, b).Spec.Template.Spec
		s.TopologySpreadConstraints = s.TopologySpreadConstraints[1:]
	}},
	{"prod-no-reflection", "prod edges with reflection (the default)", func(t *testing.T, b *Bundle) {
		delete(b.configMap("meshcast-edge").Data, "MESHCAST_REFLECTION")
	}},
	{"redis-memory", "pubsub 64mb for 80 edges (the old limit)", func(t *testing.T, b *Bundle) {
		mustContain(t, b.Redis.Redis.Configmap, "pubsub 16mb")
		b.Redis.Redis.Configmap = strings.Replace(b.Redis.Redis.Configmap, "pubsub 16mb", "pubsub 64mb", 1)
	}},
}

func netpol(t *testing.T, b *Bundle, name string) *networkingv1.NetworkPolicy {
	for _, o := range b.Objects {
		if np, ok := o.Typed.(*networkingv1.NetworkPolicy); ok && np.Name == name {
			return np
		}
	}
	t.Fatalf("no NetworkPolicy %s", name)
	return nil
}

func dropNetpol(b *Bundle, name string) {
	out := b.Objects[:0]
	for _, o := range b.Objects {
		if np, ok := o.Typed.(*networkingv1.NetworkPolicy); ok && np.Name == name {
			continue
		}
		out = append(out, o)
	}
	b.Objects = out
}

// reparse decodes JSON j into m (replacing its contents).
func reparse(t *testing.T, j string, m proto.Message) {
	t.Helper()
	proto.Reset(m)
	if err := protojson.Unmarshal([]byte(j), m); err != nil {
		t.Fatal(err)
	}
}

// reparseAccessLog returns al with its typed_config replaced by JSON j.
func reparseAccessLog(t *testing.T, al *accesslogv3.AccessLog, j string) *accesslogv3.AccessLog {
	t.Helper()
	out := proto.Clone(al).(*accesslogv3.AccessLog)
	reparse(t, j, out.GetTypedConfig())
	return out
}
