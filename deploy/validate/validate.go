package validate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Object is one rendered Kubernetes object, decoded strictly into its API type.
type Object struct {
	APIVersion, Kind, Name string
	YAML                   []byte
	Typed                  any // *appsv1.Deployment, *corev1.Service, ...
}

// Certificate is the part of cert-manager's Certificate (cert-manager.io/v1) meshcast uses,
// decoded strictly: a field outside it is an error, so a misspelt one is caught.
type Certificate struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		SecretName string   `json:"secretName"`
		DNSNames   []string `json:"dnsNames"`
		IssuerRef  struct {
			Group string `json:"group,omitempty"`
			Kind  string `json:"kind"`
			Name  string `json:"name"`
		} `json:"issuerRef"`
		PrivateKey *struct {
			Algorithm      string `json:"algorithm,omitempty"`
			Size           int    `json:"size,omitempty"`
			RotationPolicy string `json:"rotationPolicy,omitempty"`
		} `json:"privateKey,omitempty"`
		Duration    string `json:"duration,omitempty"`
		RenewBefore string `json:"renewBefore,omitempty"`
	} `json:"spec"`
}

// newTyped returns a new value of the Go type of apiVersion/kind, or nil for a kind this
// project does not deploy.
func newTyped(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}
	case "v1 Service":
		return &corev1.Service{}
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Secret":
		return &corev1.Secret{}
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	case "cert-manager.io/v1 Certificate":
		return &Certificate{}
	}
	return nil
}

// Render builds the kustomization in dir (as `kubectl kustomize dir` does, files on disk, no
// network) and decodes every object strictly into its Kubernetes API type: an unknown or
// duplicated field, a wrong type or an unknown kind is an error.
func Render(dir string) ([]Object, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	var out []Object
	var errs []error
	for _, r := range m.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		gvk := r.GetGvk()
		apiVersion := gvk.Version
		if gvk.Group != "" {
			apiVersion = gvk.Group + "/" + gvk.Version
		}
		o := Object{APIVersion: apiVersion, Kind: gvk.Kind, Name: r.GetName(), YAML: b}
		o.Typed = newTyped(apiVersion, gvk.Kind)
		if o.Typed == nil {
			errs = append(errs, fmt.Errorf("%s %s: kind not known to the validator", apiVersion, o.Name))
			continue
		}
		if err := yaml.UnmarshalStrict(b, o.Typed); err != nil {
			errs = append(errs, fmt.Errorf("%s %s/%s: %w", dir, gvk.Kind, o.Name, err))
			continue
		}
		out = append(out, o)
	}
	return out, errors.Join(errs...)
}

// EnvNames reads the MESHCAST_* variables of each subcommand from README.md's generated
// configuration reference (the "#### `meshcast <cmd>`" tables).
func EnvNames(readme string) (map[string]map[string]bool, error) {
	f, err := os.Open(readme)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head := regexp.MustCompile("^#### `meshcast ([a-z]+)`")
	row := regexp.MustCompile("^\\| `-[a-z0-9-]+` \\| `(MESHCAST_[A-Z0-9_]+)` \\|")
	out := map[string]map[string]bool{}
	cmd := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if m := head.FindStringSubmatch(line); m != nil {
			cmd = m[1]
			out[cmd] = map[string]bool{}
			continue
		}
		if strings.HasPrefix(line, "#") {
			cmd = ""
		}
		if m := row.FindStringSubmatch(line); m != nil && cmd != "" {
			out[cmd][m[1]] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no configuration tables found", readme)
	}
	return out, nil
}

// SameFile reports an error when the two files differ (a copied file kept equal to its source).
func SameFile(a, b string) error {
	x, err := os.ReadFile(a)
	if err != nil {
		return err
	}
	y, err := os.ReadFile(b)
	if err != nil {
		return err
	}
	if !bytes.Equal(x, y) {
		return fmt.Errorf("%s differs from %s: copy it again", b, a)
	}
	return nil
}
