package webapp

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
	"github.com/occase/occase/wire"
)

// TestBrowserDeleteAccount: against the real binary and redis-server, at
// phone size, a person deletes their account from Account: a confirmation
// step that can be cancelled, then delete_account; the browser forgets the
// credentials and shows the start screen; the server refuses the old id's
// login.
func TestBrowserDeleteAccount(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	chromiumPath(t)
	s := newServeBinary(t)
	shots := artifactDir(t, "delete-account")
	n := 0
	a := newTab(t, startBrowser(t), "A", 390, 844, shots, &n)
	a.do(chromedp.Navigate(s.URL() + "/"))
	a.do(chromedp.WaitVisible(chromedp.CSS("#signup-btn")))
	a.click("#signup-btn")
	a.do(chromedp.WaitVisible(chromedp.CSS("#register-btn")))
	a.typeInto("#nick-input", "Dana")
	a.click("#register-btn")
	a.state("online")
	var creds struct{ User, Password string }
	if err := json.Unmarshal([]byte(a.eval(`localStorage.getItem("occase.v1.creds") || ""`)), &creds); err != nil || creds.User == "" {
		t.Fatalf("stored credentials: %v %+v", err, creds)
	}

	a.click("#tab-account")
	a.do(chromedp.WaitVisible(chromedp.CSS("#delete-acct-btn")))
	a.click("#delete-acct-btn")
	a.wait("the confirmation", `!document.getElementById("delete-acct-confirm").hidden && document.getElementById("delete-acct-id").textContent === `+js(creds.User))
	a.shot("delete-confirm")
	a.click("#delete-acct-cancel")
	a.wait("cancelled", `document.getElementById("delete-acct-confirm").hidden && !document.getElementById("delete-acct-btn").hidden`)
	if got := a.eval(`document.getElementById("conn-status").dataset.state + "|" + (localStorage.getItem("occase.v1.creds") ? "kept" : "gone")`); got != "online|kept" {
		t.Fatalf("after cancelling: %s", got)
	}

	a.click("#delete-acct-btn")
	a.do(chromedp.WaitVisible(chromedp.CSS("#delete-acct-go")))
	a.click("#delete-acct-go")
	a.wait("the start screen, the account forgotten", `!document.getElementById("account-view").hidden && localStorage.getItem("occase.v1.creds") === null && `+
		`localStorage.getItem("occase.v1.user."+`+js(creds.User)+`) === null && `+hasText("#notice", "Your account was deleted."))
	a.shot("deleted")
	a.noConsoleErrors("deleting the account")
	if got := a.eval(`document.getElementById("conn-status").dataset.state`); got != "idle" {
		t.Errorf("connection after the deletion: %s, want idle", got)
	}

	// The server agrees: the id cannot log in again.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+s.addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	login, _ := json.Marshal(map[string]string{"cmd": "login", "user": creds.User, "password": creds.Password})
	if err := c.Write(ctx, websocket.MessageText, login); err != nil {
		t.Fatal(err)
	}
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ack struct{ Cmd, Result, Reason string }
	if err := json.Unmarshal(b, &ack); err != nil || ack.Cmd != "login_ack" || ack.Reason != wire.BadCredentials {
		t.Fatalf("login of the deleted account: %s", b)
	}
}
