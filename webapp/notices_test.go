package webapp

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
	"github.com/occase/occase/wire"
)

// fakeNotices is the fake's side of docs/protocol.md "Notices": a list
// per user, ids growing; a connection that asked once is pushed new ones.
type fakeNotices struct {
	seq    int64
	list   map[string][]map[string]any
	want   map[*fakeConn]bool
	asks   int      // notices requests received
	optIns int      // logins and registrations that asked for notices to be pushed
	seen   []string // the upto of each notices_seen, as sent
}

// notify gives user a notice that post (titled title) was removed for
// reason with note, as `occase moderate remove --reason` does, and pushes
// it to the user's connection if it asked for notices.
func (s *fakeServer) notify(user, post, title, reason, note string) {
	s.mu.Lock()
	if s.notes.list == nil {
		s.notes.list = map[string][]map[string]any{}
	}
	s.notes.seq++
	id, _ := strconv.ParseUint(post, 10, 64)
	n := map[string]any{"id": s.notes.seq, "kind": "post_removed", "post": id, "reason": reason, "at": 1700000000000}
	if title != "" {
		n["title"] = title
	}
	if note != "" {
		n["note"] = note
	}
	s.notes.list[user] = append(s.notes.list[user], n)
	var keep []map[string]any
	for i, p := range s.posts {
		if strconv.FormatUint(u64(p["id"]), 10) != post {
			keep = append(keep, s.posts[i])
		}
	}
	s.posts = keep
	c := s.online[user]
	push := c != nil && s.notes.want[c]
	s.mu.Unlock()
	if push {
		f := map[string]any{"cmd": "notice"}
		for k, v := range n {
			f[k] = v
		}
		c.write(f)
	}
}

// optIn: a register or login with "notices":true is pushed notices.
// s.mu is held.
func (n *fakeNotices) optIn(c *fakeConn, f map[string]any) {
	if f["notices"] != true {
		return
	}
	if n.want == nil {
		n.want = map[*fakeConn]bool{}
	}
	n.want[c] = true
	n.optIns++
}

func (s *fakeServer) noticesCmd(c *fakeConn, cmd string, f map[string]any) bool {
	s.mu.Lock()
	if cmd == "notices" {
		if s.notes.want == nil {
			s.notes.want = map[*fakeConn]bool{}
		}
		s.notes.want[c] = true
		s.notes.asks++
		list := append([]map[string]any{}, s.notes.list[c.user]...)
		s.mu.Unlock()
		c.write(map[string]any{"cmd": "notices_ack", "result": "ok", "notices": list})
		return true
	}
	raw, ok := f["upto"]
	q, _ := json.Marshal(raw)
	s.notes.seen = append(s.notes.seen, string(q))
	upto := u64(raw)
	if !ok || upto == 0 {
		s.mu.Unlock()
		c.write(map[string]any{"cmd": "error", "result": "fail", "reason": wire.BadRequest})
		_ = c.ws.Close(websocket.StatusPolicyViolation, "bad request")
		return false
	}
	var left []map[string]any
	for _, n := range s.notes.list[c.user] {
		if u64(n["id"]) > upto {
			left = append(left, n)
		}
	}
	s.notes.list[c.user] = left
	s.mu.Unlock()
	c.write(map[string]any{"cmd": "notices_seen_ack", "result": "ok", "upto": upto, "notices": len(left)})
	return true
}

// TestBrowserNotices: the moderators remove a listing of this account with
// a reason. Online, the notice is pushed (the app's login said
// "notices":true) and shown in a bar above every view; after a reload, the
// one made meanwhile is read at login (login_ack counted it). Hostile text
// (the listing's title, the note) is shown as text, never markup. OK sends
// notices_seen with the newest id and the bar goes for good; a login that
// counts none sends no notices request.
func TestBrowserNotices(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := newFakeServer(t)
	shots := shotDir(t, "notices")
	n := 0
	browser := startBrowser(t)
	const hostile = `<img src=x onerror="window.pwned=1">`
	counts := func() (asks, optIns int) {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return srv.notes.asks, srv.notes.optIns
	}
	for _, size := range moderationSizes {
		b := newTab(t, browser, size.name, size.w, size.h, shots, &n)
		_, opted := counts()
		me := signUp(t, b, srv.URL(), "Nora")
		pollUntil(t, "the registration to ask for pushed notices", func() bool { _, o := counts(); return o > opted })
		srv.seed(t, me, `{"body":"{\"title\":\"Red road bike\",\"nick\":\"Nora\"}","features":2,"range_values":[5],"to":[[[0,0,0]],[[0,0,0]]]}`)
		srv.mu.Lock()
		bike := strconv.FormatInt(srv.nextPost-1, 10)
		srv.mu.Unlock()

		// Live.
		srv.notify(me, bike, "Red road bike", "scam", "Asks for a deposit by bank transfer.")
		b.wait("the notice", `!document.getElementById("notices").hidden && `+
			hasText("#notices-list li", "Your listing “Red road bike” was removed by the moderators: scam or fraud — Asks for a deposit by bank transfer."))
		b.shot("notice-live")
		lowContrast(t, b, "#notices h2, #notices li, #notices button")
		b.click("#tab-mine")
		b.wait("the bar on My listings", `!document.getElementById("mine-view").hidden && !document.getElementById("notices").hidden`)

		// Made while away, hostile: read at login, shown as text.
		srv.notify(me, "987654", hostile, "other", "line one\n<b>line two</b>")
		asked, _ := counts()
		b.do(chromedp.Reload())
		b.state("online")
		b.wait("both notices after the reload", `document.querySelectorAll("#notices-list li").length === 2 && `+
			hasText("#notices-title", "2 messages from the moderators")+` && `+
			hasText("#notices-list li", "Your listing “"+hostile+"” was removed by the moderators: other — line one\n<b>line two</b>"))
		if a, _ := counts(); a != asked+1 {
			t.Errorf("%s: %d notices requests after a login that counted 2, want 1", size.name, a-asked)
		}
		if b.ok(`window.pwned === 1 || document.querySelector("#notices img, #notices b") !== null`) {
			t.Fatalf("%s: a notice's text became markup", size.name)
		}
		b.shot("notices-two")

		b.click("#notices-ok")
		b.wait("dismissed", `document.getElementById("notices").hidden`)
		srv.mu.Lock()
		seen := srv.notes.seen[len(srv.notes.seen)-1]
		left := len(srv.notes.list[me])
		srv.mu.Unlock()
		if left != 0 || seen != strconv.FormatInt(srv.notes.seq, 10) {
			t.Fatalf("%s: notices_seen upto %s (newest %d), %d left", size.name, seen, srv.notes.seq, left)
		}
		asked, opted = counts()
		b.do(chromedp.Reload())
		b.state("online")
		pollUntil(t, "the login after the reload", func() bool { _, o := counts(); return o > opted })
		if a, _ := counts(); a != asked {
			t.Errorf("%s: a login that counted no notices asked for them", size.name)
		}
		if b.ok(`!document.getElementById("notices").hidden`) {
			t.Errorf("%s: the bar came back after being dismissed", size.name)
		}
		b.noConsoleErrors("notices")
	}
}

// pollUntil polls cond for up to 5 s.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 100 {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("waited in vain for %s", what)
}
