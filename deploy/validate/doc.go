// Package validate checks the deployment files offline: the kustomize overlays render and every
// object decodes strictly into its Kubernetes API type, and envoy.yaml decodes strictly into the
// Envoy v3 bootstrap proto. It is its own module so that the Kubernetes and Envoy modules stay out
// of the meshcast module's graph.
package validate
