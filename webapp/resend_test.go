package webapp

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserSafeChatResends is docs/protocol.md "Safe chat resends" in the
// app. Sending: every line carries a cid; a line answered unavailable
// (here after the server stored it anyway) is sent again with the same
// cid, so the other side gets two copies with one cid; the line shows once.
// Receiving: copies with a (from, cid) already seen are dropped, also when
// their line ids differ and after a reload, and only those.
func TestBrowserSafeChatResends(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := newFakeServer(t)
	id := srv.seedListing(t, "Red road bike", nil)
	peer := dialProto(t, srv.URL())
	peer.mustOK(`{"cmd":"login","user":"900","password":"seller-password"}`)

	shots := artifactDir(t, "resends")
	n := 0
	a := newTab(t, startBrowser(t), "buyer", 390, 844, shots, &n)
	a.signUpAndOpenChat(srv, id, "900")

	// Sending: the first try is stored but answered unavailable.
	srv.mu.Lock()
	srv.chatLate = 1
	srv.mu.Unlock()
	const line = "Is the bike still for sale?"
	a.typeInto("#chat-input", line)
	a.click("#chat-send")
	a.wait("sent after the resend", tickOf(line)+` === "sent"`)
	isLine := func(f map[string]any) bool { return f["cmd"] == "message" && f["type"] == "chat" && f["msg"] == line }
	var copies []map[string]any
	for range 2 {
		if !peer.waitPush(func(f map[string]any) bool {
			if isLine(f) {
				copies = append(copies, f)
			}
			return isLine(f)
		}, waitFor) {
			t.Fatalf("the peer got %d copies of the line, want 2", len(copies))
		}
	}
	cid, _ := copies[0]["cid"].(string)
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(cid) || copies[1]["cid"] != cid {
		t.Fatalf("cids %v and %v, want one cid of 32 hex digits", copies[0]["cid"], copies[1]["cid"])
	}
	if fmt.Sprint(copies[0]["msg_id"]) == fmt.Sprint(copies[1]["msg_id"]) {
		t.Fatalf("both copies have msg_id %v", copies[0]["msg_id"])
	}
	if got := a.eval(countText("[data-testid=chat-text]", line)); got != "1" {
		t.Errorf("the buyer shows the line %s times, want once", got)
	}
	me, _ := copies[0]["from"].(string)

	// The connection drops after the store, before the server_ack: the
	// line goes again after the reconnect, with its cid.
	srv.mu.Lock()
	srv.chatDrop = 1
	srv.mu.Unlock()
	const line2 = "Can I see it tomorrow?"
	a.typeInto("#chat-input", line2)
	a.click("#chat-send")
	a.wait("sent after the reconnect", tickOf(line2)+` === "sent"`)
	isLine2 := func(f map[string]any) bool { return f["cmd"] == "message" && f["type"] == "chat" && f["msg"] == line2 }
	copies = copies[:0]
	for range 2 {
		if !peer.waitPush(func(f map[string]any) bool {
			if isLine2(f) {
				copies = append(copies, f)
			}
			return isLine2(f)
		}, waitFor) {
			t.Fatalf("the peer got %d copies of the second line, want 2", len(copies))
		}
	}
	if c2, _ := copies[0]["cid"].(string); c2 == "" || c2 == cid || copies[1]["cid"] != c2 {
		t.Fatalf("cids %v and %v, want one new cid", copies[0]["cid"], copies[1]["cid"])
	}
	if got := a.eval(countText("[data-testid=chat-text]", line2)); got != "1" {
		t.Errorf("the buyer shows the second line %s times, want once", got)
	}

	// Receiving: an app whose line ids start again on each connection
	// sends one line twice under one cid and two ids, then another line
	// with the same text and its own cid.
	const answer = "Yes, it is."
	send := func(text, cid string, lineID int) {
		peer.mustOK(`{"cmd":"message","type":"chat","to":"` + me + `","msg":"` + text + `","cid":"` + cid + `","id":` +
			fmt.Sprint(lineID) + `,"post_id":` + id + `,"is_sender_post":true,"nick":"Seller Sam"}`)
	}
	send(answer, "sam-1", 1)
	send(answer, "sam-1", 2)
	send(answer, "sam-2", 3)
	send("That is all.", "sam-3", 4)
	a.wait("the last line", exactText("[data-testid=chat-text]", "That is all."))
	if got := a.eval(countText("[data-testid=chat-text]", answer)); got != "2" {
		t.Errorf("the buyer shows the answer %s times, want twice (once per cid)", got)
	}
	a.shot("once-per-cid")

	// A copy after a reload is still known.
	a.do(chromedp.Reload())
	a.state("online")
	send(answer, "sam-1", 5)
	send("Still there?", "sam-4", 6)
	a.wait("the line after the reload", exactText("[data-testid=chat-text]", "Still there?"))
	if got := a.eval(countText("[data-testid=chat-text]", answer)); got != "2" {
		t.Errorf("after a reload the buyer shows the answer %s times, want twice", got)
	}
	a.noConsoleErrors("after the resends")
}
