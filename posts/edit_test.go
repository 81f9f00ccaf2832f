package posts

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/wire"
)

// postOf decodes the one post of a post frame, or the "post" of an ack.
func postOf(t testing.TB, frame string) map[string]any {
	t.Helper()
	var m struct {
		Cmd   string
		Items []map[string]any
		Post  map[string]any
	}
	if err := json.Unmarshal([]byte(frame), &m); err != nil {
		t.Fatalf("%s: %v", frame, err)
	}
	if m.Post != nil {
		return m.Post
	}
	if m.Cmd != "post" || len(m.Items) != 1 {
		t.Fatalf("not a frame of one post: %s", frame)
	}
	return m.Items[0]
}

func (n *node) json(id uint64) string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if p := n.x.byID[id]; p != nil {
		return string(p.JSON)
	}
	return ""
}

// update, set_status and renew: owner-checked in Redis, broadcast to every
// node, keeping the post's id; subscriptions that asked for changes get
// the new version (or post_deleted when it left their filter), others
// nothing; a catch-up afterwards returns the new version.
func TestEditReachesEveryNode(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		cfg := Config{Clock: clk.Now, Menu: DemoMenu()}
		n1 := startNode(t, b.Options, cfg)
		n2 := startNode(t, b.Options, cfg)
		ctx := context.Background()
		seller, other := newConn("7"), newConn("8")
		// Cars/Volkswagen/Golf in Germany/Bavaria/Munich.
		id := n1.publish(t, seller, `{"cmd":"publish","items":[{"body":"{\"title\":\"Golf\"}","to":[[[0,0,0]],[[0,0,0]]],"features":1,"range_values":[9000]}]}`)
		n2.until(t, "node 2 has the post", func() bool { return n2.has(id) })
		golf, helmet := h(0, 0, 0), h(1, 2, 0)
		watchGolf, watchHelmet, v1 := newConn("20"), newConn("21"), newConn("22")
		subscribe(t, n2, watchGolf, fmt.Sprintf(`{"cmd":"subscribe","channels":[[],[%d]],"deletions":true,"last_post_id":%d}`, golf, id))
		subscribe(t, n2, watchHelmet, fmt.Sprintf(`{"cmd":"subscribe","channels":[[],[%d]],"deletions":true}`, helmet))
		subscribe(t, n2, v1, `{"cmd":"subscribe"}`)
		v1.wait(t, 2) // ack and catch-up

		update := func(c *fakeConn, id uint64, prod string) error {
			return n1.Update(ctx, c, req(t, fmt.Sprintf(`{"cmd":"update","id":%d,"items":[{"body":"{\"title\":\"Helmet, size M\"}","to":[[[0,0,0]],[%s]],"features":2,"range_values":[80]}]}`, id, prod)))
		}
		for _, tc := range []struct {
			name string
			err  error
			want string
		}{
			{"update by another user", update(other, id, "[1,2,0]"), wire.NotOwner},
			{"update of no post", update(seller, 999999, "[1,2,0]"), wire.NotFound},
			{"update outside the menu", update(seller, id, "[1,9,0]"), wire.BadRequest},
			{"set_status by another user", n1.SetStatus(ctx, other, req(t, fmt.Sprintf(`{"cmd":"set_status","id":%d,"status":"sold"}`, id))), wire.NotOwner},
			{"unknown status", n1.SetStatus(ctx, seller, req(t, fmt.Sprintf(`{"cmd":"set_status","id":%d,"status":"gone"}`, id))), wire.BadRequest},
			{"renew by another user", n1.Renew(ctx, other, req(t, fmt.Sprintf(`{"cmd":"renew","id":%d}`, id))), wire.NotOwner},
			{"renew of no post", n1.Renew(ctx, seller, req(t, `{"cmd":"renew","id":424242}`)), wire.NotFound},
		} {
			if reason(tc.err) != tc.want || isMalformed(tc.err) {
				t.Fatalf("%s: %v, want %s", tc.name, tc.err, tc.want)
			}
		}
		for _, bad := range []string{`{"cmd":"set_status","status":"sold"}`, fmt.Sprintf(`{"cmd":"set_status","id":%d}`, id), fmt.Sprintf(`{"cmd":"set_status","id":%d,"status":1}`, id), `{"cmd":"update","id":"x","items":[]}`} {
			if err := n1.SetStatus(ctx, seller, req(t, bad)); strings.Contains(bad, "set_status") && !isMalformed(err) {
				t.Fatalf("%s: %v, want malformed", bad, err)
			}
		}
		if f := seller.frames(); len(f) != 1 {
			t.Fatalf("refused changes sent %v", f[1:])
		}

		// The helmet was listed as a Golf: the seller moves it to
		// Motorcycles/Other/Other.
		clk.Add(time.Minute)
		if err := update(seller, id, "[1,2,0]"); err != nil {
			t.Fatal(err)
		}
		ack := seller.wait(t, 2)[1]
		if !strings.HasPrefix(ack, fmt.Sprintf(`{"cmd":"update_ack","result":"ok","id":%d,"post":{"id":%d,"from":"7",`, id, id)) {
			t.Fatalf("ack %s", ack)
		}
		p := postOf(t, ack)
		if p["edited"] != float64(clk.Now().Unix()) || p["date"] != float64(clk.Now().Add(-time.Minute).Unix()) || p["features"] != float64(2) {
			t.Fatalf("updated post %v", p)
		}
		// Node 2: the new version to who matches it, post_deleted to who
		// matched only the old one, whatever their last_post_id.
		if got := watchHelmet.wait(t, 2)[1]; postOf(t, got)["edited"] == nil {
			t.Fatalf("helmet watcher got %s", got)
		}
		if got := watchGolf.wait(t, 2)[1]; got != fmt.Sprintf(`{"cmd":"post_deleted","id":%d}`, id) {
			t.Fatalf("golf watcher got %s", got)
		}
		n2.until(t, "node 2 has the new version", func() bool { return strings.Contains(n2.json(id), "Helmet") })
		fresh := newConn("23")
		subscribe(t, n2, fresh, fmt.Sprintf(`{"cmd":"subscribe","channels":[[],[%d]]}`, helmet))
		if got := postOf(t, fresh.wait(t, 2)[1]); got["id"] != float64(id) || got["edited"] == nil {
			t.Fatalf("catch-up after the edit: %v", got)
		}
		n1.until(t, "node 1 has the new version", func() bool { return strings.Contains(n1.json(id), "Helmet") })
		if n := n2.json(id); n != n1.json(id) {
			t.Fatalf("the nodes disagree:\n%s\n%s", n, n1.json(id))
		}

		// Sold, then available again.
		if err := n1.SetStatus(ctx, seller, req(t, fmt.Sprintf(`{"cmd":"set_status","id":%d,"status":"sold"}`, id))); err != nil {
			t.Fatal(err)
		}
		if got := postOf(t, seller.wait(t, 3)[2]); got["status"] != "sold" || got["edited"] == nil {
			t.Fatalf("after set_status: %v", got)
		}
		if got := postOf(t, watchHelmet.wait(t, 3)[2]); got["status"] != "sold" {
			t.Fatalf("watcher after set_status: %v", got)
		}
		if err := n2.SetStatus(ctx, seller, req(t, fmt.Sprintf(`{"cmd":"set_status","id":%d,"status":"available"}`, id))); err != nil {
			t.Fatal(err)
		}
		if got := postOf(t, watchHelmet.wait(t, 4)[3]); got["status"] != nil {
			t.Fatalf("watcher after available: %v", got)
		}
		// The subscription without "deletions" saw none of it: the next
		// post it gets is a new one.
		next := n1.publish(t, other, publishFrame("[0,0,0]", "[0,0,0]", 1, ""))
		if f := v1.wait(t, 3); len(f) != 3 || items(t, f[2])[0] != next {
			t.Fatalf("v1 subscriber got %v", f)
		}
		if st := n1.Stats(); st.Changed != 2 {
			t.Fatalf("node 1 changed %d posts, want 2", st.Changed)
		}
	})
}

// renew: only in the window before expiry; the expiry clock then starts
// again on every node and in Redis.
func TestRenewExtendsExpiry(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		cfg := Config{Clock: clk.Now, Expiry: 30 * 24 * time.Hour, RenewWindow: 7 * 24 * time.Hour}
		n1 := startNode(t, b.Options, cfg)
		n2 := startNode(t, b.Options, cfg)
		ctx := context.Background()
		seller := newConn("7")
		id := n1.publish(t, seller, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		kept := n1.publish(t, seller, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		n2.until(t, "node 2 has the posts", func() bool { return n2.has(id) && n2.has(kept) })
		renew := func() error { return n2.Renew(ctx, seller, req(t, fmt.Sprintf(`{"cmd":"renew","id":%d}`, id))) }

		clk.Add(22 * 24 * time.Hour) // 8 days before expiry
		err := renew()
		if reason(err) != wire.RateLimited || !strings.Contains(err.Error(), "(in 86400 s)") {
			t.Fatalf("renew 8 days before expiry: %v", err)
		}
		clk.Add(24 * time.Hour)
		if err := renew(); err != nil {
			t.Fatal(err)
		}
		ack := seller.wait(t, 3)[2]
		want := fmt.Sprintf(`{"cmd":"renew_ack","result":"ok","id":%d,"expires":%d,"post":`, id, clk.Now().Add(30*24*time.Hour).Unix())
		if !strings.HasPrefix(ack, want) || postOf(t, ack)["renewed"] != float64(clk.Now().Unix()) {
			t.Fatalf("ack %s, want %s...", ack, want)
		}
		// At once it is too early again.
		if err := renew(); reason(err) != wire.RateLimited {
			t.Fatalf("a second renewal: %v", err)
		}
		n1.until(t, "node 1 has the renewal", func() bool { return strings.Contains(n1.json(id), `"renewed"`) })

		// Past the original expiry: the other post goes, the renewed one
		// stays, in Redis and on both nodes.
		clk.Add(8 * 24 * time.Hour)
		if err := n1.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		n2.until(t, "node 2 lets the other post go", func() bool { return !n2.has(kept) })
		if !n1.has(id) || !n2.has(id) || n1.has(kept) {
			t.Fatal("the sweep took the renewed post or kept the other")
		}
		if c, err := n1.b.PostCount(ctx); err != nil || c != 1 {
			t.Fatalf("Redis holds %d posts (%v), want 1", c, err)
		}
		// 30 days after the renewal it expires like any post.
		clk.Add(23 * 24 * time.Hour)
		if err := n2.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		n1.until(t, "node 1 lets the renewed post go", func() bool { return !n1.has(id) })
		if err := renew(); reason(err) != wire.NotFound {
			t.Fatalf("renew after expiry: %v", err)
		}
	})
}

// The per-user rate of changes is checked before any work.
func TestEditRateLimited(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		n := startNode(t, b.Options, Config{Clock: clk.Now, EditRate: 0.001, EditBurst: 2})
		ctx := context.Background()
		seller := newConn("7")
		id := n.publish(t, seller, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		st := func() error {
			return n.SetStatus(ctx, seller, req(t, fmt.Sprintf(`{"cmd":"set_status","id":%d,"status":"reserved"}`, id)))
		}
		for i := 0; i < 2; i++ {
			if err := st(); err != nil {
				t.Fatal(err)
			}
		}
		if err := st(); reason(err) != wire.RateLimited {
			t.Fatalf("third change: %v", err)
		}
		if err := n.Renew(ctx, seller, req(t, fmt.Sprintf(`{"cmd":"renew","id":%d}`, id))); reason(err) != wire.RateLimited {
			t.Fatalf("renew over the rate: %v", err)
		}
		if s := n.Stats(); s.EditsLimited != 2 || s.Changed != 2 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// An update cannot bring the posts past --max-post-bytes (checked in the
// script, like a publish), and a post stored in another format is refused,
// unchanged.
func TestUpdateBounds(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		n := startNode(t, b.Options, Config{Clock: clk.Now, MaxPostBytes: 400})
		ctx := context.Background()
		seller := newConn("7")
		id := n.publish(t, seller, publishFrame("[0,1,2]", "[0,3,7]", 1, ""))
		up := func(body string) error {
			return n.Update(ctx, seller, req(t, fmt.Sprintf(`{"cmd":"update","id":%d,"items":[{"body":%q,"to":[[[0,1,2]],[[0,3,7]]]}]}`, id, body)))
		}
		if err := up(strings.Repeat("x", 300)); reason(err) != wire.PostsFull {
			t.Fatalf("an update past the byte budget: %v", err)
		}
		if err := up("short"); err != nil {
			t.Fatalf("an update within it: %v", err)
		}
		if err := n.b.RawStorePost(ctx, id, `{"id":1,"from":"7","note":"foreign"}`, clk.Now().Unix()); err != nil {
			t.Fatal(err)
		}
		if err := up("again"); reason(err) != wire.BadRequest {
			t.Fatalf("an update of a foreign post: %v", err)
		}
	})
}
