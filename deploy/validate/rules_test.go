package validate

import (
	"os"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// deployDir is the deploy/ tree the rules check: this repository's, or $MESHCAST_DEPLOY_DIR
// (e.g. an older checkout, to see which rules it breaks).
func deployDir() string {
	if d := os.Getenv("MESHCAST_DEPLOY_DIR"); d != "" {
		return d
	}
	return ".."
}

func load(t *testing.T, overlay string) *Bundle {
	t.Helper()
	b, err := Load(deployDir(), overlay)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRules runs every rule over every overlay: the manifests keep every promise.
func TestRules(t *testing.T) {
	for _, overlay := range []string{"dev", "prod"} {
		t.Run(overlay, func(t *testing.T) {
			b := load(t, overlay)
			for _, r := range Rules {
				for _, p := range r.Check(b) {
					t.Errorf("%s (%s): %s", r.ID, r.Doc, p)
				}
			}
		})
	}
}

// TestRulesCatchBrokenVariants breaks the rendered prod overlay one way per rule and expects that
// rule, and only through its own check, to report it.
func TestRulesCatchBrokenVariants(t *testing.T) {
	ids := map[string]bool{}
	for _, r := range Rules {
		ids[r.ID] = true
	}
	tested := map[string]bool{}
	for _, v := range brokenVariants {
		tested[v.rule] = true
		t.Run(v.rule+"/"+v.name, func(t *testing.T) {
			if !ids[v.rule] {
				t.Fatalf("no rule %q", v.rule)
			}
			b := load(t, "prod")
			for _, r := range Rules {
				if r.ID == v.rule {
					if p := r.Check(b); len(p) != 0 {
						t.Fatalf("fails before breaking: %q", p)
					}
					v.breakIt(t, b)
					if p := r.Check(b); len(p) == 0 {
						t.Errorf("%s: the broken variant passes", r.ID)
					} else {
						t.Logf("caught: %s", p[0])
					}
				}
			}
		})
	}
	for id := range ids {
		if !tested[id] {
			t.Errorf("rule %s has no broken variant", id)
		}
	}
}

func container(t *testing.T, b *Bundle, workload string) *corev1.Container {
	t.Helper()
	p := b.pod(workload)
	if p == nil {
		t.Fatalf("no %s", workload)
	}
	return &p.tmpl.Spec.Containers[0]
}

func dropEnv(c *corev1.Container, name string) {
	c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
}

func mustContain(t *testing.T, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%q not found", sub)
	}
}
