package webapp

import (
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserEpochReset is issue 11 item 4 in the browser: the server loses
// its data, ids start again, and the app must not carry the old account's
// conversations and listings over to whoever holds those ids now.
func TestBrowserEpochReset(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := newFakeServer(t)
	srv.mu.Lock()
	srv.epoch = "e1"
	srv.mu.Unlock()
	shots := artifactDir(t, "epoch")
	n := 0
	x := newTab(t, startBrowser(t), "X", 390, 844, shots, &n)
	x.do(chromedp.Navigate(srv.URL() + "/"))
	x.click("#signup-btn")
	const reset = "The server's data was reset"

	// someone publishes and writes to X, so that X holds a listing and a chat.
	someone := func(title string) {
		t.Helper()
		xid := x.eval(`document.getElementById("acct-id").textContent`)
		m := dialProto(t, srv.URL())
		m.mustOK(`{"cmd":"register"}`)
		gid := m.publishBody(`{"title":"` + title + `"}`)
		m.mustOK(`{"cmd":"message","type":"chat","to":"` + xid + `","msg":"Hello about ` + title + `","post_id":` + gid + `,"id":1,"is_sender_post":true}`)
		x.wait("listing", hasText("#post-list [data-testid=post-title]", title))
		x.wait("chat", `document.querySelectorAll("#chat-list [data-testid=chat-row]").length === 1`)
	}
	empty := func(what string) {
		t.Helper()
		x.wait(what+": no chats", `document.querySelectorAll("#chat-list [data-testid=chat-row]").length === 0`)
		x.wait(what+": no listings", `document.querySelectorAll("#post-list [data-testid=post-card]").length === 0`)
	}
	storedOnly := func(what string) {
		t.Helper()
		x.wait(what+": only the nick and the epoch stored",
			`JSON.stringify(Object.keys(localStorage).filter(k => k.startsWith("occase.")).sort()) === '["occase.v1.epoch","occase.v1.nick"]'`)
	}

	x.typeInto("#nick-input", "Xena")
	x.click("#register-btn")
	x.state("online")
	someone("Old bike")

	// 1. An older-style failed login without an epoch: the app says what it
	// always said; a new registration (id 1 again) then carries the new
	// epoch, and nothing of the old user 1 comes with it.
	srv.LoseData(t, "e2")
	x.wait("bad credentials", hasText("#banner-text", "Wrong user id or password"))
	x.wait("account screen", `!document.getElementById("account-view").hidden`)
	x.click("#register-btn")
	x.state("online")
	x.wait("reset said", hasText("#banner-text", reset))
	x.wait("id 1 again", `document.getElementById("acct-id").textContent === "1"`)
	empty("after registering in the new epoch")
	x.shot("registered-after-reset")

	// 2. A failed login that names the new epoch: everything goes, the
	// person is told, and nothing registers until they act.
	someone("Second bike")
	srv.mu.Lock()
	srv.epochOnFail = true
	srv.mu.Unlock()
	srv.LoseData(t, "e3")
	x.wait("reset said", hasText("#banner-text", reset))
	x.wait("account screen", `!document.getElementById("account-view").hidden`)
	storedOnly("after a failed login in a new epoch")
	x.shot("reset-on-login")
	srv.mu.Lock()
	users := len(srv.users)
	srv.mu.Unlock()
	if users != 0 {
		t.Errorf("%d accounts registered without the person asking", users)
	}

	// 3. Stored credentials accepted under another epoch (the same ids
	// exist again): the app stops instead of acting as that user.
	x.click("#register-btn")
	x.state("online")
	x.wait("the reset message answered by registering", `document.getElementById("banner").hidden`)
	someone("Third bike")
	srv.Stop(t)
	srv.mu.Lock()
	srv.epoch = "e4"
	srv.mu.Unlock()
	srv.Start(t)
	x.wait("reset said", hasText("#banner-text", reset))
	x.wait("account screen", `!document.getElementById("account-view").hidden`)
	x.state("idle")
	storedOnly("after a login in a new epoch")
	if got := x.eval(`document.getElementById("nick-input").value`); got != "Xena" {
		t.Errorf("nick %q after the reset, want it kept", got)
	}
	x.consoleErrors() // the refused reconnects while the server was down
	x.click("#register-btn")
	x.state("online")
	// The listing is still on this server (only its epoch changed), so it
	// comes back with the new account's subscription; the chat does not.
	x.wait("no chats after registering again", `document.querySelectorAll("#chat-list [data-testid=chat-row]").length === 0`)
	x.noConsoleErrors("registering after a reset")
}
