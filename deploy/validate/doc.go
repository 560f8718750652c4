// Package validate checks the deployment files offline: the kustomize overlays render and every
// object decodes strictly into its Kubernetes API type, envoy.yaml (and its SDS file) decode
// strictly into the Envoy v3 protos, and the deployment's promises hold as Rules over each
// overlay's Bundle (drain and grace periods, rollouts, autoscaling, memory, TLS, network
// policies, timeouts, broker sessions; deploy/README.md lists them), each with a broken variant
// in the tests that must fail it. It is its own module so that the Kubernetes and Envoy modules
// stay out of the meshcast module's graph.
package validate
