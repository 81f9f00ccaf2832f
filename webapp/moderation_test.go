package webapp

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// Moderation in the web app (docs/protocol.md, report and banned
// accounts), against the fake server at phone and desktop sizes.

var moderationSizes = []struct {
	name string
	w, h int64
}{{"phone", 390, 844}, {"desktop", 1280, 800}}

// shotDir is where the moderation screenshots go: $OCCASE_ARTIFACTS/<name>
// as for every browser test, or /tmp/webui-shots/<name> when unset (to be
// looked at by a person).
func shotDir(t *testing.T, name string) string {
	if os.Getenv("OCCASE_ARTIFACTS") == "" {
		t.Setenv("OCCASE_ARTIFACTS", "/tmp/webui-shots")
	}
	return artifactDir(t, name)
}

// signUp registers a new account in b and returns its id.
func signUp(t *testing.T, b *tab, url, nick string) string {
	t.Helper()
	b.do(chromedp.Navigate(url + "/"))
	b.do(chromedp.WaitVisible(chromedp.CSS("#signup-btn")))
	b.click("#signup-btn")
	b.do(chromedp.WaitVisible(chromedp.CSS("#register-btn")))
	b.typeInto("#nick-input", nick)
	b.click("#register-btn")
	b.state("online")
	return storedUser(t, b)
}

// storedUser is the user id of the credentials b keeps, or "".
func storedUser(t *testing.T, b *tab) string {
	t.Helper()
	var creds struct{ User string }
	if s := b.eval(`localStorage.getItem("occase.v1.creds") || ""`); s != "" {
		if err := json.Unmarshal([]byte(s), &creds); err != nil {
			t.Fatalf("stored credentials %q: %v", s, err)
		}
	}
	return creds.User
}

func (s *fakeServer) lastReport() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reports) == 0 {
		return "", 0
	}
	return s.reports[len(s.reports)-1], len(s.reports)
}

// focused is the data-testid of the element with the focus.
const focused = `(document.activeElement && document.activeElement.dataset.testid) || ""`

// TestBrowserReport: a member reports a listing from its page. The dialog
// (role, modal, labels, focus, Escape), a reason required, the text's
// bound and counter; every reason on the wire (the frame the server got);
// each refusal in words, the dialog kept open to retry; the confirmation,
// with Block offered when the seller wrote; "Reported" after a reload; no
// Report on one's own listing.
func TestBrowserReport(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := newFakeServer(t)
	photos := srv.seedPhotos(t, 1)
	bike := srv.seedListing(t, "Red road bike", photos)
	shots := shotDir(t, "report")
	n := 0
	browser := startBrowser(t)
	for _, size := range moderationSizes {
		b := newTab(t, browser, size.name, size.w, size.h, shots, &n)
		me := signUp(t, b, srv.URL(), "Rita")

		// One's own listing has no Report.
		srv.seed(t, me, `{"body":"{\"title\":\"My own lamp\",\"nick\":\"Rita\"}","features":2,"range_values":[5],"to":[[[0,0,0]],[[0,0,0]]]}`)
		srv.mu.Lock()
		own := fmt.Sprint(srv.nextPost - 1)
		srv.mu.Unlock()
		b.do(chromedp.Navigate(srv.URL() + "/#/post/" + own))
		b.wait("my listing", `document.getElementById("post-heading").textContent === "My own lamp"`)
		b.wait("its seller tools", hasText("#post-detail .tag", "Your listing"))
		if got := b.eval(`String(document.querySelectorAll("#post-detail [data-testid=report-btn]").length)`); got != "0" {
			t.Errorf("%s: Report offered on one's own listing", size.name)
		}

		// On a phone, the member writes to the seller first: Block is then
		// offered with the confirmation.
		b.do(chromedp.Navigate(srv.URL() + "/#/post/" + bike))
		b.wait("the listing", `document.getElementById("post-heading").textContent === "Red road bike"`)
		_, sent := srv.lastReport()
		if size.name == "phone" {
			b.click("[data-testid=detail-chat]")
			b.wait("the chat", `!document.getElementById("chat-view").hidden`)
			b.click("#chat-back")
			b.wait("the listing again", `!document.getElementById("post-view").hidden`)
		}
		b.wait("Report", exactText("#post-detail [data-testid=report-btn]", "Report…"))
		b.click("#post-detail [data-testid=report-btn]")
		b.wait("the dialog", `document.getElementById("report-dialog").open`)
		b.wait("focus on the first reason", focused+` === "report-reason-spam"`)
		if got := b.eval(`(() => { const d = document.getElementById("report-dialog");
		  return [d.getAttribute("role"), d.getAttribute("aria-modal"), document.getElementById(d.getAttribute("aria-labelledby")).textContent,
		    [...d.querySelectorAll("input[name=report-reason]")].map(i => i.labels[0].textContent.trim()).join("|"),
		    document.getElementById("report-text").labels[0].textContent, document.getElementById("report-text").maxLength,
		    document.getElementById("report-post-title").textContent].join(" / "); })()`); got !=
			"dialog / true / Report this listing / Spam|Scam or fraud|Prohibited item|Offensive|Other / Anything to add? (optional) / 280 / “Red road bike”" {
			t.Errorf("%s: the dialog: %s", size.name, got)
		}
		b.shot("report-dialog")
		// Keyboard: Tab goes on to the next control, Escape closes and gives
		// the focus back to Report.
		b.do(chromedp.KeyEvent(kb.Tab))
		b.wait("Tab to the text", focused+` === "report-text"`)
		b.do(chromedp.KeyEvent(kb.Escape))
		b.wait("closed by Escape", `!document.getElementById("report-dialog").open`)
		b.wait("focus back on Report", focused+` === "report-btn"`)
		if _, got := srv.lastReport(); got != sent {
			t.Fatalf("%s: %d reports sent before Send", size.name, got-sent)
		}

		// Send without a reason: said next to the reasons, nothing sent.
		b.do(chromedp.KeyEvent(kb.Enter)) // Report has the focus
		b.wait("the dialog again", `document.getElementById("report-dialog").open`)
		b.click("#report-send")
		b.wait("a reason asked for", hasText("#report-reason-error", "Choose what is wrong")+` && document.getElementById("report-reasons").getAttribute("aria-invalid") === "true"`)
		b.wait("focus on the reasons", focused+` === "report-reason-spam"`)
		b.shot("report-no-reason")

		// The text: at most 280 characters, counted.
		b.typeInto("#report-text", strings.Repeat("x", 290))
		b.wait("the counter at the bound", `document.getElementById("report-text").value.length === 280 && `+hasText("#report-count", "280 / 280"))

		// Each reason on the wire; the first four refused, each in words.
		reasons := []struct{ value, refusal, words string }{
			{"spam", "rate_limited", "many reports in a short time"},
			{"scam", "unavailable", "could not be sent just now"},
			{"prohibited", "not_found", "This listing is gone"},
			{"offensive", "bad_request", "did not accept this report"},
			{"other", "", ""},
		}
		for i, r := range reasons {
			text := ""
			if i == 1 {
				text = "Asks for a deposit by bank transfer"
			}
			if r.value == "other" {
				text = "Same photos as another listing — “réel” price?"
			}
			b.eval(`(() => { const t = document.getElementById("report-text"); t.value = ` + js(text) + `; t.dispatchEvent(new Event("input")); return ""; })()`)
			srv.mu.Lock()
			srv.reportFail = r.refusal
			srv.mu.Unlock()
			b.click("#report-reason-" + r.value)
			_, before := srv.lastReport()
			b.click("#report-send")
			if r.refusal != "" {
				b.wait(r.refusal+" in words", `!document.getElementById("report-status").hidden && `+hasText("#report-status", r.words)+
					` && document.getElementById("report-dialog").open && !document.getElementById("report-send").disabled`)
				if r.refusal == "rate_limited" {
					b.shot("report-refused")
					lowContrast(t, b, "#report-status, #report-dialog label, #report-count, #report-about, #post-detail [data-testid=report-btn]")
				}
			} else {
				b.wait("the confirmation", `!document.getElementById("report-done").hidden && `+
					hasText("#report-done", "Thanks — the moderators will look at it"))
			}
			frame, after := srv.lastReport()
			if after != before+1 {
				t.Fatalf("%s %s: %d report frames sent, want 1", size.name, r.value, after-before)
			}
			want := `{"cmd":"report","id":` + bike + `,"reason":"` + r.value + `"`
			if text != "" {
				q, _ := json.Marshal(text)
				want += `,"text":` + string(q)
			}
			if want += "}"; !sameJSON(frame, want) {
				t.Errorf("%s: sent %s, want %s", size.name, frame, want)
			}
		}
		b.wait("focus on the thanks", `document.activeElement.id === "report-done-title"`)
		blockOffered := b.ok(`!document.getElementById("report-block-box").hidden`)
		if blockOffered != (size.name == "phone") {
			t.Errorf("%s: Block the seller offered: %v (a conversation with them: %v)", size.name, blockOffered, size.name == "phone")
		}
		b.shot("report-thanks")
		if blockOffered {
			b.click("#report-block")
			b.wait("blocked", hasText("#report-block-status", "Blocked: they cannot send you messages"))
			b.wait("focus on Done", focused+` === "report-close"`)
		}
		b.click("#report-close")
		b.wait("closed", `!document.getElementById("report-dialog").open`)
		b.wait("Reported, with the focus", exactText("#post-detail [data-testid=report-btn]", "Reported")+` && `+focused+` === "report-btn"`)
		b.shot("reported")

		// Remembered in this browser.
		b.do(chromedp.Reload())
		b.state("online")
		b.wait("Reported after a reload", `(() => { const r = document.querySelector("#post-detail [data-testid=report-btn]");
		  return r && r.textContent === "Reported" && r.dataset.reported === "1"; })()`)
		if got := b.eval(`JSON.stringify(JSON.parse(localStorage.getItem("occase.v1.user.` + me + `")).reported)`); got != `["`+bike+`"]` {
			t.Errorf("%s: stored reported %s", size.name, got)
		}
		// "Reported" says so, and sends nothing.
		_, before := srv.lastReport()
		b.click("#post-detail [data-testid=report-btn]")
		b.wait("a note", hasText("#notice", "You reported this listing"))
		if b.ok(`document.getElementById("report-dialog").open`) {
			t.Errorf("%s: Reported opened the dialog", size.name)
		}
		if _, after := srv.lastReport(); after != before {
			t.Errorf("%s: Reported sent a report", size.name)
		}
		b.noConsoleErrors("reporting")
	}

	// A guest is asked for an account first, then gets the dialog.
	g := newTab(t, browser, "guest", 390, 844, shots, &n)
	g.do(chromedp.Navigate(srv.URL() + "/#/post/" + bike))
	g.wait("Report", exactText("#post-detail [data-testid=report-btn]", "Report…"))
	g.click("#post-detail [data-testid=report-btn]")
	g.wait("why", hasText("#account-why", "To report a listing"))
	g.click("#register-btn")
	g.state("online")
	g.wait("the dialog after signing up", `document.getElementById("report-dialog").open && !document.getElementById("post-view").hidden`)
	g.noConsoleErrors("a guest reporting")
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	p, _ := json.Marshal(x)
	q, _ := json.Marshal(y)
	return string(p) == string(q)
}

// dials is how many WebSocket connections the fake has accepted.
func (s *fakeServer) dialCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dials
}

// noRedial fails when the fake accepts another connection within a
// window several times the app's first reconnect delay (0.5 s): a retry
// loop would show there. A window, not a speed: nothing is timed.
func noRedial(t *testing.T, s *fakeServer, had int, when string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if got := s.dialCount(); got != had {
			t.Fatalf("%s: the app connected again (%d connections, had %d)", when, got, had)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBrowserBanned: an operator bans the account while it is online
// (close 4008) and, after a reload, at login (login_ack banned, then 4008).
// Each time the app says so plainly, in a bar that stays on every view,
// and does not reconnect; the stored account stays until the person
// forgets it (desktop) or creates a new account (phone), which then works.
func TestBrowserBanned(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := newFakeServer(t)
	shots := shotDir(t, "banned")
	n := 0
	browser := startBrowser(t)
	const said = "This account was banned by the moderators."
	shown := `!document.getElementById("banned").hidden && ` + hasText("#banned", said) +
		` && document.getElementById("banned").getAttribute("role") === "alert"`
	for _, size := range moderationSizes {
		b := newTab(t, browser, size.name, size.w, size.h, shots, &n)
		me := signUp(t, b, srv.URL(), "Bob")

		// Live: closed with 4008.
		had := srv.dialCount()
		srv.ban(me)
		b.wait("the ban said", shown)
		b.wait("the start screen", `!document.getElementById("account-view").hidden`)
		b.state("idle")
		b.wait("focus on Create a new account", focused+` === "banned-new"`)
		b.shot("banned-live")
		lowContrast(t, b, "#banned p, #banned button")
		noRedial(t, srv, had, size.name+": after a live ban")
		if storedUser(t, b) != me {
			t.Errorf("%s: the banned account's credentials were dropped before the person chose", size.name)
		}
		// The bar stays on other views.
		b.click("#tab-browse")
		b.wait("Browse as a guest, the bar kept", `!document.getElementById("browse-view").hidden && `+shown)
		if !b.ok(hasText("#conn-status", "Browsing as a guest")) {
			t.Errorf("%s: header %q", size.name, b.eval(`document.getElementById("conn-status").textContent`))
		}

		// At login: a reload tries the stored account once, is refused.
		had = srv.dialCount()
		b.do(chromedp.Reload())
		b.wait("the ban said at login", shown+` && !document.getElementById("account-view").hidden`)
		b.state("idle")
		b.shot("banned-login")
		noRedial(t, srv, had+1, size.name+": after a login refused as banned")
		b.noConsoleErrors("banned")

		if size.name == "phone" {
			b.click("#banned-new")
			b.wait("the start screen, the bar gone", `document.getElementById("banned").hidden && !document.getElementById("account-view").hidden && `+
				focused+` === "nick-input"`)
			if got := storedUser(t, b); got != "" {
				t.Errorf("phone: credentials %s kept after Create a new account", got)
			}
			b.click("#register-btn")
			b.state("online")
			if got := storedUser(t, b); got == "" || got == me {
				t.Errorf("phone: new account %q (banned %s)", got, me)
			}
			if b.ok(`localStorage.getItem("occase.v1.user.` + me + `") !== null`) {
				t.Errorf("phone: the banned account's state kept")
			}
		} else {
			var creds struct{ User, Password string }
			if err := json.Unmarshal([]byte(b.eval(`localStorage.getItem("occase.v1.creds")`)), &creds); err != nil || creds.User != me {
				t.Fatalf("desktop: stored credentials %+v: %v", creds, err)
			}
			b.click("#banned-forget")
			b.wait("Browse, the bar gone, told", `document.getElementById("banned").hidden && !document.getElementById("browse-view").hidden && `+
				hasText("#notice", "removed from this browser"))
			if b.ok(`localStorage.getItem("occase.v1.creds") !== null || localStorage.getItem("occase.v1.user.` + me + `") !== null`) {
				t.Errorf("desktop: the banned account is still stored")
			}
			had = srv.dialCount()
			b.do(chromedp.Reload())
			b.wait("a guest after a reload", hasText("#conn-status", "Browsing as a guest")+` && document.getElementById("banned").hidden`)
			noRedial(t, srv, had, "desktop: a reload after forgetting")

			// The banned account typed into the login form: refused, said,
			// nothing stored, no retry.
			b.click("#signup-btn")
			b.do(chromedp.WaitVisible(chromedp.CSS("#login-id")))
			b.typeInto("#login-id", creds.User)
			b.typeInto("#login-password", creds.Password)
			had = srv.dialCount()
			b.click("#login-btn")
			b.wait("the ban said at the login form", shown)
			noRedial(t, srv, had+1, "desktop: the login form refused as banned")
			if got := storedUser(t, b); got != "" {
				t.Errorf("desktop: credentials %s stored after a refused login", got)
			}
		}
		b.noConsoleErrors("after the ban")
	}
}

// lowContrast fails for each element matched by sel whose text has less
// than 4.5:1 contrast with what is behind it (WCAG AA).
func lowContrast(t *testing.T, b *tab, sel string) {
	t.Helper()
	got := b.eval(withContrast(`return [...document.querySelectorAll(` + js(sel) + `)].filter((e) => e.offsetParent !== null || e.closest("dialog[open]"))
	  .map((e) => [e.id || e.dataset.testid || e.tagName, contrast(getComputedStyle(e).color, bgOf(e))])
	  .filter(([, c]) => c < 4.5).map(([n, c]) => n + " " + c.toFixed(2)).join(", ");`))
	if got != "" {
		t.Errorf("%s: text below 4.5:1 contrast: %s", b.name, got)
	}
}
