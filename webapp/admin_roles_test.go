package webapp

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/occase/occase/broker/brokertest"
)

// The operator page with a viewer's token (a "name token viewer" line):
// it learns the role from GET /admin/v1/whoami, says "read only" in the
// header, and shows the queue, the bans and the log with no action
// button. A moderator's tab has the buttons; when a SIGHUP makes that
// token a viewer's, its next action is refused 403 forbidden_for_role,
// the page says why and drops the buttons. Real binary, real Redis,
// headless chromium.
func TestBrowserAdminPageViewer(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	chromiumPath(t)
	const maraTok = "browser-test-token-0123456789abcdef0123"
	const sueTok = "browser-viewer-token-0123456789abcdef01"
	s, admin, tf := newServeBinaryWithAdmin(t, "mara "+maraTok+"\nsue "+sueTok+" viewer")
	if !s.hasFlag(t, "--admin-token-file") {
		t.Skip("this server has no moderation API")
	}
	seller := dialProto(t, s.URL())
	seller.mustOK(`{"cmd":"register"}`)
	pub := seller.mustOK(`{"cmd":"publish","items":[{"body":"{\"title\":\"Desk lamp\",\"msg\":\"x\"}","to":[[[0,0,0]],[[0,0,0]]],"features":0,"range_values":[120,2020,0]}]}`)
	lamp := fmt.Sprint(pub["id"])
	other := dialProto(t, s.URL())
	reg := other.mustOK(`{"cmd":"register"}`)
	otherID := fmt.Sprint(reg["id"])
	other.mustOK(`{"cmd":"report","id":` + lamp + `,"reason":"spam","text":"Posted ten times"}`)
	// A ban by the moderator, through the API, for the Bans view.
	req, _ := http.NewRequest("POST", admin+"/admin/v1/users/"+otherID+"/ban", nil)
	req.Header.Set("Authorization", "Bearer "+maraTok)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 200 {
		t.Fatalf("the moderator's ban: %v %v", r, err)
	} else {
		r.Body.Close()
	}

	shots := shotDir(t, "admin-viewer")
	n := 0
	browser := startBrowser(t)
	v := newTab(t, browser, "viewer", 390, 844, shots, &n)
	v.do(chromedp.Navigate(admin + "/admin/"))
	v.typeInto("#token", sueTok)
	v.click("#token-save")
	card := `[data-testid=report][data-post="` + lamp + `"]`
	v.wait("the lamp's report", `document.querySelector(`+js(card)+`) !== null`)
	v.wait("the role said", hasText("#whoami", "sue · viewer (read only)"))
	if got := v.eval(`String(document.querySelectorAll("[data-action]").length)`); got != "0" {
		t.Fatalf("the viewer's queue shows %s action buttons, want none", got)
	}
	v.shot("queue")
	v.click("#view-bans")
	banCard := `[data-testid=ban][data-user="` + otherID + `"]`
	v.wait("the ban", `document.querySelector(`+js(banCard)+`) !== null`)
	if got := v.eval(`String(document.querySelectorAll("[data-action]").length)`); got != "0" {
		t.Fatalf("the viewer's bans show %s action buttons, want none", got)
	}
	v.shot("bans")
	v.click("#view-log")
	v.wait("the log", `document.querySelectorAll("[data-testid=log-entry]").length === 1`)
	v.shot("log")
	v.noConsoleErrors("the viewer's tab")

	m := newTab(t, browser, "moderator", 1280, 800, shots, &n)
	m.do(chromedp.Navigate(admin + "/admin/"))
	m.typeInto("#token", maraTok)
	m.click("#token-save")
	m.wait("the lamp's report", `document.querySelector(`+js(card+` [data-action=dismiss]`)+`) !== null`)
	m.wait("the role said", hasText("#whoami", "mara · moderator"))
	m.shot("moderator")
	// mara becomes a viewer while her tab is open.
	if err := os.WriteFile(tf, []byte("mara "+maraTok+" viewer\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cmd.Process.Signal(syscall.SIGHUP)
	brokertest.Poll(t, waitFor, "the reload", func() bool {
		req, _ := http.NewRequest("GET", admin+"/admin/v1/whoami", nil)
		req.Header.Set("Authorization", "Bearer "+maraTok)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return strings.Contains(string(b), `"role":"viewer"`)
	})
	m.click(card + ` [data-action=dismiss]`)
	m.wait("the confirmation", `document.getElementById("confirm").open`)
	m.click("#confirm-ok")
	m.wait("the refusal said", hasText("#status", "the token of mara is a viewer's"))
	m.wait("the role learnt again", hasText("#whoami", "mara · viewer (read only)"))
	m.wait("the buttons gone", `document.querySelector(`+js(card)+`) !== null && document.querySelectorAll("[data-action]").length === 0`)
	m.shot("demoted")
	m.consoleErrors() // the refusal's 403, on purpose
	if got := m.eval(`document.getElementById("status").textContent`); !strings.Contains(got, "may not dismiss reports") {
		t.Fatalf("the status reads %q", got)
	}
}

// A removal from the page whose notice cannot be written (the real
// Redis made to fail: the seller's notice list replaced by a string):
// the page says the author was not told and that the notice is kept, in
// words that name what the page offers (not the node's "remove post N
// again": the post has left the queue); the Log view offers "Send the notice again" on that entry; once Redis is
// mended, the button sends it (the seller's session gets the notice) and
// is gone from the log, whose newest entry is the resend.
func TestBrowserAdminPageResend(t *testing.T) {
	const tok = "browser-test-token-0123456789abcdef0123"
	s, admin, redisAddr, prefix := adminOnRedis(t, tok, "make fail")
	seller := dialProto(t, s.URL())
	reg := seller.mustOK(`{"cmd":"register"}`)
	sellerID := fmt.Sprint(reg["id"])
	pub := seller.mustOK(`{"cmd":"publish","items":[{"body":"{\"title\":\"Desk lamp\",\"msg\":\"x\"}","to":[[[0,0,0]],[[0,0,0]]],"features":0,"range_values":[120,2020,0]}]}`)
	lamp := fmt.Sprint(pub["id"])
	seller.mustOK(`{"cmd":"notices"}`)
	other := dialProto(t, s.URL())
	other.mustOK(`{"cmd":"register"}`)
	other.mustOK(`{"cmd":"report","id":` + lamp + `,"reason":"spam","text":"Posted ten times"}`)
	raw := brokertest.Raw(t, redisAddr)
	nt := prefix + "nt:{" + sellerID + "}"
	if err := raw.Do(context.Background(), raw.B().Set().Key(nt).Value("not a list").Build()).Error(); err != nil {
		t.Fatal(err)
	}

	shots := shotDir(t, "admin-resend")
	n := 0
	browser := startBrowser(t)
	d := newTab(t, browser, "operator", 1280, 800, shots, &n)
	d.do(chromedp.Navigate(admin + "/admin/"))
	d.typeInto("#token", tok)
	d.click("#token-save")
	card := `[data-testid=report][data-post="` + lamp + `"]`
	d.wait("the lamp's report", `document.querySelector(`+js(card)+`) !== null`)
	d.click(card + ` [data-action=remove]`)
	d.wait("the confirmation", `document.getElementById("confirm").open`)
	d.click("#confirm-ok")
	// The node retries the notice for 10 s before it answers.
	brokertest.Poll(t, 30*time.Second, "the refusal said", func() bool {
		return strings.Contains(d.eval(`document.getElementById("status").textContent`), "Post "+lamp+" is removed, but its author (user "+sellerID+") could not be told why. The notice is kept: the nodes send it again on their own, or press “Send the notice again” on the removal's entry in the Log.")
	})
	d.consoleErrors() // the 503, on purpose
	d.shot("not-told")
	d.click("#view-log")
	entry := `[data-testid=log-entry] [data-action=resend]`
	d.wait("the resend button", `document.querySelectorAll(`+js(entry)+`).length === 1`)
	d.shot("log-resend")
	if err := raw.Do(context.Background(), raw.B().Del().Key(nt).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	d.click(entry)
	d.wait("the resend said", hasText("#status", "The author of post "+lamp+" was told why (spam)."))
	d.wait("the button gone", `document.querySelectorAll("[data-testid=log-entry]").length === 2 && document.querySelectorAll(`+js(entry)+`).length === 0`)
	if got := d.eval(`document.querySelector("[data-testid=log-entry]").textContent`); !strings.Contains(got, "notice resent") {
		t.Fatalf("the newest log entry reads %q", got)
	}
	d.shot("resent")
	d.noConsoleErrors("after the resend")
	if !seller.waitPush(func(f map[string]any) bool {
		return f["cmd"] == "notice" && fmt.Sprint(f["post"]) == lamp && f["reason"] == "spam" && f["title"] == "Desk lamp"
	}, waitFor) {
		t.Fatalf("the seller got no notice (frames kept: %v)", seller.pushes)
	}
}

// argAfter is the value that follows flag in args ("" when absent).
func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// The log of the operator page after the nodes resent a kept notice by
// themselves: the entry by "auto" reads as a resend, and the failed
// removal it answers loses its Send the notice again button, while a
// removal still not told keeps it. The entries are the ones the nodes
// write (moderation.Resender), planted in a real Redis; real binary,
// headless chromium.
func TestBrowserAdminPageAutoResend(t *testing.T) {
	const tok = "browser-test-token-0123456789abcdef0123"
	_, admin, redisAddr, prefix := adminOnRedis(t, tok, "plant the log in")
	raw := brokertest.Raw(t, redisAddr)
	at := time.Now().UnixMilli()
	for _, l := range []string{
		fmt.Sprintf(`{"at":%d,"by":"mara","action":"remove","target":"41","reason":"spam","result":"author_not_told","detail":"author 7, notice kept to resend"}`, at-60_000),
		fmt.Sprintf(`{"at":%d,"by":"mara","action":"remove","target":"42","reason":"scam","result":"author_not_told","detail":"author 7, notice kept to resend"}`, at-50_000),
		fmt.Sprintf(`{"at":%d,"by":"auto","action":"resend","target":"41","reason":"spam","result":"ok","detail":"author 7, its removal's notice sent by the nodes' automatic resend"}`, at),
	} {
		if err := raw.Do(context.Background(), raw.B().Lpush().Key(prefix+"{modlog}:log").Element(l).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	shots := shotDir(t, "admin-auto-resend")
	n := 0
	browser := startBrowser(t)
	d := newTab(t, browser, "operator", 1280, 800, shots, &n)
	d.do(chromedp.Navigate(admin + "/admin/"))
	d.typeInto("#token", tok)
	d.click("#token-save")
	d.click("#view-log")
	d.wait("the three entries", `document.querySelectorAll("[data-testid=log-entry]").length === 3`)
	if got := d.eval(`document.querySelector("[data-testid=log-entry]").textContent`); !strings.HasPrefix(got, "auto sent the kept removal notice of post 41") {
		t.Fatalf("the newest log entry reads %q", got)
	}
	buttons := d.eval(`Array.from(document.querySelectorAll("[data-testid=log-entry]")).map(e => e.querySelector("[data-action=resend]") ? "button" : "-").join(",")`)
	if buttons != "-,button,-" {
		t.Fatalf("resend buttons %q, want only on post 42's removal", buttons)
	}
	d.shot("log")
	d.noConsoleErrors("the log")
}

// adminOnRedis starts, for a browser test of the operator page, the real
// binary with the moderation API and tok as the token of operator mara,
// on a real redis-server (the test skips on the embedded broker: it
// needs one to do what), and returns the node, the admin listener's URL and
// the redis-server's address and key prefix.
func adminOnRedis(t *testing.T, tok, what string) (s *serveBinary, admin, redisAddr, prefix string) {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	chromiumPath(t)
	s, admin, _ = newServeBinaryWithAdmin(t, "mara "+tok)
	if !s.hasFlag(t, "--admin-token-file") {
		t.Skip("this server has no moderation API")
	}
	redisAddr, prefix = argAfter(s.args, "--redis"), argAfter(s.args, "--redis-prefix")
	if redisAddr == "embedded" {
		t.Skip("needs a redis-server to " + what)
	}
	return s, admin, redisAddr, prefix
}
