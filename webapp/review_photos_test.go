package webapp

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// The operator page shows the photo of a listing hidden pending review,
// which the img node refuses to everyone else (404 hidden), through a
// review URL (docs/security.md "Photos of hidden and removed listings"),
// and still after its seller deleted the listing (the copy kept for
// review): against the real binary on a real redis-server, in chromium,
// at desktop size. The CSP stays img-src 'self' <public>.
func TestBrowserAdminPageHiddenPhotos(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	chromiumPath(t)
	token := strings.Repeat("9", 64)
	s, admin, _ := newServeBinaryWithAdmin(t, token, "--public-url", "{public}/", "--auto-hide-reports", "2", "--auto-hide-min-age", "0s")
	if !s.hasFlag(t, "--auto-hide-reports") || !s.hasFlag(t, "--public-url") {
		t.Skip("this server does not hide reported listings or show photos")
	}
	public := "http://" + s.addr
	r, err := http.Get(admin + "/admin/")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "img-src 'self' "+public+";") {
		t.Fatalf("the page's CSP %q", csp)
	}

	seller := dialProto(t, s.URL())
	seller.mustOK(`{"cmd":"register"}`)
	post, photo, refused := hiddenPhotoListing(t, s, seller, "Camera", "Deposit by wire")

	shots := shotDir(t, "admin-hidden-photos")
	n := 0
	browser := startBrowser(t)
	card := `[data-testid=report][data-post="` + post + `"]`
	look := func(name, when string) {
		tab := newTab(t, browser, name, 1280, 800, shots, &n)
		tab.do(chromedp.Navigate(admin + "/admin/"))
		tab.typeInto("#token", token)
		tab.click("#token-save")
		tab.wait("the camera's report", `document.querySelector(`+js(card)+`) !== null`)
		tab.wait("the hidden photo loaded ("+when+")", `(() => { const i = document.querySelector(`+js(card+` [data-testid=report-photo]`)+`); return i !== null && i.complete && i.naturalWidth > 0; })()`)
		got := tab.eval(`(() => { const i = document.querySelector(` + js(card+` [data-testid=report-photo]`) + `); return i.src + " " + i.naturalWidth + "x" + i.naturalHeight + " " + i.parentElement.href; })()`)
		src, rest, _ := strings.Cut(got, " ")
		if !strings.HasPrefix(src, public+"/"+photo+"?review=") || !strings.HasPrefix(rest, "200x150 "+src) {
			t.Fatalf("%s: the photo reads %q, want a review URL of %s, 200x150, linked", when, got, photo)
		}
		tab.shot(when)
		tab.noConsoleErrors(when)
	}
	look("operator-hidden", "hidden")
	refused("after the page looked")

	// Deleted by its seller: the copy kept for review still shows it.
	seller.mustOK(`{"cmd":"delete","id":` + post + `}`)
	refused("deleted by its seller")
	look("operator-deleted", "deleted-by-author")
}
