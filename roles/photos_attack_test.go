package roles_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/moderation"
	"github.com/occase/occase/roles"
)

// updatePhotos edits post id to link exactly photos, as its author.
func (c *client) updatePhotos(id uint64, photos ...string) {
	c.t.Helper()
	body, _ := json.Marshal(map[string]any{"title": "edited", "images": photos})
	b, _ := json.Marshal(string(body))
	c.send(fmt.Sprintf(`{"cmd":"update","id":%d,"items":[{"body":%s,"to":[[[0,0,0]],[[0,0,0]]],"features":4,"range_values":[1,2,3]}]}`, id, b))
	if r := c.expect("update_ack"); r.str("result") != "ok" {
		c.t.Fatalf("update_ack %v", r)
	}
}

// The author of a hidden listing edits it to drop a photo's link: the
// photo stays refused (it was under review, and its link is known), and
// when the listing then goes, it is purged with the rest. Before, the
// edit served the dropped photo again and the deletion's purge left it
// to the sweep (a week): the way round "deleting a hidden listing does
// not bring its photos back". On a real redis-server and the embedded
// broker.
func TestPhotosHiddenEditKeepsDroppedWithheld(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		dir := t.TempDir()
		n := startNode(t, b.Options, photoAll(dir))
		bc := brokertest.Open(t, b.Options)
		ctx := context.Background()
		seller := register(t, n.url)
		names := seller.filenames()[:3]
		rel := uploadJPG(t, n.base, names...)
		bad := seller.publishPhotos("Prohibited", rel[0], rel[1])
		// Published before the hide: an author with a listing under
		// review may not publish (under_review).
		later := seller.publishPhotos("Later", rel[2])
		hide(t, bc, bad, 91)
		awaitPhoto(t, n.base, "/"+rel[0], http.StatusNotFound, "hidden")

		seller.updatePhotos(bad, rel[1])
		// The follower applies the envelopes in order: once a later hide
		// is seen, the edit was.
		hide(t, bc, later, 81)
		awaitPhoto(t, n.base, "/"+rel[2], http.StatusNotFound, "hidden")
		if code, body := httpDo(t, http.MethodGet, n.base+"/"+rel[0], nil); code != http.StatusNotFound ||
			strings.TrimSpace(string(body)) != "hidden" {
			t.Fatalf("a photo the hidden listing's edit dropped: %d %q, want 404 hidden", code, body[:min(len(body), 16)])
		}
		awaitPhoto(t, n.base, "/"+rel[1], http.StatusNotFound, "hidden")

		if err := bc.DeletePost(ctx, bad, seller.id); err != nil {
			t.Fatal(err)
		}
		for _, p := range rel[:2] {
			awaitPhoto(t, n.base, "/"+p, http.StatusNotFound, "not_found")
		}
		for i := range 2 {
			if stored(dir, names[i]) {
				t.Fatalf("photo %d of the deleted hidden listing still on disk", i)
			}
		}
		if !stored(dir, names[2]) {
			t.Fatal("the other hidden listing's photo was deleted")
		}

		// A moderator's removal on this node (the request purges what
		// the post's JSON links) purges what an edit dropped too.
		seller.updatePhotos(later)
		if _, err := n.srv.ModerationService().Remove(ctx, "op", later, moderation.RemoveRequest{Reason: "prohibited"}); err != nil {
			t.Fatal(err)
		}
		awaitPhoto(t, n.base, "/"+rel[2], http.StatusNotFound, "not_found")
		if stored(dir, names[2]) {
			t.Fatal("a photo a removed hidden listing's edit dropped is still on disk")
		}
	})
}

// Many hidden listings that go at once (an expiry batch, a moderator's
// wave of removals, an author deleting the listings a brigade of their
// own hid) cost the img node one read of every live post, not one each:
// the follower gathers the purges it has queued into one pass. Before,
// twenty hidden listings expiring together made twenty passes, one after
// the other, each an HSCAN of every post (6 to 8 s for a million), with
// the hides behind them waiting (their photos served). On a real
// redis-server (HSCAN calls counted by INFO) and the embedded broker.
func TestPhotosPurgesShareOnePass(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		dir := t.TempDir()
		n := startNode(t, b.Options, photoAll(dir), func(c *roles.Config) { c.Posts.QuotaN = 100 })
		bc := brokertest.Open(t, b.Options)
		ctx := context.Background()
		seller := register(t, n.url)
		const count = 20
		var names []string
		for len(names) < count {
			names = append(names, seller.filenames()...)
		}
		names = names[:count]
		// All published before the first hide: an author with a listing
		// under review may not publish (under_review).
		var ids []uint64
		for i, nm := range names {
			ids = append(ids, seller.publishPhotos(fmt.Sprint("Item ", i), uploadJPG(t, n.base, nm)...))
		}
		for i, id := range ids {
			hide(t, bc, id, 1000+10*i)
		}
		for _, nm := range names {
			awaitPhoto(t, n.base, "/"+nm+".jpg", http.StatusNotFound, "hidden")
		}
		before := hscans(t, b)
		if k, err := bc.ExpirePosts(ctx, time.Now().Unix()+10, 1000); err != nil || k != count {
			t.Fatalf("expire: %d %v", k, err)
		}
		for i, nm := range names {
			awaitPhoto(t, n.base, "/"+nm+".jpg", http.StatusNotFound, "not_found")
			if stored(dir, nm) {
				t.Fatalf("photo %d of an expired hidden listing still on disk", i)
			}
		}
		if b.Redis != nil {
			if got := hscans(t, b) - before; got > 2 {
				t.Fatalf("%d HSCANs to purge %d expired hidden listings", got, count)
			}
		}
		if l := metricLine(t, n.base, "occase_image_photo_purge_passes_total "); l != "occase_image_photo_purge_passes_total 1" {
			t.Fatalf("purge passes: %q, want 1 for %d listings", l, count)
		}
	})
}

// hscans is how many HSCAN calls a real redis-server has served (0 on
// another backend).
func hscans(t *testing.T, b brokertest.Backend) int {
	t.Helper()
	if b.Redis == nil {
		return 0
	}
	raw := brokertest.Raw(t, b.Redis.Addr)
	s, err := raw.Do(context.Background(), raw.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(s, "\n") {
		if rest, ok := strings.CutPrefix(l, "cmdstat_hscan:calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

// rawGet sends GET (or method) with the request target exactly as given
// (no cleaning, no re-escaping) and returns the status, the body's first
// line and the Cache-Control.
func rawGet(t *testing.T, method, base, target string, hdr map[string]string) (int, string, string) {
	t.Helper()
	host := strings.TrimPrefix(base, "http://")
	req, err := http.NewRequest(method, base+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = "//" + host + target
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 64)
	k, _ := resp.Body.Read(buf)
	b.Write(buf[:k])
	line, _, _ := strings.Cut(b.String(), "\n")
	return resp.StatusCode, line, resp.Header.Get("Cache-Control")
}

// A hidden listing's photo asked for under every spelling of its path
// that could reach its file: each is refused (404 hidden, no-store) or
// is no image path at all (400 bad_path, no-store); none serves it. A
// conditional or ranged GET is refused the same. On a real redis-server
// and the embedded broker.
func TestPhotosHiddenPathVariants(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options, photoAll(t.TempDir()))
		bc := brokertest.Open(t, b.Options)
		seller := register(t, n.url)
		name := seller.filenames()[0] // "<digest>/<name>"
		d, nm := name[:32], name[33:]
		uploadJPG(t, n.base, name)
		req, _ := http.NewRequest(http.MethodGet, n.base+"/"+name+".jpg", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		etag := resp.Header.Get("ETag")
		id := seller.publishPhotos("Hidden", name+".jpg")
		hide(t, bc, id, 91)
		awaitPhoto(t, n.base, "/"+name+".jpg", http.StatusNotFound, "hidden")

		esc := func(s string) string { // every character percent-encoded
			var b strings.Builder
			for i := 0; i < len(s); i++ {
				fmt.Fprintf(&b, "%%%02X", s[i])
			}
			return b.String()
		}
		hidden := []string{
			"/" + d + "/" + nm + ".jpg",
			"/" + d + "/" + nm + ".jpeg",
			"/" + d + "/" + esc(nm) + ".jpg",
			"/" + d + "/" + esc(nm+".jpg"),
			"/" + d + "/" + nm + ".jpg?v=2",
		}
		bad := []string{
			"/" + strings.ToUpper(d) + "/" + nm + ".jpg",
			"//" + d + "/" + nm + ".jpg",
			"/" + d + "//" + nm + ".jpg",
			"/" + d + "/" + nm + ".jpg/",
			"/" + d + "/" + nm + ".JPG",
			"/" + d + "/" + nm + ".jpg.jpg",
			"/" + d + "%2F" + nm + ".jpg",
			"/" + d + "/" + nm + "%2Ejpg%2F",
			"/./" + d + "/" + nm + ".jpg",
			"/x/../" + d + "/" + nm + ".jpg",
			"/" + d + "/./" + nm + ".jpg",
			"/" + d[:31] + "/" + nm + ".jpg",
			"/" + esc(d) + "/" + nm + ".jpg",
			"/" + d + "/" + nm + ".jpg%00",
			"/" + d + "/" + nm + ";.jpg",
			"/" + d + "/" + nm + ".jpg#x",
		}
		for _, p := range hidden {
			for _, m := range []string{http.MethodGet, http.MethodHead} {
				code, line, cc := rawGet(t, m, n.base, p, nil)
				if code != http.StatusNotFound || m == http.MethodGet && line != "hidden" || cc != "no-store" {
					t.Errorf("%s %s: %d %q %q, want 404 hidden no-store", m, p, code, line, cc)
				}
			}
		}
		for _, p := range bad {
			code, line, cc := rawGet(t, http.MethodGet, n.base, p, nil)
			if code == http.StatusOK || code/100 == 3 || cc != "no-store" {
				t.Errorf("GET %s: %d %q %q, want a refusal", p, code, line, cc)
			}
		}
		for _, h := range []map[string]string{{"Range": "bytes=0-10"}, {"If-None-Match": etag}, {"If-Modified-Since": time.Now().UTC().Format(http.TimeFormat)}} {
			if code, line, _ := rawGet(t, http.MethodGet, n.base, "/"+name+".jpg", h); code != http.StatusNotFound || line != "hidden" {
				t.Errorf("GET with %v: %d %q, want 404 hidden", h, code, line)
			}
		}
	})
}

// The author of a listing hidden pending review (a scam the buyers
// reported, no brigade needed) edits it to link a competitor's photos:
// those stay served, the competitor's live listing shows them. Only the
// photos the listing had when hidden are withheld; one an edit adds is
// purged with the listing if no live listing links it. Before, the edit
// withheld whatever it linked (up to 256 photos a listing) until an
// operator acted. On a real redis-server and the embedded broker.
func TestPhotosHiddenEditCannotWithholdOthers(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		dir := t.TempDir()
		n := startNode(t, b.Options, photoAll(dir))
		bc := brokertest.Open(t, b.Options)
		ctx := context.Background()
		victim, scammer := register(t, n.url), register(t, n.url)
		up := func(c *client) string {
			nm := c.filenames()[0]
			uploadJPG(t, n.base, nm)
			return nm
		}
		v, own, added, sync := up(victim), up(scammer), up(scammer), up(scammer)
		victim.publishPhotos("Honest bike", v+".jpg")
		scam := scammer.publishPhotos("Scam", own+".jpg")
		// Published before the hide: an author with a listing under
		// review may not publish (under_review).
		later := scammer.publishPhotos("Later", sync+".jpg")
		hide(t, bc, scam, 91)
		awaitPhoto(t, n.base, "/"+own+".jpg", http.StatusNotFound, "hidden")

		scammer.updatePhotos(scam, own+".jpg", v+".jpg", added+".jpg")
		hide(t, bc, later, 81)
		awaitPhoto(t, n.base, "/"+sync+".jpg", http.StatusNotFound, "hidden")
		if code, _ := httpDo(t, http.MethodGet, n.base+"/"+v+".jpg", nil); code != http.StatusOK {
			t.Fatalf("the competitor's photo, linked by a hidden listing's edit: %d, want 200", code)
		}
		awaitPhoto(t, n.base, "/"+own+".jpg", http.StatusNotFound, "hidden")

		if err := bc.DeletePost(ctx, scam, scammer.id); err != nil {
			t.Fatal(err)
		}
		awaitPhoto(t, n.base, "/"+own+".jpg", http.StatusNotFound, "not_found")
		awaitPhoto(t, n.base, "/"+added+".jpg", http.StatusNotFound, "not_found")
		if stored(dir, own) || stored(dir, added) {
			t.Fatal("the deleted hidden listing's own photos are still on disk")
		}
		awaitPhoto(t, n.base, "/"+v+".jpg", http.StatusOK, "")
		if !stored(dir, v) {
			t.Fatal("the competitor's photo was deleted")
		}
	})
}
