package webapp

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// A listing hidden pending review, against the real binary: the seller's
// phone shows it in My listings marked "Under review" (and no longer in
// Browse, where buyers do not see it) once two users report it with
// --auto-hide-reports 2; a guest's Browse has the seller's other listing
// and lacks it; the operator page lists it first, marked; the operator's
// dismissal through the moderation API takes the marker away and brings
// it back to Browse, live.
func TestBrowserUnderReview(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	chromiumPath(t)
	token := strings.Repeat("7", 64)
	s, admin, _ := newServeBinaryWithAdmin(t, token, "--auto-hide-reports", "2", "--auto-hide-min-age", "0s")
	if !s.hasFlag(t, "--auto-hide-reports") {
		t.Skip("this server does not hide reported listings")
	}
	seller := dialProto(t, s.URL())
	reg := seller.mustOK(`{"cmd":"register"}`)
	sellerID, sellerPW := fmt.Sprint(reg["id"]), fmt.Sprint(reg["password"])
	pub := seller.mustOK(`{"cmd":"publish","items":[{"body":"{\"title\":\"Blue city bike\",\"msg\":\"Barely used\",\"price\":120}","to":[[[0,0,0]],[[0,0,0]]],"features":0,"range_values":[120,2020,0]}]}`)
	post := fmt.Sprint(pub["id"])
	other := fmt.Sprint(seller.mustOK(`{"cmd":"publish","items":[{"body":"{\"title\":\"Red sofa\",\"msg\":\"Two seats\",\"price\":80}","to":[[[0,0,0]],[[0,0,0]]],"features":0,"range_values":[80,2019,0]}]}`)["id"])
	seller.c.CloseNow()

	shots := shotDir(t, "under-review")
	n := 0
	browser := startBrowser(t)
	b := newTab(t, browser, "seller-phone", 390, 844, shots, &n)
	b.do(chromedp.Navigate(s.URL() + "/"))
	b.eval(`localStorage.setItem("occase.v1.creds", JSON.stringify({user: ` + js(sellerID) + `, password: ` + js(sellerPW) + `})), ""`)
	b.do(chromedp.Reload())
	b.state("online")
	card := `#mine-list [data-post-id="` + post + `"]`
	inBrowse := `document.querySelector('#post-list [data-post-id="` + post + `"]') !== null`
	b.wait("the listing in Browse", inBrowse)
	b.click("#tab-mine")
	b.wait("the listing in My listings", `document.querySelector(`+js(card)+`) !== null`)
	if b.ok(`document.querySelector(` + js(card+` [data-testid=under-review]`) + `) !== null`) {
		t.Fatal("marked under review before any report")
	}

	for _, reason := range []string{"scam", "spam"} {
		r := dialProto(t, s.URL())
		r.mustOK(`{"cmd":"register"}`)
		r.mustOK(fmt.Sprintf(`{"cmd":"report","id":%s,"reason":%q}`, post, reason))
	}
	b.wait("the marker", `(() => { const m = document.querySelector(`+js(card+` [data-testid=under-review]`)+`);
	  return m !== null && m.textContent.includes("Under review") && m.textContent.includes("buyers do not see it"); })()`)
	b.shot("under-review")
	// The Sell form says publishing waits for the review before the
	// seller fills it in (a publish would be refused: under_review).
	b.click("#tab-publish")
	b.wait("the note on the Sell form", `!document.getElementById("pub-under-review").hidden`)
	b.shot("sell-under-review")
	b.click("#tab-mine")
	if b.ok(inBrowse) {
		t.Error("the hidden listing stayed in the seller's Browse")
	}
	g := newTab(t, browser, "guest-desktop", 1280, 800, shots, &n)
	g.do(chromedp.Navigate(s.URL() + "/#/browse"))
	g.wait("the guest's Browse loaded", `document.querySelector('#post-list [data-post-id="`+other+`"]') !== null`)
	if g.ok(`document.querySelector('#post-list [data-post-id="` + post + `"]') !== null`) {
		t.Error("a guest's Browse shows the hidden listing")
	}

	// The operator page lists it first and says it is hidden; the sofa,
	// reported once, is not marked.
	lone := dialProto(t, s.URL())
	lone.mustOK(`{"cmd":"register"}`)
	lone.mustOK(fmt.Sprintf(`{"cmd":"report","id":%s,"reason":"other"}`, other))
	op := newTab(t, browser, "operator-desktop", 1280, 800, shots, &n)
	op.do(chromedp.Navigate(admin + "/admin/"))
	op.wait("the token form", `!document.getElementById("signin").hidden`)
	op.typeInto("#token", token)
	op.click("#token-save")
	op.wait("both reported listings", `document.querySelectorAll("[data-testid=report]").length === 2`)
	if first := op.eval(`document.querySelector("[data-testid=report]").dataset.post`); first != post {
		t.Fatalf("the operator page lists post %s first, want the hidden %s", first, post)
	}
	op.wait("the hidden mark", hasText(`[data-testid=report][data-post="`+post+`"] [data-testid=report-hidden]`, "Hidden from buyers pending your decision"))
	if op.ok(`document.querySelector('[data-testid=report][data-post="` + other + `"] [data-testid=report-hidden]') !== null`) {
		t.Error("the listing reported once is marked hidden")
	}
	op.shot("operator-queue")
	// The Log view names the automatic hide as such.
	op.click("#view-log")
	op.wait("the hide in the log", `document.querySelectorAll("[data-testid=log-entry]").length >= 1`)
	if got := op.eval(`document.querySelector("[data-testid=log-entry]").textContent`); !strings.HasPrefix(got, "auto hid, pending review, post "+post) {
		t.Errorf("the newest log entry reads %q, want the automatic hide of %s", got, post)
	}
	op.shot("operator-log")

	req, _ := http.NewRequest("POST", admin+"/admin/v1/posts/"+post+"/dismiss", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"shown":true`) {
		t.Fatalf("dismiss: %d %s", resp.StatusCode, body)
	}
	b.wait("the marker gone", `document.querySelector(`+js(card)+`) !== null && document.querySelector(`+js(card+` [data-testid=under-review]`)+`) === null`)
	b.wait("back in Browse", inBrowse)
	if !b.ok(`document.getElementById("pub-under-review").hidden`) {
		t.Error("the Sell form still says a listing is under review after the dismissal")
	}
	b.shot("dismissed")
	b.noConsoleErrors("the whole run")
}
