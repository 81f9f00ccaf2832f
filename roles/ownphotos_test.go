package roles_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/roles"
)

// reviewTokenShape is the shape of a review token (images.ReviewToken),
// as the web app and the operator page check it.
var reviewTokenShape = regexp.MustCompile(`^\d{1,12}\.[0-9a-f]{64}$`)

// until reads c's frames until one with cmd, and returns it and every
// frame read, re-encoded.
func (c *client) until(cmd string) (msg, []string) {
	c.t.Helper()
	var seen []string
	for {
		m := c.recv()
		b, _ := json.Marshal(m)
		seen = append(seen, string(b))
		if m.str("cmd") == cmd {
			return m, seen
		}
	}
}

// itemTokens returns the images_review of item (a post object), checking
// it is an array of strings.
func itemTokens(t *testing.T, item any) []string {
	t.Helper()
	p, _ := item.(map[string]any)
	raw, ok := p["images_review"]
	if !ok {
		return nil
	}
	list, ok := raw.([]any)
	if !ok {
		t.Fatalf("images_review %v: not an array", raw)
	}
	out := make([]string, len(list))
	for i, v := range list {
		if out[i], ok = v.(string); !ok {
			t.Fatalf("images_review %v: not strings", raw)
		}
	}
	return out
}

// The seller of a listing hidden pending review sees its photos, which the
// img nodes refuse to everyone else (docs/protocol.md "The author's
// photos of a listing under review"): every copy the author gets marked
// "under_review" (the hide's live frame, a subscribe's catch-up, my_posts,
// an edit's ack and live frame) carries a review token per photo path,
// which opens the photo; nobody else's frame ever carries one, and a
// listing not under review carries none.
func TestPhotosAuthorReviewTokens(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options, photoAll(t.TempDir()))
		bc := brokertest.Open(t, b.Options)
		jpg, _ := testPhotos(t)
		seller := register(t, n.url)
		names := seller.filenames()
		photos := uploadJPG(t, n.base, names[:2]...)
		// A path of the shape whose digest no img node names: no token.
		odd := "abcdef12/odd.png"
		live := seller.publishPhotos("Live", photos[1])
		id := seller.publishPhotos("Camera", photos[0], "not a path", odd, photos[1])

		buyer := register(t, n.url)
		buyer.send(`{"cmd":"subscribe","deletions":true}`)
		_, buyerSeen := buyer.until("subscribe_ack")
		seller.send(`{"cmd":"subscribe","deletions":true}`)
		seller.until("subscribe_ack")

		// The live listing: the seller's my_posts carries no token.
		seller.send(`{"cmd":"my_posts"}`)
		m, _ := seller.until("my_posts_ack")
		for _, it := range m["items"].([]any) {
			if tok := itemTokens(t, it); tok != nil {
				t.Fatalf("a listing not under review carries images_review %v", tok)
			}
		}

		hide(t, bc, id, 91)
		awaitPhoto(t, n.base, "/"+photos[0], http.StatusNotFound, "hidden")

		check := func(where string, item any) {
			t.Helper()
			p := item.(map[string]any)
			if p["under_review"] != true {
				t.Fatalf("%s: %v not under review", where, p)
			}
			tok := itemTokens(t, item)
			if len(tok) != 3 || !reviewTokenShape.MatchString(tok[0]) || tok[1] != "" || !reviewTokenShape.MatchString(tok[2]) {
				t.Fatalf("%s: images_review %q, want a token, \"\", a token (the photo paths %s, %s, %s)", where, tok, photos[0], odd, photos[1])
			}
			for i, ph := range []string{photos[0], photos[1]} {
				tk := tok[2*i]
				if code, body := httpDo(t, http.MethodGet, n.base+"/"+ph+"?review="+tk, nil); code != http.StatusOK || len(body) != len(jpg) {
					t.Fatalf("%s: GET the photo with the author's token: %d, %d bytes", where, code, len(body))
				}
			}
			// A token is for its photo only.
			if code, _ := httpDo(t, http.MethodGet, n.base+"/"+photos[0]+"?review="+tok[2], nil); code != http.StatusNotFound {
				t.Fatalf("%s: the photo with another photo's token: %d, want 404", where, code)
			}
		}

		// The hide's live frame to the seller's subscription.
		m, _ = seller.until("post")
		check("the hide's frame", m["items"].([]any)[0])
		// my_posts.
		seller.send(`{"cmd":"my_posts"}`)
		m, _ = seller.until("my_posts_ack")
		items := m["items"].([]any)
		if len(items) != 2 || fmt.Sprint(items[0].(map[string]any)["id"]) != fmt.Sprint(id) || fmt.Sprint(items[1].(map[string]any)["id"]) != fmt.Sprint(live) {
			t.Fatalf("my_posts %v", m)
		}
		check("my_posts", items[0])
		if tok := itemTokens(t, items[1]); tok != nil {
			t.Fatalf("the live listing carries images_review %v", tok)
		}
		// A subscribe's catch-up on a new connection of the seller (the
		// old one is replaced).
		s2 := dial(t, n.url)
		s2.send(loginFrame(seller.id, seller.pwd))
		s2.expect("login_ack")
		s2.send(`{"cmd":"subscribe","deletions":true}`)
		s2.until("subscribe_ack")
		m, _ = s2.until("post")
		found := false
		for m.str("cmd") == "post" {
			for _, it := range m["items"].([]any) {
				if fmt.Sprint(it.(map[string]any)["id"]) == fmt.Sprint(id) {
					check("the catch-up", it)
					found = true
				} else if tok := itemTokens(t, it); tok != nil {
					t.Fatalf("the catch-up's live listing carries images_review %v", tok)
				}
			}
			if found {
				break
			}
			m = s2.recv()
		}
		if !found {
			t.Fatalf("the catch-up lacks the hidden listing")
		}
		// An edit: its ack, and its live frame to the seller.
		s2.send(fmt.Sprintf(`{"cmd":"update","id":%d,"items":[{"body":%s,"to":[[[0,0,0]],[[0,0,0]]],"features":4,"range_values":[1,2,3]}]}`,
			id, mustJSONString(t, map[string]any{"title": "Edited", "images": []string{photos[0], "not a path", odd, photos[1]}})))
		for acked, framed := false, false; !acked || !framed; { // in either order
			switch m = s2.recv(); m.str("cmd") {
			case "update_ack":
				if m.str("result") != "ok" {
					t.Fatalf("update_ack %v", m)
				}
				check("the edit's ack", m["post"])
				acked = true
			case "post":
				check("the edit's frame", m["items"].([]any)[0])
				framed = true
			}
		}

		// A status: its ack too.
		s2.send(fmt.Sprintf(`{"cmd":"set_status","id":%d,"status":"reserved"}`, id))
		for acked := false; !acked; {
			if m = s2.recv(); m.str("cmd") == "set_status_ack" {
				if m.str("result") != "ok" {
					t.Fatalf("set_status_ack %v", m)
				}
				check("the status's ack", m["post"])
				acked = true
			}
		}

		// Nobody else: the buyer's subscription got the hide as a
		// deletion, and no frame of the buyer's, nor of another user's
		// catch-up or my_posts, carries a token.
		other := register(t, n.url)
		other.send(`{"cmd":"subscribe","deletions":true}`)
		_, otherSeen := other.until("subscribe_ack")
		other.send(`{"cmd":"my_posts"}`)
		_, more := other.until("my_posts_ack")
		otherSeen = append(otherSeen, more...)
		buyer.send(`{"cmd":"my_posts"}`)
		_, more = buyer.until("my_posts_ack")
		buyerSeen = append(buyerSeen, more...)
		deleted := false
		for _, f := range buyerSeen {
			deleted = deleted || strings.Contains(f, `"cmd":"post_deleted"`) && strings.Contains(f, fmt.Sprintf(`"id":%d`, id))
		}
		if !deleted {
			t.Fatalf("the buyer's subscription was not told of the hide: %q", buyerSeen)
		}
		for _, f := range append(buyerSeen, otherSeen...) {
			if strings.Contains(f, "images_review") || strings.Contains(f, "under_review") {
				t.Fatalf("another user got %s", f)
			}
		}
		if code, _ := httpDo(t, http.MethodGet, n.base+"/"+photos[0], nil); code != http.StatusNotFound {
			t.Fatalf("the hidden photo without a token: %d", code)
		}
	})
}

func mustJSONString(t *testing.T, v any) string {
	t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := json.Marshal(string(body))
	return string(s)
}

// Separate roles: the db node's tokens open the photo on the img node
// (they share the image key); a db node without the image key sends the
// author's copy without images_review (nothing it could sign).
func TestPhotosAuthorReviewTokensSeparateRoles(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		db := startNode(t, b.Options, photoDB)
		img := startNode(t, b.Options, photoImg(t.TempDir()))
		keyless := startNode(t, b.Options, func(c *roles.Config) { c.Role = "db" })
		bc := brokertest.Open(t, b.Options)
		jpg, _ := testPhotos(t)
		seller := register(t, db.url)
		photo := uploadJPG(t, img.base, seller.filenames()[0])[0]
		id := seller.publishPhotos("Camera", photo)
		hide(t, bc, id, 91)
		awaitPhoto(t, img.base, "/"+photo, http.StatusNotFound, "hidden")
		seller.send(`{"cmd":"my_posts"}`)
		m, _ := seller.until("my_posts_ack")
		tok := itemTokens(t, m["items"].([]any)[0])
		if len(tok) != 1 || !reviewTokenShape.MatchString(tok[0]) {
			t.Fatalf("my_posts on the db node: images_review %q", tok)
		}
		if code, body := httpDo(t, http.MethodGet, img.base+"/"+photo+"?review="+tok[0], nil); code != http.StatusOK || len(body) != len(jpg) {
			t.Fatalf("the img node, the db node's token: %d", code)
		}

		// The node without the key: the same listing, marked, no tokens.
		s2 := dial(t, keyless.url)
		s2.send(loginFrame(seller.id, seller.pwd))
		s2.expect("login_ack")
		for deadline := time.Now().Add(10 * time.Second); ; {
			s2.send(`{"cmd":"my_posts"}`)
			m, _ = s2.until("my_posts_ack")
			items, _ := m["items"].([]any)
			if len(items) == 1 && items[0].(map[string]any)["under_review"] == true {
				if tok := itemTokens(t, items[0]); tok != nil {
					t.Fatalf("a node without the image key sent images_review %q", tok)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("my_posts on the keyless node: %v", m)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
