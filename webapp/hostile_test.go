package webapp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// protoClient speaks the wire protocol from Go, as another app (or a
// script) would: the hostile stage publishes and writes through it.
type protoClient struct {
	t      *testing.T
	ctx    context.Context
	c      *websocket.Conn
	pushes []map[string]any
}

func dialProto(t *testing.T, base string) *protoClient {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	t.Cleanup(cancel)
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &protoClient{t: t, ctx: ctx, c: c}
}

func (p *protoClient) send(req string) {
	p.t.Helper()
	if err := p.c.Write(p.ctx, websocket.MessageText, []byte(req)); err != nil {
		p.t.Fatalf("write %s: %v", req, err)
	}
}

// read returns the next frame; ok is false when none came within d.
func (p *protoClient) read(d time.Duration) (map[string]any, bool) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, d)
	defer cancel()
	_, b, err := p.c.Read(ctx)
	if err != nil {
		if ctx.Err() != nil && p.ctx.Err() == nil {
			return nil, false
		}
		p.t.Fatalf("read: %v", err)
	}
	var f map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&f); err != nil {
		p.t.Fatalf("frame %q: %v", b, err)
	}
	return f, true
}

// call sends req and returns its reply (the next frame with a result);
// frames pushed meanwhile are kept for waitPush.
func (p *protoClient) call(req string) map[string]any {
	p.t.Helper()
	p.send(req)
	for {
		f, _ := p.read(waitFor)
		if _, ok := f["result"]; ok {
			return f
		}
		p.pushes = append(p.pushes, f)
	}
}

func (p *protoClient) mustOK(req string) map[string]any {
	p.t.Helper()
	r := p.call(req)
	if r["result"] != "ok" {
		p.t.Fatalf("%s: %v", req, r)
	}
	return r
}

// waitPush reports whether a pushed frame matching pred came within d.
func (p *protoClient) waitPush(pred func(map[string]any) bool, d time.Duration) bool {
	p.t.Helper()
	for i, f := range p.pushes {
		if pred(f) {
			p.pushes = append(p.pushes[:i], p.pushes[i+1:]...)
			return true
		}
	}
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		f, ok := p.read(left)
		if !ok {
			return false
		}
		if pred(f) {
			return true
		}
		p.pushes = append(p.pushes, f)
	}
}

// publishBody publishes a post with this body at the menus' first codes
// and returns its id.
func (p *protoClient) publishBody(body string) string {
	p.t.Helper()
	item, _ := json.Marshal(map[string]any{"body": body, "features": 2, "range_values": []int{100, 2020, 0}})
	req := `{"cmd":"publish","items":[` + string(item[:len(item)-1]) + `,"to":[[[0,0,0]],[[0,0,0]]]}]}`
	return fmt.Sprint(p.mustOK(req)["id"])
}

// Bodies a hostile publisher sends (issue 10 item 8). The first three must
// show as unreadable cards; the others render with their text as text.
var hostileBodies = []string{
	`{"title":{"toString":1},"msg":"object title"}`,
	`{"title":123,"msg":["a"],"nick":{"x":1},"price":1e999}`,
	`not json at all`,
	`{"title":"<img src=x onerror=\"window.__pwned=1\">","msg":"<script>window.__pwned=2</script><b>bold</b>","nick":"<svg onload=window.__pwned=3>","price":5}`,
	`{"title":"Photos from elsewhere","images":["javascript:window.__pwned=4","//127.0.0.2:9/x.jpg","../../etc/passwd.jpg","data:image/png;base64,AAAA",7]}`,
	`{"title":"` + strings.Repeat("Huge ", 1000) + `","msg":"` + strings.Repeat("y", 10000) + `","price":5}`,
}

const hostileUnreadable = 3

// pageIsClean is a predicate that holds when no hostile text became markup
// or code, every image is this origin's, and nothing failed to render.
const pageIsClean = `(() => {
  if (window.__pwned !== undefined) return false;
  if (document.body.dataset.renderFailures !== undefined) return false;
  if (document.querySelector("main [onerror], main [onload], main script, main svg, main b")) return false;
  return [...document.images].every(i => i.src.startsWith("blob:") ||
    (new URL(i.src).origin === location.origin && /^\/[0-9a-f]{8,64}\/[A-Za-z0-9+_-]{1,64}\.(jpg|jpeg|png|webp)$/.test(new URL(i.src).pathname)));
})()`

// hostileStage is issue 10 item 8 in the browser: a script publishes posts
// whose bodies hold objects where text goes, markup, foreign image URLs and
// huge strings, and writes chat lines of the same kind; the other posts and
// the chats keep working, nothing of it becomes markup or code.
func hostileStage(t *testing.T, srv server, a, b *tab, have features) {
	const good = "Plain listing after hostile ones"
	const line = "Plain line after hostile ones"
	const answer = "Answer to a stranger"
	const toA = "Still talking to A"
	bid := b.eval(`document.getElementById("acct-id").textContent`)
	m := dialProto(t, srv.URL())
	mid := fmt.Sprint(m.mustOK(`{"cmd":"register"}`)["id"])
	for _, body := range hostileBodies {
		m.publishBody(body)
	}
	gid := m.publishBody(`{"title":"` + good + `","msg":"Nothing odd here.","nick":"Mallory","price":20}`)

	for _, tb := range []*tab{a, b} {
		tb.click("#tab-browse")
		tb.wait("the post after the hostile ones", hasText("#post-list [data-testid=post-title]", good))
		tb.wait("unreadable cards", fmt.Sprintf(`document.querySelectorAll("#post-list [data-unreadable]").length === %d`, hostileUnreadable))
		tb.wait("markup shown as text", hasText("#post-list [data-testid=post-title]", `<img src=x onerror=`))
		tb.wait("the foreign-photo post shown without photos", hasText("#post-list [data-testid=post-title]", "Photos from elsewhere"))
		tb.wait("huge title cut", `[...document.querySelectorAll("#post-list [data-testid=post-title]")].every(e => e.textContent.length <= 200)`)
		tb.wait("page clean", pageIsClean)
		tb.shot("hostile-posts")
	}

	// Chat lines of the wrong shape, then a plain one.
	for _, req := range []string{
		`{"cmd":"message","type":"chat","to":"` + bid + `","msg":{"toString":1},"post_id":` + gid + `,"id":1,"nick":{"a":1},"is_sender_post":true}`,
		`{"cmd":"message","type":"chat","to":"` + bid + `","msg":"<img src=x onerror=window.__pwned=5>","post_id":` + gid + `,"id":2,"is_sender_post":true}`,
		`{"cmd":"message","type":"chat","to":"` + bid + `","msg":"about no post","post_id":{"x":1},"id":3}`,
		`{"cmd":"message","type":"chat","to":"` + bid + `","msg":"about no post","post_id":"12","id":"x"}`,
		`{"cmd":"message","type":"app_ack_read","to":"` + bid + `","post_id":` + gid + `,"ack_ids":[{"a":1},"x",-1]}`,
	} {
		m.mustOK(req)
	}
	m.send(`{"cmd":"presence","to":"` + bid + `","type":"writing","post_id":{"x":1}}`)
	m.mustOK(`{"cmd":"message","type":"chat","to":"` + bid + `","msg":"` + line + `","post_id":` + gid + `,"id":4,"nick":"Mallory","is_sender_post":true}`)

	b.click("#tab-chats")
	row := `#chat-list [data-testid=chat-row][data-chat="` + gid + `:` + mid + `"]`
	b.wait("the stranger's chat listed", `document.querySelector(`+js(row)+`) !== null`)
	b.wait("no chat about no post", `document.querySelectorAll("#chat-list [data-testid=chat-row]").length === 2`)
	b.click(row)
	b.wait("the plain line", hasText("#chat-messages [data-testid=chat-text]", line))
	b.wait("the object line unreadable", `document.querySelectorAll("#chat-messages .msg.unreadable").length === 1`)
	b.wait("markup line as text", hasText("#chat-messages [data-testid=chat-text]", "<img src=x onerror="))
	b.wait("page clean", pageIsClean)
	b.typeInto("#chat-input", answer)
	b.click("#chat-send")
	if !m.waitPush(func(f map[string]any) bool { return f["cmd"] == "message" && f["msg"] == answer }, waitFor) {
		t.Fatal("the stranger never got B's answer")
	}

	// The chat with A still works both ways.
	b.click("#chat-back")
	b.click(`#chat-list [data-testid=chat-row]:not([data-chat="` + gid + `:` + mid + `"])`)
	b.typeInto("#chat-input", toA)
	b.click("#chat-send")
	a.click("#tab-chats")
	a.click("#chat-list [data-testid=chat-row]")
	a.wait("B's line after the hostile ones", hasText("#chat-messages [data-testid=chat-text]", toA))
	b.wait("A read it", tickOf(toA)+` === "read"`)

	// The stranger deletes the listing: it leaves the lists, and the chat
	// about it says so.
	b.click("#chat-back")
	b.click(row)
	m.mustOK(`{"cmd":"delete","id":` + gid + `}`)
	if have.deletions != "" {
		t.Log("not checking post_deleted: " + have.deletions)
	} else {
		b.wait("chat marked", `!document.getElementById("chat-removed").hidden`)
		b.shot("listing-removed")
		a.click("#tab-browse")
		a.wait("listing gone", `![...document.querySelectorAll("#post-list [data-testid=post-title]")].some(e => e.textContent === `+js(good)+`)`)
	}
	a.wait("page clean", pageIsClean)
	b.wait("page clean", pageIsClean)
}
