package validate

import (
	"os"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestChartValues parses the production values of the Redis Cluster chart and the EMQX custom
// resource (their schemas belong to the chart and the operator, so only the parts meshcast relies
// on are checked).
func TestChartValues(t *testing.T) {
	var redis struct {
		Cluster struct {
			Nodes    int `json:"nodes"`
			Replicas int `json:"replicas"`
		} `json:"cluster"`
		UsePassword bool `json:"usePassword"`
	}
	read(t, "../redis/values.yaml", &redis)
	if redis.Cluster.Nodes != 6 || redis.Cluster.Replicas != 1 || !redis.UsePassword {
		t.Errorf("redis values: %+v, want 6 nodes, 1 replica each, a password", redis)
	}
	var emqx struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			Config struct {
				Data string `json:"data"`
			} `json:"config"`
			CoreTemplate struct {
				Spec struct {
					Replicas int `json:"replicas"`
				} `json:"spec"`
			} `json:"coreTemplate"`
		} `json:"spec"`
	}
	read(t, "../mqtt/emqx.yaml", &emqx)
	if emqx.APIVersion != "apps.emqx.io/v2beta1" || emqx.Kind != "EMQX" || emqx.Spec.CoreTemplate.Spec.Replicas < 3 || emqx.Spec.Config.Data == "" {
		t.Errorf("emqx: %+v", emqx)
	}
}

func read(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
