package webapp

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// The seller's phone shows the photo of its own listing hidden pending
// review, which the img node refuses to everyone else (404 hidden):
// my_posts hands the author review tokens of its photos (docs/protocol.md
// "The author's photos of a listing under review"), and the app asks for
// the photo with "?review=<token>", in My listings and in the listing's
// own view. Against the real binary on a real redis-server, in chromium,
// at phone size. The photo stays refused without a token.
func TestBrowserOwnHiddenPhotos(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	chromiumPath(t)
	s := newServeBinaryWith(t, "--auto-hide-reports", "2", "--auto-hide-min-age", "0s")
	if !s.hasFlag(t, "--auto-hide-reports") || !s.hasFlag(t, "--image-key") {
		t.Skip("this server does not hide reported listings or take photos")
	}
	seller := dialProto(t, s.URL())
	reg := seller.mustOK(`{"cmd":"register"}`)
	id, pw := fmt.Sprint(reg["id"]), fmt.Sprint(reg["password"])
	post, photo, refused := hiddenPhotoListing(t, s, seller, "Violet camera", "Barely used")
	seller.c.CloseNow()

	shots := shotDir(t, "own-hidden-photos")
	n := 0
	browser := startBrowser(t)
	b := newTab(t, browser, "seller-phone", 390, 844, shots, &n)
	// The refresh before the tokens expire (9.5 minutes after my_posts)
	// runs 1.1 s after instead, twice at most: a later second, so fresh
	// tokens differ.
	const soon = `(() => { const st = window.setTimeout; window.setTimeout = function (f, ms, ...a) {
	  if (ms > 540000 && ms <= 600000 && (window.__rr = (window.__rr || 0) + 1) <= 2) ms = 1100;
	  return st.call(this, f, ms, ...a); }; })();`
	if _, err := chromedp.Call(b.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: soon}); err != nil {
		t.Fatal(err)
	}
	b.do(chromedp.Navigate(s.URL() + "/"))
	b.click("#signup-btn")
	b.typeInto("#login-id", id)
	b.typeInto("#login-password", pw)
	b.click("#login-btn")
	b.state("online")
	b.click("#tab-mine")
	card := `#mine-list [data-post-id="` + post + `"]`
	b.wait("the camera in My listings, under review", `document.querySelector(`+js(card+` [data-testid=under-review]`)+`) !== null`)
	loaded := func(sel string) string {
		return `(() => { const i = document.querySelector(` + js(sel) + `); return i !== null && i.complete && i.naturalWidth > 0; })()`
	}
	b.wait("the hidden photo loaded in My listings", loaded(card+` [data-testid=post-photo]`))
	got := b.eval(`(() => { const i = document.querySelector(` + js(card+` [data-testid=post-photo]`) + `); return i.getAttribute("src") + " " + i.naturalWidth + "x" + i.naturalHeight; })()`)
	if src, size, _ := strings.Cut(got, " "); !strings.HasPrefix(src, "/"+photo+"?review=") || size != "200x150" {
		t.Fatalf("My listings' photo reads %q, want a review URL of %s, 200x150", got, photo)
	}
	// The summary does not offer publishes the server would refuse
	// (under_review).
	b.wait("the summary says publishing waits for the review", hasText("#mine-summary", "you can publish again once a moderator has looked at it"))
	if got := b.eval(`document.querySelector("#mine-summary").textContent`); strings.Contains(got, "more right now") {
		t.Fatalf("My listings' summary offers publishes while a listing is under review: %q", got)
	}
	b.shot("my-listings")
	// Fresh tokens before these expire: my_posts again, the card built
	// again with a new review URL that loads.
	first, _, _ := strings.Cut(got, " ")
	b.wait("a fresh review URL loaded", `(() => { const i = document.querySelector(`+js(card+` [data-testid=post-photo]`)+`);
	  return i !== null && i.getAttribute("src") !== `+js(first)+` && i.getAttribute("src").startsWith(`+js("/"+photo+"?review=")+`) && i.complete && i.naturalWidth > 0; })()`)
	if rr := b.eval(`String(window.__rr || 0)`); rr == "0" {
		t.Fatal("no refresh was scheduled")
	}

	// The listing's own view: the gallery and the full-size photo.
	b.click(card + ` [data-testid=post-link]`)
	b.wait("the hidden photo loaded in the gallery", loaded(`[data-testid=gallery] img`))
	if src := b.eval(`document.querySelector("[data-testid=gallery] img").getAttribute("src")`); !strings.HasPrefix(src, "/"+photo+"?review=") {
		t.Fatalf("the gallery's photo %q, want a review URL", src)
	}
	b.click(`[data-testid=gallery-photo]`)
	b.wait("the full-size photo loaded", loaded(`#photo-full`))
	b.shot("full-size")
	b.noConsoleErrors("own hidden photos")
	refused("after the seller looked")
}

// Review tokens as the app reads them (docs/protocol.md "The author's
// photos of a listing under review").
func TestReviewTokenChecks(t *testing.T) {
	tok := "1900000000." + strings.Repeat("ab", 32)
	jsChecks(t, []struct{ name, js string }{
		{"the author's copy keeps tokens of the right shape, one per photo", `
const tok = ` + js(tok) + `;
const p = safe.post({id: 5, from: "1", body: '{"title":"Cam","images":["0123456789abcdef0123456789abcdef/a.jpg","0123456789abcdef0123456789abcdef/b.jpg","0123456789abcdef0123456789abcdef/c.jpg"]}',
  under_review: true, images_review: [tok, "1.2", 7, tok, tok]});
if (S(p.review) !== S([tok, "", "", tok, tok].slice(0, 4))) return "tokens " + S(p.review);
// Stored by the app and read back.
const again = safe.post(JSON.parse(JSON.stringify(p)));
if (S(again.review) !== S(p.review)) return "stored " + S(again.review);
return "";`},
		{"no tokens without under_review", `
const p = safe.post({id: 5, from: "1", body: '{"images":["0123456789abcdef0123456789abcdef/a.jpg"]}', images_review: [` + js(tok) + `]});
return p.review.length === 0 ? "" : "kept " + S(p.review);`},
		{"an array of something else is no tokens", `
const p = safe.post({id: 5, from: "1", body: "{}", under_review: true, images_review: "x"});
return p.review.length === 0 ? "" : "kept " + S(p.review);`},
	})
}
