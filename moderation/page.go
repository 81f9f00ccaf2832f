package moderation

import (
	"embed"
	"net/http"
)

// The operator page (GET /admin/): one HTML file, its script and its
// style, embedded, nothing fetched from elsewhere. Everything it shows
// from users is set as text (textContent), and the Content-Security-Policy
// allows no inline script, no other origin and no framing, so a post or
// report that carries markup stays text.

//go:embed page
var page embed.FS

// pageCSP: only this origin's own script and style, fetches to itself;
// images from itself and, with --public-url, from the public site's
// origin (imgOrigin, from ParsePublicURL: never from a request).
func pageCSP(imgOrigin string) string {
	img := "img-src 'self'"
	if imgOrigin != "" {
		img += " " + imgOrigin
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " + img + "; " +
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

var pageTypes = map[string]string{
	"index.html":  "text/html; charset=utf-8",
	"admin.js":    "text/javascript; charset=utf-8",
	"admin.css":   "text/css; charset=utf-8",
	"favicon.svg": "image/svg+xml",
}

func (hd *Handler) pageHandler(name string) http.Handler {
	b, err := page.ReadFile("page/" + name)
	if err != nil {
		panic("moderation: page file missing from the build: " + name)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		closeUnread(w, r)
		h := w.Header()
		h.Set("Content-Type", pageTypes[name])
		h.Set("Content-Security-Policy", hd.csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		w.Write(b)
	})
}
