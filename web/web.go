// Package web owns the browser side of meshcast: the TypeScript client library (web/client: one
// watch() API over WebSocket, SSE and gRPC-Web with reconnects and a vehicle-set helper) and the
// live map page (web/app, Leaflet with local GeoJSON layers only). Both are bundled by esbuild into
// web/dist, which is committed and embedded here, so the meshcast binary serves the page without
// Node at run time. `go tool task web` rebuilds dist (npm ci, buf generate, node build.mjs).
//
// The page expects, on the origin that serves it: ./zones.geojson (the zones FeatureCollection,
// properties {index,name,kind}), and the rider API of API.md §3 at /v1/ws, /v1/sse and
// /meshcast.v1.RiderService/Watch (gRPC-Web).
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed dist
var dist embed.FS

// Assets returns the built page (index.html, app.js, app.css and Leaflet's images) as a file
// system rooted at dist/.
func Assets() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic("web: embedded dist missing: " + err.Error()) // cannot happen: dist is embedded
	}
	return sub
}

// contentTypes fixes the types of the asset kinds the page uses, independent of the host's
// mime tables.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".png":  "image/png",
	".svg":  "image/svg+xml",
	".json": "application/json",
	".map":  "application/json",
}

// asset is one embedded file ready to serve, with its gzip encoding when that is smaller.
type asset struct {
	data, gz       []byte
	contentType    string
	etag, gzipETag string
}

// compress returns data gzipped at the best level, or nil when that does not save a tenth.
func compress(data []byte) []byte {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression) // the level is valid
	_, _ = zw.Write(data)                                  // bytes.Buffer does not fail
	_ = zw.Close()
	if b.Len() > len(data)*9/10 {
		return nil
	}
	return b.Bytes()
}

// acceptsGzip reports whether a request's Accept-Encoding allows gzip (q=0 refuses it).
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q=")
		return !ok || strings.Trim(q, "0.") != ""
	}
	return false
}

// Handler serves the embedded page: index.html at "/" (and "/index.html"), the other assets by
// name, with their content types and strong ETags (conditional GETs answer 304), gzipped for
// clients that accept it (compressed once, here); anything else is 404, methods other than GET
// and HEAD 405. Mount it at the root of the origin that also serves
// the rider API, or under a prefix with http.StripPrefix (the page uses relative URLs for its
// assets and zones.geojson).
func Handler() http.Handler {
	assets := map[string]*asset{}
	err := fs.WalkDir(Assets(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(Assets(), name)
		if err != nil {
			return err
		}
		ct := contentTypes[path.Ext(name)]
		if ct == "" {
			ct = mime.TypeByExtension(path.Ext(name))
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(data)
		tag := hex.EncodeToString(sum[:12])
		a := &asset{data: data, contentType: ct, etag: `"` + tag + `"`}
		if !strings.HasPrefix(ct, "image/png") {
			if a.gz = compress(data); a.gz != nil {
				a.gzipETag = `"` + tag + `-gz"`
			}
		}
		assets[name] = a
		return nil
	})
	if err != nil {
		panic("web: reading embedded dist: " + err.Error()) // cannot happen: dist is embedded
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name == "" {
			name = "index.html"
		}
		a := assets[name]
		if a == nil {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("X-Content-Type-Options", "nosniff")
		if name == "index.html" {
			h.Set("Cache-Control", "no-cache")
		}
		body, etag := a.data, a.etag
		if a.gz != nil {
			h.Add("Vary", "Accept-Encoding")
			if acceptsGzip(r) {
				body, etag = a.gz, a.gzipETag
				h.Set("Content-Encoding", "gzip")
			}
		}
		h.Set("ETag", etag)
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(body))
	})
}
