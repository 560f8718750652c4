package validate

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

var overlays = []string{"../k8s/overlays/dev", "../k8s/overlays/prod"}

// TestOverlaysDecodeStrictly renders every overlay and decodes every object into its Kubernetes
// API type with unknown fields rejected.
func TestOverlaysDecodeStrictly(t *testing.T) {
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			objs, err := Render(dir)
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.Kind]++
			}
			t.Logf("%d objects: %v", len(objs), kinds)
			for _, want := range []string{"Deployment", "StatefulSet", "Service", "ConfigMap", "HorizontalPodAutoscaler", "PodDisruptionBudget"} {
				if kinds[want] == 0 {
					t.Errorf("no %s rendered", want)
				}
			}
		})
	}
}

// TestRenderRejectsUnknownField proves the strict decoding: a misspelt field fails.
func TestRenderRejectsUnknownField(t *testing.T) {
	dir := t.TempDir()
	write(t, dir+"/kustomization.yaml", "resources: [d.yaml]\n")
	write(t, dir+"/d.yaml", `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  replicas: 1
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      terminationGracePeriodSecond: 30
      containers: [{name: c, image: i}]
`)
	_, err := Render(dir)
	if err == nil || !strings.Contains(err.Error(), "terminationGracePeriodSecond") {
		t.Fatalf("Render = %v, want an unknown field error", err)
	}
}

// workload is the pod-owning part of a Deployment or StatefulSet.
type workload struct {
	kind, name string
	labels     map[string]string
	pod        corev1.PodSpec
}

func workloads(objs []Object) []workload {
	var out []workload
	for _, o := range objs {
		switch w := o.Typed.(type) {
		case *appsv1.Deployment:
			out = append(out, workload{"Deployment", w.Name, w.Spec.Template.Labels, w.Spec.Template.Spec})
		case *appsv1.StatefulSet:
			out = append(out, workload{"StatefulSet", w.Name, w.Spec.Template.Labels, w.Spec.Template.Spec})
		}
	}
	return out
}

// env resolves a container's environment: its envFrom ConfigMaps in order, then env (values;
// references to Secrets and fields resolve to a placeholder).
func env(c corev1.Container, cms map[string]*corev1.ConfigMap) (map[string]string, error) {
	out := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			continue
		}
		cm, ok := cms[ef.ConfigMapRef.Name]
		if !ok {
			return nil, fmt.Errorf("envFrom ConfigMap %q is not in the output", ef.ConfigMapRef.Name)
		}
		maps.Copy(out, cm.Data)
	}
	for _, e := range c.Env {
		out[e.Name] = e.Value
		if e.ValueFrom != nil {
			out[e.Name] = "<from " + e.Name + ">"
		}
	}
	return out, nil
}

func durationOf(errorf func(string, ...any), env map[string]string, key string, def time.Duration) time.Duration {
	v, ok := env[key]
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		errorf("%s=%q: %v", key, v, err)
	}
	return d
}

// checkAll runs every semantic check over one overlay's objects.
func checkAll(objs []Object, readmeEnv map[string]map[string]bool) (problems, notes []string) {
	cms := map[string]*corev1.ConfigMap{}
	for _, o := range objs {
		if cm, ok := o.Typed.(*corev1.ConfigMap); ok {
			cms[cm.Name] = cm
		}
	}
	ws := workloads(objs)
	for _, w := range ws {
		p, n := checkWorkload(w, cms, readmeEnv)
		problems, notes = append(problems, p...), append(notes, n...)
	}
	return append(problems, checkTargets(objs, ws)...), notes
}

// TestOverlaySemantics checks what the design needs from every overlay's objects.
func TestOverlaySemantics(t *testing.T) {
	readmeEnv, err := EnvNames("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			objs, err := Render(dir)
			if err != nil {
				t.Fatal(err)
			}
			problems, notes := checkAll(objs, readmeEnv)
			for _, n := range notes {
				t.Log(n)
			}
			for _, p := range problems {
				t.Error(p)
			}
		})
	}
}

// checkWorkload returns what is wrong with one workload (nil: nothing) and notes on what it checked.
func checkWorkload(w workload, cms map[string]*corev1.ConfigMap, readmeEnv map[string]map[string]bool) (problems, notes []string) {
	errorf := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	id := w.kind + "/" + w.name
	p := w.pod
	if p.SecurityContext == nil || p.SecurityContext.RunAsNonRoot == nil || !*p.SecurityContext.RunAsNonRoot {
		errorf("%s: pod securityContext.runAsNonRoot is not true", id)
	}
	if p.TerminationGracePeriodSeconds == nil {
		errorf("%s: no terminationGracePeriodSeconds", id)
		return problems, notes
	}
	grace := time.Duration(*p.TerminationGracePeriodSeconds) * time.Second
	for _, v := range p.Volumes {
		if v.ConfigMap != nil && cms[v.ConfigMap.Name] == nil {
			errorf("%s: volume %s: ConfigMap %q is not in the output", id, v.Name, v.ConfigMap.Name)
		}
	}
	for _, c := range p.Containers {
		cid := id + "/" + c.Name
		if c.ReadinessProbe == nil || c.LivenessProbe == nil {
			errorf("%s: readiness and liveness probes are required", cid)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[r]; !ok {
				errorf("%s: no %s request", cid, r)
			}
			if _, ok := c.Resources.Limits[r]; !ok {
				errorf("%s: no %s limit", cid, r)
			}
		}
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			errorf("%s: securityContext must set readOnlyRootFilesystem true, allowPrivilegeEscalation false", cid)
		}
		var preStop time.Duration
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || (c.Lifecycle.PreStop.Sleep == nil && c.Lifecycle.PreStop.Exec == nil) {
			errorf("%s: no preStop sleep or drain", cid)
		} else if c.Lifecycle.PreStop.Sleep != nil {
			preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		}
		if len(c.Args) == 0 || c.Name == "envoy" {
			continue
		}
		// meshcast containers: known variables, and a grace period longer than the drain.
		cmd := c.Args[0]
		e, err := env(c, cms)
		if err != nil {
			errorf("%s: %v", cid, err)
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(e)) {
			if strings.HasPrefix(k, "MESHCAST_") && !readmeEnv[cmd][k] {
				errorf("%s: %s is not a `meshcast %s` variable (README.md configuration reference)", cid, k, cmd)
			}
		}
		var drain time.Duration
		switch cmd {
		case "edge":
			drain = durationOf(errorf, e, "MESHCAST_DRAIN_WINDOW", 10*time.Second) + durationOf(errorf, e, "MESHCAST_SHUTDOWN_TIMEOUT", 15*time.Second)
			if c.ReadinessProbe == nil || c.ReadinessProbe.GRPC == nil {
				errorf("%s: readiness must be the gRPC health check", cid)
			} else if listen := e["MESHCAST_LISTEN"]; !strings.HasSuffix(listen, fmt.Sprintf(":%d", c.ReadinessProbe.GRPC.Port)) {
				errorf("%s: gRPC readiness probe on port %d, but MESHCAST_LISTEN=%q", cid, c.ReadinessProbe.GRPC.Port, listen)
			}
			if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
				errorf("%s: liveness must be GET /healthz on the admin port", cid)
			}
			if e["MESHCAST_INSECURE_NO_AUTH"] != "true" && e["MESHCAST_AUTH_JWKS_FILE"] == "" && e["MESHCAST_AUTH_KEY_FILE"] == "" {
				errorf("%s: neither auth keys nor MESHCAST_INSECURE_NO_AUTH: the edge would refuse to start", cid)
			}
		case "bridge":
			drain = durationOf(errorf, e, "MESHCAST_DRAIN_TIMEOUT", 10*time.Second)
			if w.kind != "StatefulSet" || !strings.Contains(e["MESHCAST_CLIENT_ID"], "from MESHCAST_CLIENT_ID") {
				errorf("%s: the bridge needs a stable, unique client id (StatefulSet pod name)", cid)
			}
		}
		if need := preStop + drain; grace <= need {
			errorf("%s: terminationGracePeriodSeconds %v is not longer than preStop %v + drain %v", cid, grace, preStop, drain)
		} else {
			notes = append(notes, fmt.Sprintf("%s: grace %v > preStop %v + drain %v", cid, grace, preStop, drain))
		}
	}
	return problems, notes
}

// checkTargets: every HPA scales an existing workload on CPU; every PDB and Service selects the
// pods of one.
func checkTargets(objs []Object, ws []workload) (problems []string) {
	errorf := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	find := func(kind, name string) *workload {
		for i := range ws {
			if ws[i].kind == kind && ws[i].name == name {
				return &ws[i]
			}
		}
		return nil
	}
	selects := func(sel map[string]string) bool {
		for _, w := range ws {
			if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(w.labels)) {
				return true
			}
		}
		return false
	}
	scaled := map[string]bool{}
	for _, o := range objs {
		switch v := o.Typed.(type) {
		case *autoscalingv2.HorizontalPodAutoscaler:
			ref := v.Spec.ScaleTargetRef
			if find(ref.Kind, ref.Name) == nil {
				errorf("HPA %s: target %s/%s does not exist", v.Name, ref.Kind, ref.Name)
			}
			scaled[ref.Kind+"/"+ref.Name] = true
			cpu := false
			for _, m := range v.Spec.Metrics {
				cpu = cpu || (m.Resource != nil && m.Resource.Name == corev1.ResourceCPU)
			}
			if !cpu {
				errorf("HPA %s: no CPU metric", v.Name)
			}
			if v.Spec.MinReplicas == nil || *v.Spec.MinReplicas > v.Spec.MaxReplicas {
				errorf("HPA %s: minReplicas must be set and <= maxReplicas", v.Name)
			}
		case *policyv1.PodDisruptionBudget:
			sel, err := metav1.LabelSelectorAsMap(v.Spec.Selector)
			if err != nil || !selects(sel) {
				errorf("PDB %s: selector %v matches no workload", v.Name, sel)
			}
		case *corev1.Service:
			if !selects(v.Spec.Selector) {
				errorf("Service %s: selector %v matches no workload", v.Name, v.Spec.Selector)
			}
		}
	}
	for _, w := range ws {
		if !scaled[w.kind+"/"+w.name] {
			errorf("%s/%s has no HPA", w.kind, w.name)
		}
	}
	return problems
}

func TestZonesCopyIsCurrent(t *testing.T) {
	if err := SameFile("../zones/tokyo.geojson", "../k8s/base/tokyo.geojson"); err != nil {
		t.Fatal(err)
	}
}

// TestEnvoyConfig decodes deploy/envoy/envoy.yaml strictly into the Envoy v3 bootstrap and checks
// the routing promises: streams without timeouts, unary calls with timeouts and retries,
// WebSocket upgrades, gRPC health checks, per-method access logs.
func TestEnvoyConfig(t *testing.T) {
	b, err := Envoy("../envoy/envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(b.GetStaticResources().GetClusters()); n != 3 {
		t.Errorf("%d clusters, want 3", n)
	}
	j := string(must(t, b))
	for _, want := range []string{
		`"grpcHealthCheck"`, `"upgradeType":"websocket"`, `"lbPolicy":"LEAST_REQUEST"`,
		`"path":"%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%"`, `"grpc_status":`, `"statsForAllMethods":true`,
	} {
		if !strings.Contains(strings.ReplaceAll(j, " ", ""), strings.ReplaceAll(want, " ", "")) {
			t.Errorf("envoy.yaml lacks %s", want)
		}
	}
	checkEnvoyRoutes(t, b)
}

func TestEnvoyRejectsUnknownField(t *testing.T) {
	dir := t.TempDir()
	write(t, dir+"/e.yaml", "static_resources:\n  clusters:\n    - name: x\n      conect_timeout: 1s\n")
	if _, err := Envoy(dir + "/e.yaml"); err == nil || !strings.Contains(err.Error(), "conect_timeout") {
		t.Fatalf("Envoy = %v, want an unknown field error", err)
	}
	write(t, dir+"/v.yaml", "static_resources:\n  clusters:\n    - name: ''\n")
	if _, err := Envoy(dir + "/v.yaml"); err == nil {
		t.Fatal("Envoy accepted a cluster without a name (PGV rule)")
	}
}

// TestSemanticChecksCatch breaks the rendered dev overlay one way at a time and expects the
// semantic checks to name the problem.
func TestSemanticChecksCatch(t *testing.T) {
	readmeEnv, err := EnvNames("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	edge := func(objs []Object) *appsv1.Deployment {
		for _, o := range objs {
			if d, ok := o.Typed.(*appsv1.Deployment); ok && d.Name == "meshcast-edge" {
				return d
			}
		}
		t.Fatal("no edge Deployment")
		return nil
	}
	for _, tc := range []struct {
		name, want string
		breakIt    func(objs []Object)
	}{
		{"grace shorter than the drain", "is not longer than preStop", func(objs []Object) {
			g := int64(20)
			edge(objs).Spec.Template.Spec.TerminationGracePeriodSeconds = &g
		}},
		{"no readiness probe", "readiness and liveness probes are required", func(objs []Object) {
			edge(objs).Spec.Template.Spec.Containers[0].ReadinessProbe = nil
		}},
		{"root allowed", "runAsNonRoot is not true", func(objs []Object) {
			f := false
			edge(objs).Spec.Template.Spec.SecurityContext.RunAsNonRoot = &f
		}},
		{"no memory limit", "no memory limit", func(objs []Object) {
			delete(edge(objs).Spec.Template.Spec.Containers[0].Resources.Limits, corev1.ResourceMemory)
		}},
		{"misspelt variable", "MESHCAST_HEARTBEET is not a `meshcast edge` variable", func(objs []Object) {
			c := &edge(objs).Spec.Template.Spec.Containers[0]
			c.Env = append(c.Env, corev1.EnvVar{Name: "MESHCAST_HEARTBEET", Value: "15s"})
		}},
		{"HPA on a missing target", "does not exist", func(objs []Object) {
			for _, o := range objs {
				if h, ok := o.Typed.(*autoscalingv2.HorizontalPodAutoscaler); ok {
					h.Spec.ScaleTargetRef.Name = "nope"
				}
			}
		}},
		{"Service selecting nothing", "matches no workload", func(objs []Object) {
			for _, o := range objs {
				if s, ok := o.Typed.(*corev1.Service); ok {
					s.Spec.Selector = map[string]string{"app": "nope"}
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := Render("../k8s/overlays/dev")
			if err != nil {
				t.Fatal(err)
			}
			tc.breakIt(objs)
			problems, _ := checkAll(objs, readmeEnv)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("problems %q lack %q", problems, tc.want)
			}
		})
	}
}
