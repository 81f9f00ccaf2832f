package webapp

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/occase/occase/wire"
)

// TestBrowserErrors checks that failures reach the person in plain words.
func TestBrowserErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := newFakeServer(t)
	shots := artifactDir(t, "errors")
	n := 0
	browser := startBrowser(t)
	a := newTab(t, browser, "A", 390, 844, shots, &n)
	a.do(chromedp.Navigate(srv.URL() + "/"))
	a.click("#signup-btn")

	// Wrong credentials.
	a.typeInto("#login-id", "999")
	a.typeInto("#login-password", "not-the-password")
	a.click("#login-btn")
	a.wait("bad credentials in words", hasText("#banner-text", "Wrong user id or password"))
	a.wait("still on the account screen", `!document.getElementById("account-view").hidden`)
	a.shot("bad-credentials")

	a.click("#register-btn")
	a.state("online")
	a.click("#tab-publish")

	// A file that is not an image.
	bogus := filepath.Join(t.TempDir(), "holiday.jpg")
	if err := os.WriteFile(bogus, []byte("this is not a picture"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.do(chromedp.SetUploadFiles(chromedp.CSS("#pub-photos"), []string{bogus}))
	a.wait("not an image in words", hasText("#banner-text", "“holiday.jpg” is not an image"))
	a.wait("no preview", `document.querySelectorAll("#pub-previews img").length === 0`)

	// Missing fields.
	a.click("#pub-submit")
	a.wait("what is missing", hasText("#pub-status", "Please give a title"))

	fill := func() {
		a.eval(`(() => { document.getElementById("publish-form").reset(); return "" })()`)
		a.typeInto("#pub-title", "Red folding bike")
		a.pickFirst("pub-loc")
		a.pickFirst("pub-prod")
		a.click("#pub-feat-1")
		a.typeInto("#pub-price", "90")
	}

	// The image server refuses the upload.
	srv.mu.Lock()
	srv.uploadStatus = http.StatusRequestEntityTooLarge
	srv.mu.Unlock()
	fill()
	a.do(chromedp.SetUploadFiles(chromedp.CSS("#pub-photos"), []string{writePhoto(t)}))
	a.wait("photo preview", `document.querySelectorAll("#pub-previews img").length === 1`)
	a.click("#pub-submit")
	a.wait("too large in words", hasText("#pub-status", "too large for the server"))
	a.shot("upload-too-large")

	srv.mu.Lock()
	srv.uploadStatus = http.StatusUnsupportedMediaType
	srv.mu.Unlock()
	a.click("#pub-submit")
	a.wait("not accepted in words", hasText("#pub-status", "not a JPEG, PNG or WebP image"))

	// The posting quota.
	srv.mu.Lock()
	srv.uploadStatus = 0
	srv.publishFail = wire.QuotaExceeded
	srv.mu.Unlock()
	a.click("#pub-submit")
	a.wait("quota in words", hasText("#pub-status", "reached your posting limit"))
	a.shot("quota")

	// The server goes away.
	srv.Stop(t)
	a.wait("unreachable in words", hasText("#conn-status", "Server unreachable"))
	a.shot("unreachable")
}
