package webapp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
)

// The operator page (GET /admin/ on the admin listener) of the real
// binary on a real Redis, in headless chromium at phone and desktop size:
// it is served with a strict Content-Security-Policy; the operator pastes
// the token, sees the review queue with a report whose text is markup
// (shown as text, never run), removes that post with a reason and a
// note (the seller's subscription hears post_deleted, and the seller's
// session, which asked for notices, gets the notice with both; a note
// over 280 bytes turns Confirm off), bans the author of another, finds
// the ban in the Bans view at both sizes and unbans (the seller's
// session closed with 4008 at the ban; a login is let in after).
func TestBrowserAdminPage(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	chromiumPath(t)
	const token = "browser-test-token-0123456789abcdef0123"
	// A named token: the Log view says who acted.
	s, admin, _ := newServeBinaryWithAdmin(t, "mara "+token)
	if !s.hasFlag(t, "--admin-token-file") {
		t.Skip("this server has no moderation API")
	}

	// The page's headers: nothing inline runs, nothing frames it.
	for _, p := range []string{"/admin/", "/admin/admin.js"} {
		r, err := http.Get(admin + p)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		csp := r.Header.Get("Content-Security-Policy")
		if r.StatusCode != 200 || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
			!strings.Contains(csp, "frame-ancestors 'none'") || r.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("GET %s: %d, headers %v", p, r.StatusCode, r.Header)
		}
	}
	if r, err := http.Get(s.URL() + "/admin/"); err == nil {
		r.Body.Close()
		if r.StatusCode == 200 && r.Header.Get("Content-Security-Policy") != "" {
			t.Fatalf("the public listener serves the operator page")
		}
	}

	seller := dialProto(t, s.URL())
	reg := seller.mustOK(`{"cmd":"register"}`)
	sellerID, sellerPW := fmt.Sprint(reg["id"]), fmt.Sprint(reg["password"])
	publish := func(title string) string {
		pub := seller.mustOK(`{"cmd":"publish","items":[{"body":"{\"title\":\"` + title + `\",\"msg\":\"Barely used\"}","to":[[[0,0,0]],[[0,0,0]]],"features":0,"range_values":[120,2020,0]}]}`)
		return fmt.Sprint(pub["id"])
	}
	bike := publish("Blue city bike")
	lamp := publish("Desk lamp")
	seller.mustOK(`{"cmd":"subscribe","channels":[[],[]],"last_post_id":0,"deletions":true}`)
	seller.mustOK(`{"cmd":"notices"}`) // opts in: pushed notices from now on
	other := dialProto(t, s.URL())
	other.mustOK(`{"cmd":"register"}`)
	const hostile = `<img src=x onerror="window.pwned=1"><b>bold</b>`
	other.mustOK(`{"cmd":"report","id":` + bike + `,"reason":"scam","text":` + js(hostile) + `}`)
	third := dialProto(t, s.URL())
	third.mustOK(`{"cmd":"register"}`)
	third.mustOK(`{"cmd":"report","id":` + bike + `,"reason":"scam","text":"Wants a deposit first"}`)
	third.mustOK(`{"cmd":"report","id":` + lamp + `,"reason":"spam","text":"Posted ten times"}`)

	shots := shotDir(t, "admin-page")
	n := 0
	browser := startBrowser(t)
	ph := newTab(t, browser, "operator-phone", 390, 844, shots, &n)
	ph.do(chromedp.Navigate(admin + "/admin/"))
	ph.wait("the token form", `!document.getElementById("signin").hidden`)
	ph.shot("token")
	ph.typeInto("#token", "not-the-token-not-the-token-not-the-token")
	ph.click("#token-save")
	ph.wait("the refusal", hasText("#status", "refused the token"))
	ph.shot("refused")
	ph.consoleErrors() // the refusal's 401, on purpose
	ph.typeInto("#token", token)
	ph.click("#token-save")
	card := `[data-testid=report][data-post="` + bike + `"]`
	ph.wait("the bike's report", `document.querySelector(`+js(card)+`) !== null`)
	ph.wait("the queue summary", hasText("#queue-summary", "Review queue: 2 of at most 5000 reported posts"))
	if got := ph.eval(`document.getElementById("photos-off").hidden + "|" + document.getElementById("photos-off").textContent`); !strings.HasPrefix(got, "false|") || !strings.Contains(got, "--public-url") {
		t.Fatalf("without --public-url the page does not say how to see photos: %q", got)
	}
	if got := ph.eval(`String(document.querySelectorAll("[data-testid=report-photos], [data-testid=report-open]").length)`); got != "0" {
		t.Fatalf("without --public-url the page shows %s photo boxes or links", got)
	}
	if got := ph.eval(`[...document.querySelectorAll(` + js(card+` [data-testid=report-text]`) + `)].map(e => e.textContent).join("|")`); !strings.Contains(got, hostile) {
		t.Fatalf("the report texts read %q, want the markup shown as text %q", got, hostile)
	}
	if got := ph.eval(`String(document.querySelectorAll("#reports img, #reports b").length) + ":" + String(window.pwned)`); got != "0:undefined" {
		t.Fatalf("markup from a report was parsed (elements:window.pwned = %s)", got)
	}
	if got := ph.eval(`document.querySelector(` + js(card+` [data-testid=report-meta]`) + `).textContent`); !strings.Contains(got, "2 reporters") || !strings.Contains(got, "author "+sellerID) {
		t.Fatalf("the card's line: %q", got)
	}
	if sessionToken := ph.eval(`sessionStorage.getItem("occase-admin-token") || ""`); sessionToken != token {
		t.Fatalf("the token in sessionStorage: %q", sessionToken)
	}
	if w := ph.eval(`String(document.documentElement.scrollWidth)`); w != "390" {
		t.Fatalf("the page is %s px wide at phone size, want 390 (no sideways scroll)", w)
	}
	ph.shot("queue")
	ph.click(card + ` [data-action=remove]`)
	ph.wait("the confirmation", `document.getElementById("confirm").open && !document.getElementById("remove-fields").hidden`)
	if got := ph.eval(`[document.getElementById("remove-tell").checked, document.getElementById("remove-reason").value, document.getElementById("ban-fields").hidden].join()`); got != "true,scam,true" {
		t.Fatalf("the remove dialog opens with (tell, reason, ban fields hidden) %s, want true,scam,true (the reporters' reason)", got)
	}
	ph.eval(`(() => { const n = document.getElementById("remove-note"); n.value = "é".repeat(141); n.dispatchEvent(new Event("input")); return ""; })()`)
	if got := ph.eval(`document.getElementById("remove-count").textContent + "|" + document.getElementById("confirm-ok").disabled`); got != "282 / 280|true" {
		t.Fatalf("a 282-byte note: counter and Confirm %q, want 282 / 280|true", got)
	}
	ph.eval(`(() => { const n = document.getElementById("remove-note"); n.value = ""; n.dispatchEvent(new Event("input")); return ""; })()`)
	const note = `Deposits before viewing are a scam <b>sign</b>.`
	ph.typeInto("#remove-note", note)
	ph.wait("the counter", hasText("#remove-count", fmt.Sprintf("%d / 280", len(note))))
	ph.shot("confirm-remove")
	ph.click("#confirm-ok")
	ph.wait("the removal said", hasText("#status", "Removed post "+bike))
	ph.wait("the author told", hasText("#status", "The author was told why (scam)."))
	ph.wait("the card gone", `document.querySelector(`+js(card)+`) === null`)
	ph.shot("removed")
	ph.noConsoleErrors("on the phone")
	if !seller.waitPush(func(f map[string]any) bool { return f["cmd"] == "post_deleted" && fmt.Sprint(f["id"]) == bike }, waitFor) {
		t.Fatalf("the subscription heard no post_deleted for %s", bike)
	}
	if !seller.waitPush(func(f map[string]any) bool {
		return f["cmd"] == "notice" && fmt.Sprint(f["post"]) == bike && f["reason"] == "scam" && f["note"] == note && f["title"] == "Blue city bike"
	}, waitFor) {
		t.Fatalf("the seller's session got no notice of the removal (frames kept: %v)", seller.pushes)
	}

	// At desktop size, in a new tab of the same session (the token is
	// per tab): ban the lamp's author.
	d := newTab(t, browser, "operator-desktop", 1280, 800, shots, &n)
	d.do(chromedp.Navigate(admin + "/admin/"))
	d.typeInto("#token", token)
	d.click("#token-save")
	lampCard := `[data-testid=report][data-post="` + lamp + `"]`
	d.wait("the lamp's report", `document.querySelector(`+js(lampCard)+`) !== null`)
	d.shot("queue")
	d.click(lampCard + ` [data-action=ban]`)
	d.wait("the ban dialog", `document.getElementById("confirm").open && !document.getElementById("ban-fields").hidden`)
	d.typeInto("#ban-note", "spam ring")
	d.shot("confirm-ban")
	d.click("#confirm-ok")
	d.wait("the ban said", hasText("#status", "User "+sellerID+" banned."))
	d.shot("banned")

	// The Bans view: newest first, the note as text; at phone size too.
	banCard := `[data-testid=ban][data-user="` + sellerID + `"]`
	ph.click("#view-bans")
	ph.wait("the seller's ban on the phone", `document.querySelector(`+js(banCard)+`) !== null`)
	if w := ph.eval(`String(document.documentElement.scrollWidth)`); w != "390" {
		t.Fatalf("the Bans view is %s px wide at phone size, want 390", w)
	}
	ph.shot("bans")
	d.click("#view-bans")
	d.wait("the seller's ban", `document.querySelector(`+js(banCard)+`) !== null`)
	if got := d.eval(`document.querySelector(` + js(banCard+` [data-testid=ban-note]`) + `).textContent + "|" + document.getElementById("bans-summary").textContent`); got != "Note: spam ring|1 banned user, newest first." {
		t.Fatalf("the ban's card and summary: %q", got)
	}
	d.shot("bans")
	d.click(banCard + ` [data-action=unban]`)
	d.wait("the unban dialog", `document.getElementById("confirm").open && document.getElementById("ban-fields").hidden && document.getElementById("remove-fields").hidden`)
	d.shot("confirm-unban")
	d.click("#confirm-ok")
	d.wait("the unban said", hasText("#status", "User "+sellerID+" unbanned."))
	d.wait("the card gone", `document.querySelector(`+js(banCard)+`) === null && document.getElementById("ban-list").children.length === 0`)
	d.wait("the empty list said", hasText("#bans-summary", "No banned users."))
	d.shot("unbanned")

	// The Log view: every action above, newest first (the unban), by
	// the token's name, at both sizes.
	d.click("#view-log")
	d.wait("the log", `document.querySelectorAll("[data-testid=log-entry]").length === 3`)
	if got := d.eval(`document.querySelector("[data-testid=log-entry]").textContent`); !strings.HasPrefix(got, "mara unbanned user "+sellerID) {
		t.Fatalf("the newest log entry reads %q, want mara's unban of %s", got, sellerID)
	}
	d.shot("log")
	ph.click("#view-log")
	ph.wait("the log on the phone", `document.querySelectorAll("[data-testid=log-entry]").length === 3`)
	if w := ph.eval(`String(document.documentElement.scrollWidth)`); w != "390" {
		t.Fatalf("the Log view is %s px wide at phone size, want 390", w)
	}
	ph.shot("log")
	d.noConsoleErrors("on the desktop")
	ph.noConsoleErrors("on the phone, Bans")
	ctx, cancel := context.WithTimeout(seller.ctx, waitFor)
	defer cancel()
	for {
		if _, _, err := seller.c.Read(ctx); err != nil {
			if code := websocket.CloseStatus(err); code != 4008 {
				t.Fatalf("the banned seller's session ended with %v (code %d), want close 4008", err, code)
			}
			break
		}
	}
	// Unbanned: the seller's login is let in.
	back := dialProto(t, s.URL())
	back.mustOK(`{"cmd":"login","user":"` + sellerID + `","password":` + js(sellerPW) + `}`)
}

// With --public-url (here the node's own public address: role all serves
// the images there) the operator page shows a reported post's uploaded
// JPEG as a loaded thumbnail that opens the photo in a new tab, and an
// Open listing link to the post in the web app; the hostile entries of
// the post's images (not strings, javascript:, //evil, ../) make no
// element and no URL; the CSP's img-src adds that one origin. At phone
// and desktop size, screenshots of both.
func TestBrowserAdminPagePhotos(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	chromiumPath(t)
	const token = "browser-test-token-0123456789abcdef0123"
	s, admin, _ := newServeBinaryWithAdmin(t, token, "--public-url", "{public}/")
	if !s.hasFlag(t, "--public-url") {
		t.Skip("this server has no --public-url")
	}
	public := "http://" + s.addr
	r, err := http.Get(admin + "/admin/")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "img-src 'self' "+public+";") {
		t.Fatalf("the page's CSP %q does not let in images of %s", csp, public)
	}

	seller := dialProto(t, s.URL())
	seller.mustOK(`{"cmd":"register"}`)
	fn := seller.mustOK(`{"cmd":"filenames"}`)
	names, _ := fn["names"].([]any)
	if len(names) == 0 {
		t.Fatalf("filenames_ack without names: %v", fn)
	}
	var jpg bytes.Buffer
	img := image.NewRGBA(image.Rect(0, 0, 320, 240))
	for y := range 240 {
		for x := range 320 {
			img.Set(x, y, color.RGBA{uint8(x * 255 / 320), uint8(y * 255 / 240), 160, 255})
		}
	}
	if err := jpeg.Encode(&jpg, img, nil); err != nil {
		t.Fatal(err)
	}
	photo := names[0].(string) + ".jpg"
	up, err := http.Post(public+"/"+photo, "image/jpeg", bytes.NewReader(jpg.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	up.Body.Close()
	if up.StatusCode != http.StatusCreated && up.StatusCode != http.StatusOK {
		t.Fatalf("upload of %s: HTTP %d", photo, up.StatusCode)
	}
	images := []any{1, map[string]any{"src": photo}, "javascript:alert(1)//0123abcd/x.jpg", "//evil.example/0123abcd/x.jpg",
		"../" + photo, "0123abcd/../../x.jpg", photo}
	doc, _ := json.Marshal(map[string]any{"title": "Vintage camera", "msg": "Send the deposit by wire", "images": images})
	pub := seller.mustOK(`{"cmd":"publish","items":[{"body":` + js(string(doc)) + `,"to":[[[0,0,0]],[[0,0,0]]],"features":0,"range_values":[120,2020,0]}]}`)
	post := fmt.Sprint(pub["id"])
	other := dialProto(t, s.URL())
	other.mustOK(`{"cmd":"register"}`)
	other.mustOK(`{"cmd":"report","id":` + post + `,"reason":"scam","text":"The photo is from a shop's site"}`)

	shots := shotDir(t, "admin-photos")
	n := 0
	browser := startBrowser(t)
	card := `[data-testid=report][data-post="` + post + `"]`
	for _, size := range []struct {
		name string
		w, h int64
	}{{"operator-phone", 390, 844}, {"operator-desktop", 1280, 800}} {
		tab := newTab(t, browser, size.name, size.w, size.h, shots, &n)
		tab.do(chromedp.Navigate(admin + "/admin/"))
		tab.typeInto("#token", token)
		tab.click("#token-save")
		tab.wait("the camera's report", `document.querySelector(`+js(card)+`) !== null`)
		tab.wait("the thumbnail loaded", `(() => { const i = document.querySelector(`+js(card+` [data-testid=report-photo]`)+`); return i !== null && i.complete && i.naturalWidth > 0; })()`)
		got := tab.eval(`[...document.querySelectorAll("#reports img")].map(i => i.src + " " + i.naturalWidth + "x" + i.naturalHeight + " " + i.loading + " " + i.getBoundingClientRect().width + "x" + i.getBoundingClientRect().height + " " + i.parentElement.href + " " + i.parentElement.target + " " + i.parentElement.rel).join("|")`)
		if want := public + "/" + photo + " 320x240 lazy 96x96 " + public + "/" + photo + " _blank noopener noreferrer"; got != want {
			t.Fatalf("%s: the photos read %q, want one: %q", size.name, got, want)
		}
		open := tab.eval(`(() => { const a = document.querySelector(` + js(card+` [data-testid=report-open]`) + `); return a ? a.href + " " + a.target + " " + a.rel + " " + a.textContent : ""; })()`)
		if want := public + "/#/post/" + post + " _blank noopener noreferrer Open listing"; open != want {
			t.Fatalf("%s: the Open listing link reads %q, want %q", size.name, open, want)
		}
		// No element of the card names anything outside PUBLIC/<digest>/<name>
		// or the listing.
		if bad := tab.eval(`[...document.querySelectorAll("#reports [src], #reports [href]")].map(e => e.src || e.href).filter(u => u !== ` + js(public+"/"+photo) + ` && u !== ` + js(public+"/#/post/"+post) + `).join("|")`); bad != "" {
			t.Fatalf("%s: URLs outside the public site's photo and listing: %q", size.name, bad)
		}
		if got := tab.eval(`String(document.getElementById("photos-off").hidden)`); got != "true" {
			t.Fatalf("%s: the photos-off hint shows with --public-url", size.name)
		}
		if w := tab.eval(`String(document.documentElement.scrollWidth)`); w != fmt.Sprint(size.w) {
			t.Fatalf("%s: the page is %s px wide, want %d", size.name, w, size.w)
		}
		tab.shot("queue")
		tab.noConsoleErrors(size.name)
	}
}
