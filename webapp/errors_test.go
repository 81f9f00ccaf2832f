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
	// Issue 15: the red "Wrong user id or password" does not stay.
	a.wait("the stale error cleared", `document.getElementById("banner").hidden`)
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
	a.wait("what is missing", hasText("#pub-title-err", "Please give a title"))

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

	// The image server's newer answers (docs/protocol.md "img role,
	// HTTP"): an expired name is asked for again and retried once; a busy
	// server is retried after its Retry-After; a too slow upload is an error
	// in words.
	srv.mu.Lock()
	srv.uploadStatus = 0
	srv.uploadSeq = []string{"410 name_expired", "503 busy 1"}
	srv.uploads, srv.filenames = 0, 0
	srv.mu.Unlock()
	a.click("#pub-submit")
	a.wait("published after a renewed name and a busy answer", hasText("#pub-status", "Published"))
	srv.mu.Lock()
	uploads, names := srv.uploads, srv.filenames
	srv.mu.Unlock()
	if uploads != 3 || names != 2 {
		t.Errorf("uploads %d (want 3: expired, busy, stored), filenames %d (want 2)", uploads, names)
	}
	srv.mu.Lock()
	// Chromium itself resends a request answered 408 on a reused
	// connection, so the fake answers every upload so.
	srv.uploadStatus, srv.uploadBody = http.StatusRequestTimeout, "too_slow"
	srv.mu.Unlock()
	fill()
	a.do(chromedp.SetUploadFiles(chromedp.CSS("#pub-photos"), []string{writePhoto(t)}))
	a.wait("photo preview", `document.querySelectorAll("#pub-previews img").length === 1`)
	a.click("#pub-submit")
	a.wait("too slow in words", hasText("#pub-status", "connection is too slow"))
	a.shot("upload-too-slow")

	// A busy image server: while the app waits to try again, Remove says
	// why it cannot, and Cancel stops it; nothing is published.
	srv.mu.Lock()
	srv.uploadStatus, srv.uploadBody = 0, ""
	srv.uploadSeq = []string{"503 busy 20"}
	srv.mu.Unlock()
	a.click("#pub-submit")
	a.wait("waiting on a busy server", hasText("#pub-status", "busy; trying photo 1 again in 20 s"))
	a.click(`#pub-previews button`)
	a.wait("Remove says why", hasText("#pub-status", "cannot be removed while the photos upload"))
	a.wait("Cancel offered", `!document.getElementById("pub-cancel").hidden`)
	a.shot("busy-cancel-offered")
	a.click("#pub-cancel")
	a.wait("cancelled", hasText("#pub-status", "Upload cancelled. Nothing was published"))
	a.wait("the photo kept, Remove works again", `document.querySelectorAll("#pub-previews img").length === 1`)
	a.click(`#pub-previews button`)
	a.wait("removed", `document.querySelectorAll("#pub-previews img").length === 0`)

	// The posting limits: when posting is possible again is said.
	srv.mu.Lock()
	srv.uploadStatus, srv.uploadBody = 0, ""
	srv.publishFail = wire.QuotaExceeded
	srv.publishDetail = "10 posts per 24h0m0s; the next is possible in 5400 s"
	srv.mu.Unlock()
	// A notice of a publish just before (it shows 5 s) is not true of
	// this one: the refusal takes it away.
	a.eval(`(() => { const n = document.getElementById("notice"); n.textContent = "Your listing is published."; n.hidden = false; return ""; })()`)
	a.click("#pub-submit")
	a.wait("quota in words, with when", hasText("#pub-status", "You can post again in 1 hour 30 min (at "))
	if !a.ok(`document.getElementById("notice").hidden`) {
		t.Errorf("beside the refusal, the notice still reads %q", a.eval(`document.getElementById("notice").textContent`))
	}
	a.shot("quota")
	srv.mu.Lock()
	srv.publishFail = wire.PostsFull
	srv.publishDetail = ""
	srv.mu.Unlock()
	a.click("#pub-submit")
	a.wait("posts_full in words", hasText("#pub-status", "as many listings as it can"))

	// The server goes away.
	srv.Stop(t)
	a.wait("offline in words", hasText("#conn-status", "Offline · retrying in")+` && document.getElementById("conn-status").title.includes("Server unreachable")`)
	a.shot("unreachable")
}
