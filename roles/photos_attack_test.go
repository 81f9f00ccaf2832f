package roles_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

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
		n := startNode(t, b.Options, func(c *roles.Config) {
			c.Role = "all"
			c.ImageKey = testImageKey
			c.ImageDir = dir
			c.FilenamesRate = 0
		})
		bc := brokertest.Open(t, b.Options)
		ctx := context.Background()
		jpg, _ := testPhotos(t)
		seller := register(t, n.url)
		names := seller.filenames()[:3]
		var rel []string
		for _, nm := range names {
			if code, body := httpDo(t, http.MethodPost, n.base+"/"+nm+".jpg", jpg); code != http.StatusCreated {
				t.Fatalf("upload: %d %s", code, body)
			}
			rel = append(rel, nm+".jpg")
		}
		bad := seller.publishPhotos("Prohibited", rel[0], rel[1])
		hide(t, bc, bad, 91)
		awaitPhoto(t, n.base, "/"+rel[0], http.StatusNotFound, "hidden")

		seller.updatePhotos(bad, rel[1])
		// The follower applies the envelopes in order: once a later hide
		// is seen, the edit was.
		later := seller.publishPhotos("Later", rel[2])
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
