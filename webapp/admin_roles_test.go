package webapp

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"

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
