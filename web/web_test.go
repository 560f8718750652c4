package web

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/meshcast/meshcast/core/mesh"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/meshcast/meshcast/web/webtest"
)

var update = flag.Bool("update", false, "rewrite test/testdata/mesh.json from core/mesh")

func TestHandler(t *testing.T) {
	h := Handler()
	index, err := fs.ReadFile(Assets(), "index.html")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, path string
		status             int
		contentType        string
		bodyHas            string
	}{
		{"root is index.html", "GET", "/", 200, "text/html; charset=utf-8", "<title>meshcast"},
		{"index.html by name", "GET", "/index.html", 200, "text/html; charset=utf-8", "<title>meshcast"},
		{"app.js", "GET", "/app.js", 200, "text/javascript; charset=utf-8", ""},
		{"app.css", "GET", "/app.css", 200, "text/css; charset=utf-8", ".leaflet-container"},
		{"head", "HEAD", "/app.js", 200, "text/javascript; charset=utf-8", ""},
		{"dot-dot stays inside", "GET", "/../app.js", 200, "text/javascript; charset=utf-8", ""},
		{"unknown file", "GET", "/nope.js", 404, "", ""},
		{"directory", "GET", "/assets", 404, "", ""},
		{"post", "POST", "/", 405, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
			if tc.contentType != "" && rec.Header().Get("Content-Type") != tc.contentType {
				t.Errorf("Content-Type %q, want %q", rec.Header().Get("Content-Type"), tc.contentType)
			}
			if tc.status == 200 && tc.method == "GET" && rec.Body.Len() == 0 {
				t.Errorf("empty body")
			}
			if tc.method == "HEAD" && rec.Body.Len() != 0 {
				t.Errorf("HEAD has a body of %d bytes", rec.Body.Len())
			}
			if !strings.Contains(rec.Body.String(), tc.bodyHas) {
				t.Errorf("body does not contain %q", tc.bodyHas)
			}
		})
	}
	t.Run("index.html is the embedded file and revalidated", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if !bytes.Equal(rec.Body.Bytes(), index) {
			t.Fatalf("/ is not dist/index.html")
		}
		if rec.Header().Get("Cache-Control") != "no-cache" {
			t.Errorf("Cache-Control %q, want no-cache", rec.Header().Get("Cache-Control"))
		}
	})
	t.Run("conditional GET", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/app.js", nil))
		etag := rec.Header().Get("ETag")
		if etag == "" {
			t.Fatal("no ETag")
		}
		req := httptest.NewRequest("GET", "/app.js", nil)
		req.Header.Set("If-None-Match", etag)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotModified {
			t.Fatalf("status %d with matching If-None-Match, want 304", rec.Code)
		}
	})
	t.Run("gzip when accepted", func(t *testing.T) {
		for _, tc := range []struct {
			accept string
			gzip   bool
		}{
			{"", false},
			{"gzip", true},
			{"br, gzip;q=0.8, deflate", true},
			{"GZIP", true},
			{"gzip;q=0", false},
			{"gzip; q=0.000", false},
			{"identity", false},
		} {
			req := httptest.NewRequest("GET", "/app.js", nil)
			req.Header.Set("Accept-Encoding", tc.accept)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Header().Get("Vary") != "Accept-Encoding" {
				t.Errorf("%q: Vary %q", tc.accept, rec.Header().Get("Vary"))
			}
			if got := rec.Header().Get("Content-Encoding") == "gzip"; got != tc.gzip {
				t.Fatalf("%q: gzip %v, want %v", tc.accept, got, tc.gzip)
			}
			body := rec.Body.Bytes()
			if tc.gzip {
				zr, err := gzip.NewReader(rec.Body)
				if err != nil {
					t.Fatal(err)
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			}
			want, _ := fs.ReadFile(Assets(), "app.js")
			if !bytes.Equal(body, want) {
				t.Fatalf("%q: body is not app.js", tc.accept)
			}
		}
	})
	t.Run("every stylesheet reference resolves", func(t *testing.T) {
		css, err := fs.ReadFile(Assets(), "app.css")
		if err != nil {
			t.Fatal(err)
		}
		for _, ref := range cssURLs(string(css)) {
			if strings.HasPrefix(ref, "data:") || strings.HasPrefix(ref, "#") {
				continue
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/"+ref, nil))
			if rec.Code != 200 {
				t.Errorf("app.css refers to %s: status %d", ref, rec.Code)
			}
		}
	})
}

// cssURLs returns the targets of url(...) in a stylesheet.
func cssURLs(css string) []string {
	var out []string
	for {
		i := strings.Index(css, "url(")
		if i < 0 {
			return out
		}
		css = css[i+4:]
		j := strings.IndexByte(css, ')')
		if j < 0 {
			return out
		}
		out = append(out, strings.Trim(css[:j], `"' `))
		css = css[j:]
	}
}

// meshCase is one entry of test/testdata/mesh.json: the node tests check the page's mesh math
// (client/mesh.ts) against these codes and covers, computed here by core/mesh.
type meshCase struct {
	Name    string   `json:"name"`
	Lat     float64  `json:"lat"`
	Lon     float64  `json:"lon"`
	RadiusM float64  `json:"radiusM"`
	Code    string   `json:"code"`
	Cover   []string `json:"cover"`
}

var meshPoints = []meshCase{
	{Name: "Tokyo Station", Lat: 35.681236, Lon: 139.767125, RadiusM: 1000},
	{Name: "Tokyo Metropolitan Government", Lat: 35.689521, Lon: 139.691704, RadiusM: 500},
	{Name: "on a cell corner", Lat: 35.675, Lon: 139.7625, RadiusM: 1500},
	{Name: "Shinjuku station", Lat: 35.690921, Lon: 139.700258, RadiusM: 3000},
	{Name: "Haneda", Lat: 35.549393, Lon: 139.779839, RadiusM: 2000},
	{Name: "Sapporo", Lat: 43.068661, Lon: 141.350755, RadiusM: 800},
	{Name: "Naha", Lat: 26.2124, Lon: 127.6792, RadiusM: 300},
	{Name: "zero radius", Lat: 35.658581, Lon: 139.745433, RadiusM: 0},
}

func TestMeshFixture(t *testing.T) {
	var want []meshCase
	for _, p := range meshPoints {
		c, err := mesh.Third(p.Lat, p.Lon)
		if err != nil {
			t.Fatal(err)
		}
		cover, err := mesh.Cover(p.Lat, p.Lon, p.RadiusM)
		if err != nil {
			t.Fatal(err)
		}
		p.Code = c.String()
		for _, m := range cover {
			p.Cover = append(p.Cover, m.String())
		}
		want = append(want, p)
	}
	b, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	const file = "test/testdata/mesh.json"
	if *update {
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b) {
		t.Fatalf("%s is not what core/mesh computes; run go test ./web -run TestMeshFixture -update", file)
	}
}

// TestNode runs the client's node tests (node --test, via test.mjs: type check, bundle, run) and
// checks that the committed dist is what build.mjs builds from the sources. It installs the npm
// packages (npm ci) when node_modules is missing or older than package-lock.json.
func TestNode(t *testing.T) {
	if err := webtest.EnsureNodeModules(t.Context(), "."); err != nil {
		t.Fatal(err)
	}
	t.Run("node tests", func(t *testing.T) {
		out, err := run(t, "node", "test.mjs")
		if err != nil {
			t.Fatalf("node tests failed: %v\n%s", err, out)
		}
		t.Logf("%s", tail(out, 12))
	})
	t.Run("dist is up to date", func(t *testing.T) {
		dir := t.TempDir()
		if out, err := run(t, "node", "build.mjs", "--outdir", dir); err != nil {
			t.Fatalf("build: %v\n%s", err, out)
		}
		built := listFiles(t, os.DirFS(dir))
		committed := listFiles(t, Assets())
		for name, data := range built {
			if c, ok := committed[name]; !ok {
				t.Errorf("dist/%s is missing: run go tool task web", name)
			} else if !bytes.Equal(c, data) {
				t.Errorf("dist/%s differs from a fresh build: run go tool task web", name)
			}
		}
		for name := range committed {
			if _, ok := built[name]; !ok {
				t.Errorf("dist/%s is not built any more: run go tool task web", name)
			}
		}
	})
}

func run(t *testing.T, name string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1", "FORCE_COLOR=0")
	return cmd.CombinedOutput()
}

func listFiles(t *testing.T, fsys fs.FS) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		files[p] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestGeneratedTSMatchesProto checks that the TypeScript in client/gen was generated from the
// current .proto files (regenerate with go tool task web): protoc-gen-es embeds each file's
// descriptor, which must equal the Go package's, up to what protoc-gen-es leaves out.
func TestGeneratedTSMatchesProto(t *testing.T) {
	for _, tc := range []struct {
		ts string
		fd protoreflect.FileDescriptor
	}{
		{"client/gen/meshcast/v1/rider_pb.ts", meshcastv1.File_meshcast_v1_rider_proto},
		{"client/gen/meshcast/v1/telemetry_pb.ts", meshcastv1.File_meshcast_v1_telemetry_proto},
	} {
		t.Run(tc.ts, func(t *testing.T) {
			src, err := os.ReadFile(tc.ts)
			if err != nil {
				t.Fatal(err)
			}
			m := regexp.MustCompile(`fileDesc\("([A-Za-z0-9+/_-]+)"`).FindSubmatch(src)
			if m == nil {
				t.Fatal("no fileDesc(...) in the generated file")
			}
			raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(string(m[1]), "="))
			if err != nil {
				t.Fatal(err)
			}
			got := &descriptorpb.FileDescriptorProto{}
			if err := proto.Unmarshal(raw, got); err != nil {
				t.Fatal(err)
			}
			want := protodesc.ToFileDescriptorProto(tc.fd)
			for _, fd := range []*descriptorpb.FileDescriptorProto{got, want} {
				fd.SourceCodeInfo = nil
				fd.Dependency = nil // protoc-gen-es passes imports as fileDesc's second argument
				for _, msg := range fd.MessageType {
					for _, f := range msg.Field {
						f.JsonName = nil
					}
				}
			}
			if !proto.Equal(got, want) {
				t.Fatalf("%s is not generated from the current %s: run go tool task web\n got: %v\nwant: %v", tc.ts, tc.fd.Path(), got, want)
			}
		})
	}
}

// BenchmarkHandler serves app.js gzipped (the page's largest request) from memory.
func BenchmarkHandler(b *testing.B) {
	h := Handler()
	req := httptest.NewRequest("GET", "/app.js", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}
