// Package webapp owns the browser app: a single page of plain JavaScript
// modules and CSS, embedded in the binary, that speaks the occase wire
// protocol over the same origin's WebSocket. It serves exactly two kinds of
// path: "/" (the page) and "/assets/..." (its files), so that it can share
// the root of a listener with the realtime engine (WebSocket upgrades) and
// the image server (two-segment paths), plus "/favicon.ico", which browsers
// ask for on their own, and "/sw.js", the service worker that shows push
// notifications. It has no build step.
package webapp

import (
	"bytes"
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

//go:embed static
var static embed.FS

// AssetPrefix is the only path prefix, besides "/", that Handler answers.
const AssetPrefix = "/assets/"

type file struct {
	body  []byte
	ctype string
	etag  string
}

// FaviconPath is answered 204: the page names its icon (/assets/icon.svg),
// and a browser that asks for the conventional path anyway gets a cheap,
// cacheable empty answer instead of an error in its console.
const FaviconPath = "/favicon.ico"

// ServiceWorkerPath is the service worker (push notifications). A service
// worker controls only the paths under its own folder, so it is served at
// the root, where its scope covers the whole app.
const ServiceWorkerPath = "/sw.js"

// Handler serves index.html at "/", the app's files under /assets/ and
// FaviconPath and ServiceWorkerPath, for GET and HEAD. Every other path or method is answered 404
// or 405, so a router may send it anything on "/" that is not a WebSocket
// upgrade.
func Handler() http.Handler {
	files := map[string]file{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = http.DetectContentType(body)
		}
		files[strings.TrimPrefix(p, "static")] = file{
			body:  body,
			ctype: ctype,
			etag:  `"` + hex.EncodeToString(sum[:8]) + `"`,
		}
		return nil
	})
	if err != nil {
		// The files are compiled in: failing to read them is a build defect.
		panic("webapp: read embedded files: " + err.Error())
	}
	return &handler{files: files}
}

type handler struct {
	files map[string]file
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Path
	switch {
	case name == FaviconPath:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=86400")
		w.WriteHeader(http.StatusNoContent)
		return
	case name == "/":
		name = "/index.html"
	case name == ServiceWorkerPath:
	case strings.HasPrefix(name, AssetPrefix):
	default:
		http.NotFound(w, r)
		return
	}
	f, ok := h.files[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", f.ctype)
	hd.Set("ETag", f.etag)
	// Asset names carry no version, so browsers revalidate every time; the
	// ETag makes that a 304.
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Content-Type-Options", "nosniff")
	switch name {
	case "/index.html":
		hd.Set("Content-Security-Policy", csp)
	case ServiceWorkerPath:
		// A worker runs under the policy of its own script: it loads
		// nothing, and may fetch only from this origin.
		hd.Set("Content-Security-Policy", "default-src 'self'")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}

// csp allows only this origin: its scripts, styles, images (blob: for the
// previews of photos being published), fetches, uploads and WebSocket
// ('self' covers ws:/wss: to the same host). A post can therefore never make
// the page load anything from elsewhere, even if a check in safe.js failed.
// worker-src: the service worker, /sw.js (what script-src allows anyway,
// said outright).
const csp = "default-src 'self'; img-src 'self' blob:; connect-src 'self'; " +
	"style-src 'self'; script-src 'self'; worker-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
