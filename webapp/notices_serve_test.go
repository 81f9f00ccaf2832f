package webapp

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// Notices against the real binary and a real Redis: a seller publishes
// two listings over the protocol, then logs in from a desktop tab; the
// operator's `occase moderate remove --reason scam --note ...` shows the
// notice in that tab, and a second removal is pushed to it; both are read
// again at the next login, in a phone tab, until OK clears them on the
// server, after which a login counts none.
func TestBrowserNoticesAgainstServe(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	chromiumPath(t)
	s := newServeBinary(t)
	var redisArgs []string
	for i, a := range s.args {
		if a == "--redis" || a == "--redis-prefix" {
			redisArgs = append(redisArgs, a, s.args[i+1])
		}
	}
	moderate := func(args ...string) (string, error) {
		cmd := exec.Command(s.bin, append(append([]string{"moderate", args[0]}, redisArgs...), args[1:]...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	seller := dialProto(t, s.URL())
	reg := seller.mustOK(`{"cmd":"register"}`)
	id, pwd := fmt.Sprint(reg["id"]), fmt.Sprint(reg["password"])
	publish := func(title string) string {
		pub := seller.mustOK(`{"cmd":"publish","items":[{"body":"{\"title\":\"` + title + `\",\"msg\":\"x\",\"price\":120}","to":[[[0,0,0]],[[0,0,0]]],"features":0,"range_values":[120,2020,0]}]}`)
		return fmt.Sprint(pub["id"])
	}
	bike, sofa := publish("Blue city bike"), publish("Green sofa")

	shots := shotDir(t, "notices-serve")
	n := 0
	browser := startBrowser(t)
	logIn := func(b *tab) {
		b.do(chromedp.Navigate(s.URL() + "/"))
		b.do(chromedp.WaitVisible(chromedp.CSS("#signup-btn")))
		b.click("#signup-btn")
		b.do(chromedp.WaitVisible(chromedp.CSS("#login-id")))
		b.typeInto("#login-id", id)
		b.typeInto("#login-password", pwd)
		b.click("#login-btn")
		b.state("online")
	}
	d := newTab(t, browser, "seller-desktop", 1280, 800, shots, &n)
	logIn(d)
	// The app asks for notices after its login; a removal right after may
	// come before that request: it is then read by it instead of pushed.
	if out, err := moderate("remove", bike, "--reason", "scam", "--note", "Asks for a deposit <b>first</b>"); err != nil ||
		!strings.Contains(out, "user "+id+" was told why (scam)") {
		t.Fatalf("moderate remove --reason: %v\n%s", err, out)
	}
	const first = "Your listing “Blue city bike” was removed by the moderators: scam or fraud — Asks for a deposit <b>first</b>"
	d.wait("the notice in the open tab", `!document.getElementById("notices").hidden && `+hasText("#notices-list li", first))
	// Shown: the app has asked, so the next one is pushed.
	if out, err := moderate("remove", sofa, "--reason", "prohibited"); err != nil {
		t.Fatalf("moderate remove --reason prohibited: %v\n%s", err, out)
	}
	const second = "Your listing “Green sofa” was removed by the moderators: prohibited item"
	d.wait("the second pushed", `document.querySelectorAll("#notices-list li").length === 2 && `+hasText("#notices-list li", second))
	d.shot("notices-live")
	d.do(chromedp.Navigate("about:blank"))

	p := newTab(t, browser, "seller-phone", 390, 844, shots, &n)
	logIn(p)
	p.wait("both at the next login", `document.querySelectorAll("#notices-list li").length === 2 && `+hasText("#notices-list li", first)+
		` && `+hasText("#notices-list li", second))
	p.shot("notices-at-login")
	p.click("#notices-ok")
	p.wait("dismissed", `document.getElementById("notices").hidden`)
	p.do(chromedp.Reload())
	p.state("online")
	// The login_ack of a fresh connection says how many wait: none now.
	check := dialProto(t, s.URL())
	ack := check.mustOK(`{"cmd":"login","user":"` + id + `","password":"` + pwd + `"}`)
	if _, has := ack["notices"]; has {
		t.Fatalf("login_ack after OK: %v", ack)
	}
	p.noConsoleErrors("notices against serve")
}
