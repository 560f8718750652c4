package validate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	// The typed_config extensions envoy.yaml uses: registered so that protojson can resolve
	// their "@type" (an unregistered type is an error, as in Envoy).
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_stats/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/formatter/req_without_query/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/cgroup_memory/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/fixed_heap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// SDS decodes a path-based SDS file (a DiscoveryResponse: "resources", each an Any, normally
// envoy.extensions.transport_sockets.tls.v3.Secret) strictly and validates every resource as
// Envoy would. (The DiscoveryResponse type itself would pull gRPC into this module.)
func SDS(path string, y []byte) ([]proto.Message, error) {
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(j, &top); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var raw []json.RawMessage
	for k, v := range top {
		switch k {
		case "resources":
			if err := json.Unmarshal(v, &raw); err != nil {
				return nil, fmt.Errorf("%s: resources: %w", path, err)
			}
		case "version_info", "type_url", "nonce":
		default:
			return nil, fmt.Errorf("%s: unknown field %q of a DiscoveryResponse", path, k)
		}
	}
	var out []proto.Message
	for i, r := range raw {
		var a anypb.Any
		if err := protojson.Unmarshal(r, &a); err != nil {
			return nil, fmt.Errorf("%s: resource %d: %w", path, i, err)
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("%s: resource %d: %w", path, i, err)
		}
		if err := validateDeep(m); err != nil {
			return nil, fmt.Errorf("%s: resource %d: %w", path, i, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// Envoy reads an Envoy bootstrap file (YAML), decodes it strictly into the v3 Bootstrap proto
// (unknown fields and unknown "@type"s are errors, as `envoy --mode validate` would report) and
// runs the protoc-gen-validate rules of every message, including those inside typed_config.
func Envoy(path string) (*bootstrapv3.Bootstrap, error) {
	y, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return EnvoyBytes(path, y)
}

// EnvoyBytes is Envoy for a file's contents (e.g. the rendered envoy-config ConfigMap's).
func EnvoyBytes(path string, y []byte) (*bootstrapv3.Bootstrap, error) {
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(j, &b); err != nil {
		return nil, fmt.Errorf("%s: decode into envoy.config.bootstrap.v3.Bootstrap: %w", path, err)
	}
	if err := validateDeep(&b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &b, nil
}

// validateDeep runs ValidateAll on m and on every message packed in an Any below it (PGV's own
// recursion stops at Any).
func validateDeep(m proto.Message) error {
	var errs []error
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.ProtoReflect().Descriptor().FullName(), err))
		}
	}
	errs = append(errs, walkAnys(m.ProtoReflect())...)
	return errors.Join(errs...)
}

func walkAnys(m protoreflect.Message) []error {
	var errs []error
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return []error{fmt.Errorf("any %s: %w", a.GetTypeUrl(), err)}
		}
		if err := validateDeep(inner); err != nil {
			errs = append(errs, err)
		}
		return errs
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := range l.Len() {
				errs = append(errs, walkAnys(l.Get(i).Message())...)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				errs = append(errs, walkAnys(mv.Message())...)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			errs = append(errs, walkAnys(v.Message())...)
		}
		return true
	})
	return errs
}
