package webapp

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandlerPaths(t *testing.T) {
	h := Handler()
	tests := []struct {
		name, method, path string
		want               int
		ctype, contains    string
	}{
		{"index", "GET", "/", 200, "text/html", `src="/assets/app.js"`},
		{"index head", "HEAD", "/", 200, "text/html", ""},
		{"module", "GET", "/assets/app.js", 200, "javascript", "new Session"},
		{"style", "GET", "/assets/app.css", 200, "text/css", ":root"},
		{"index by name is not served", "GET", "/index.html", 404, "", ""},
		{"unknown asset", "GET", "/assets/nope.js", 404, "", ""},
		{"image path belongs to the image server", "GET", "/671772238154af7fce237c8a217d2cd2/aB3+x-9Qz.jpg", 404, "", ""},
		{"no traversal", "GET", "/assets/../webapp.go", 404, "", ""},
		{"post", "POST", "/", 405, "", ""},
		{"icon", "GET", "/assets/icon.svg", 200, "image/svg+xml", "<svg"},
		{"favicon answers empty, not an error", "GET", "/favicon.ico", 204, "", ""},
		{"favicon post", "POST", "/favicon.ico", 405, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.want {
				t.Fatalf("%s %s: status %d, want %d", tc.method, tc.path, rec.Code, tc.want)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.Contains(ct, tc.ctype) {
				t.Errorf("Content-Type %q, want it to contain %q", ct, tc.ctype)
			}
			if !strings.Contains(rec.Body.String(), tc.contains) {
				t.Errorf("body does not contain %q", tc.contains)
			}
		})
	}
}

func TestHandlerRevalidates(t *testing.T) {
	h := Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/assets/app.js", nil))
	etag := rec.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	req := httptest.NewRequest("GET", "/assets/app.js", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Fatalf("status %d, want 304", rec.Code)
	}
}
