package webapp

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// A listing hidden pending review, then deleted by its seller, against
// the real binary (--auto-hide-reports 2): the operator page lists it
// first, marked hidden and deleted by its author, with the listing as it
// was (its body, though no listing is left to open), and removing it
// says it was deleted already; a listing reported once and deleted is
// listed after it, marked deleted, not hidden. Meanwhile the seller's
// phone cannot publish: the form says the listing is under review
// (docs/protocol.md "Publishing while under review"), and publishes
// again once the operator removed it.
func TestBrowserEvidenceKept(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	chromiumPath(t)
	token := strings.Repeat("8", 64)
	s, admin, _ := newServeBinaryWithAdmin(t, token, "--public-url", "http://example.invalid", "--auto-hide-reports", "2", "--auto-hide-min-age", "0s")
	if !s.hasFlag(t, "--auto-hide-reports") {
		t.Skip("this server does not hide reported listings")
	}
	seller := dialProto(t, s.URL())
	reg := seller.mustOK(`{"cmd":"register"}`)
	sellerID, sellerPW := fmt.Sprint(reg["id"]), fmt.Sprint(reg["password"])
	post := fmt.Sprint(seller.mustOK(`{"cmd":"publish","items":[{"body":"{\"title\":\"Blue city bike\",\"msg\":\"Pay a deposit by wire first, then I ship\",\"price\":120}","to":[[[0,0,0]],[[0,0,0]]],"features":0,"range_values":[120,2020,0]}]}`)["id"])
	other := fmt.Sprint(seller.mustOK(`{"cmd":"publish","items":[{"body":"{\"title\":\"Red sofa\",\"msg\":\"Two seats\",\"price\":80}","to":[[[0,0,0]],[[0,0,0]]],"features":0,"range_values":[80,2019,0]}]}`)["id"])
	for i, reason := range []string{"scam", "spam"} {
		r := dialProto(t, s.URL())
		r.mustOK(`{"cmd":"register"}`)
		r.mustOK(fmt.Sprintf(`{"cmd":"report","id":%s,"reason":%q}`, post, reason))
		if i == 0 {
			r.mustOK(fmt.Sprintf(`{"cmd":"report","id":%s,"reason":"other"}`, other))
		}
	}
	seller.mustOK(`{"cmd":"delete","id":` + post + `}`)
	seller.mustOK(`{"cmd":"delete","id":` + other + `}`)
	seller.c.CloseNow()

	shots := shotDir(t, "evidence")
	n := 0
	browser := startBrowser(t)
	b := newTab(t, browser, "seller-phone", 390, 844, shots, &n)
	// The error bar stays until something hides it (it hides itself
	// after 12 s), so what the page shows after the later publish does not
	// hang on how long the operator's part took.
	const keepBar = `(() => { const st = window.setTimeout; window.setTimeout = function (f, ms, ...a) {
	  if (ms === 12000) ms = 600000; return st.call(this, f, ms, ...a); }; })();`
	if _, err := chromedp.Call(b.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: keepBar}); err != nil {
		t.Fatal(err)
	}
	b.do(chromedp.Navigate(s.URL() + "/"))
	b.eval(`localStorage.setItem("occase.v1.creds", JSON.stringify({user: ` + js(sellerID) + `, password: ` + js(sellerPW) + `})), ""`)
	b.do(chromedp.Reload())
	b.state("online")
	publish := func(title string) {
		b.click("#tab-publish")
		b.eval(`(() => { document.getElementById("publish-form").reset(); return "" })()`)
		b.typeInto("#pub-title", title)
		b.pickFirst("pub-loc")
		b.pickFirst("pub-prod")
		b.click("#pub-feat-1")
		b.typeInto("#pub-price", "120")
		b.click("#pub-submit")
	}
	publish("Blue city bike, again")
	b.wait("the refusal in words", hasText("#pub-status", "Not published: a listing of yours is under review. You can publish again once a moderator has looked at it"))
	b.shot("under-review-refused")

	op := newTab(t, browser, "operator-desktop", 1280, 800, shots, &n)
	op.do(chromedp.Navigate(admin + "/admin/"))
	op.wait("the token form", `!document.getElementById("signin").hidden`)
	op.typeInto("#token", token)
	op.click("#token-save")
	op.wait("both deleted listings", `document.querySelectorAll("[data-testid=report]").length === 2`)
	if first := op.eval(`document.querySelector("[data-testid=report]").dataset.post`); first != post {
		t.Fatalf("the operator page lists post %s first, want the hidden-then-deleted %s", first, post)
	}
	card := `[data-testid=report][data-post="` + post + `"]`
	op.wait("the hidden mark", hasText(card+` [data-testid=report-hidden]`, "Hidden from buyers"))
	op.wait("the deleted mark", hasText(card+` [data-testid=report-deleted]`, "Deleted by its author"))
	op.wait("the snapshot", hasText(card+` [data-testid=report-snapshot]`, "Pay a deposit by wire first"))
	if got := op.eval(`document.querySelector('` + card + ` [data-testid=report-title]').textContent`); got != "Blue city bike" {
		t.Errorf("the title reads %q, want the snapshot's", got)
	}
	if op.ok(`document.querySelector('` + card + ` [data-testid=report-open]') !== null`) {
		t.Error("a deleted listing has an Open listing link")
	}
	if !op.ok(`document.querySelector('` + card + ` button[data-action=remove]') !== null`) {
		t.Error("a deleted listing has no Remove button")
	}
	oc := `[data-testid=report][data-post="` + other + `"]`
	op.wait("the other's deleted mark", hasText(oc+` [data-testid=report-deleted]`, "Deleted by its author"))
	if op.ok(`document.querySelector('` + oc + ` [data-testid=report-hidden]') !== null`) {
		t.Error("the listing reported once is marked hidden")
	}
	op.shot("queue")

	// Remove it, telling the author nothing: the page says it was
	// deleted by its author already, and the card goes.
	op.click(card + ` button[data-action=remove]`)
	op.wait("the confirmation", `document.getElementById("confirm").open`)
	if got := op.eval(`document.getElementById("confirm").textContent`); !strings.Contains(got, "deleted by its author already") {
		t.Errorf("the confirmation reads %q", got)
	}
	op.eval(`document.getElementById("remove-tell").checked = false, ""`)
	op.click("#confirm-ok")
	op.wait("the status", hasText("#status", "(deleted by its author before review)"))
	op.wait("one card left", `document.querySelectorAll("[data-testid=report]").length === 1`)
	op.shot("removed")
	op.noConsoleErrors("the whole run")

	// Removed: the seller publishes again.
	publish("Green city bike")
	b.wait("published", hasText("#pub-status", "Published"))
	// The earlier refusal is over: its red bar does not stand beside the
	// "published" notice, saying the opposite.
	if !b.ok(`document.getElementById("banner").hidden`) {
		t.Errorf("after publishing, the error bar still reads %q", b.eval(`document.getElementById("banner").textContent`))
	}
	b.shot("published-after-review")
	b.noConsoleErrors("the whole run")
}
