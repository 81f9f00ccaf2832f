package roles_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/images"
	"github.com/occase/occase/moderation"
	"github.com/occase/occase/roles"
)

// publishPhotos publishes a post whose body links photos (the web app's
// "images" member) and returns its id.
func (c *client) publishPhotos(title string, photos ...string) uint64 {
	c.t.Helper()
	body, _ := json.Marshal(map[string]any{"title": title, "images": photos})
	b, _ := json.Marshal(string(body))
	c.send(`{"cmd":"publish","items":[{"body":` + string(b) + `,"to":[[[0,0,0]],[[0,0,0]]],"features":4,"range_values":[1,2,3]}]}`)
	m := c.expect("publish_ack")
	if m.str("result") != "ok" {
		c.t.Fatalf("publish: %v", m)
	}
	return uint64(m.num("id"))
}

// awaitPhoto waits until GET base+path answers code with reason (the
// body's first line; "" for a 200).
func awaitPhoto(t *testing.T, base, path string, code int, reason string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		got, body := httpDo(t, http.MethodGet, base+path, nil)
		if got == code && (reason == "" || strings.TrimSpace(string(body)) == reason) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %q, want %d %q", path, got, body[:min(len(body), 40)], code, reason)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stored tells whether the image of "<digest>/<name>" is on disk under dir
// (images.DirStore's layout).
func stored(dir, name string) bool {
	d := name[:32]
	_, err := os.Stat(filepath.Join(dir, d[0:2], d[2:4], d))
	return err == nil
}

// hide hides post id with three aged reporters, named from first on (a
// dismissal distrusts the reporters of the hide it undoes).
func hide(t *testing.T, bc *broker.Client, id uint64, first int) {
	t.Helper()
	for i := range 3 {
		by := fmt.Sprint(first + i)
		if _, err := bc.ReportPost(context.Background(), id, broker.Report{By: by, Reason: "prohibited", At: 1, Aged: true},
			broker.ReportBounds{HideAt: 3}); err != nil {
			t.Fatal(err)
		}
	}
}

// photoSetup uploads four photos through img and publishes two posts on
// db: the seller's links photos 0, 1 and 2, another user's links 2.
func photoSetup(t *testing.T, db, img *node) (paths []string, names []string, mine, theirs uint64) {
	t.Helper()
	jpg, pngb := testPhotos(t)
	seller, other := register(t, db.url), register(t, db.url)
	names = seller.filenames()[:4]
	for i, n := range names {
		p, body := "/"+n+".jpg", jpg
		if i == 3 {
			p, body = "/"+n+".png", pngb
		}
		if code, b := httpDo(t, http.MethodPost, img.base+p, body); code != http.StatusCreated {
			t.Fatalf("POST %s: %d %s", p, code, b)
		}
		paths = append(paths, p)
	}
	rel := func(i int) string { return strings.TrimPrefix(paths[i], "/") }
	mine = seller.publishPhotos("Bike", rel(0), rel(1), rel(2))
	theirs = other.publishPhotos("Lamp", rel(2))
	return paths, names, mine, theirs
}

// Photos of a hidden listing are refused (404 "hidden", not cached)
// while it is hidden and served again after a dismissal; a moderator's
// removal deletes its photos at once, but the one another live listing
// links, answers how many and which, and logs it. Role all: the img half
// follows the posts channel of its own broker and purges in the request.
// On a real redis-server and the embedded broker.
func TestPhotosHiddenAndRemovedRoleAll(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		dir := t.TempDir()
		n := startNode(t, b.Options, photoAll(dir))
		bc := brokertest.Open(t, b.Options)
		ctx := context.Background()
		paths, names, mine, theirs := photoSetup(t, n, n)
		awaitPost(t, n, fmt.Sprint(theirs), http.StatusOK)

		hide(t, bc, mine, 91)
		for _, p := range paths[:3] {
			awaitPhoto(t, n.base, p, http.StatusNotFound, "hidden")
		}
		// Not cached: a CDN asks again after the dismissal.
		req, _ := http.NewRequest(http.MethodGet, n.base+paths[0], nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Fatalf("Cache-Control of a refused photo: %q", cc)
		}
		if code, _ := httpDo(t, http.MethodHead, n.base+paths[1], nil); code != http.StatusNotFound {
			t.Fatalf("HEAD of a hidden listing's photo: %d", code)
		}
		// A photo no hidden listing links is served.
		awaitPhoto(t, n.base, paths[3], http.StatusOK, "")
		if !strings.Contains(metricLine(t, n.base, `occase_image_refusals_total{reason="hidden"}`), "}") {
			t.Fatal("no refusals counted as hidden")
		}

		if _, _, err := bc.DismissReports(ctx, mine); err != nil {
			t.Fatal(err)
		}
		for _, p := range paths[:3] {
			awaitPhoto(t, n.base, p, http.StatusOK, "")
		}

		// Hidden again, then removed: its own photos go, the shared one
		// stays (the other listing is live).
		hide(t, bc, mine, 81)
		awaitPhoto(t, n.base, paths[0], http.StatusNotFound, "hidden")
		res, err := n.srv.ModerationService().Remove(ctx, "op", mine, moderation.RemoveRequest{Reason: "prohibited"})
		if err != nil {
			t.Fatal(err)
		}
		if res.PhotosDeleted == nil || *res.PhotosDeleted != 2 || res.PhotosKept != 1 || res.PhotosError != "" ||
			fmt.Sprint(res.Photos) != fmt.Sprint(paths[:3]) {
			t.Fatalf("removal answer %+v (deleted %v), want 2 deleted, 1 kept, photos %v", res, res.PhotosDeleted, paths[:3])
		}
		for i, p := range paths[:2] {
			awaitPhoto(t, n.base, p, http.StatusNotFound, "not_found")
			if stored(dir, names[i]) {
				t.Fatalf("photo %s still on disk", p)
			}
		}
		awaitPhoto(t, n.base, paths[2], http.StatusOK, "")
		if !stored(dir, names[2]) || !stored(dir, names[3]) {
			t.Fatal("a photo the removal did not own was deleted")
		}
		lines, _, err := bc.ModLog(ctx, 0, 1)
		if err != nil || len(lines) != 1 || !strings.Contains(lines[0], "2 photos deleted, 1 kept") || !strings.Contains(lines[0], paths[0]) {
			t.Fatalf("moderation log %q %v", lines, err)
		}
		// A hidden listing its author deletes: its photos are purged too,
		// not served again.
		c := register(t, n.url)
		desk := c.publishPhotos("Desk", strings.TrimPrefix(paths[3], "/"))
		hide(t, bc, desk, 71)
		awaitPhoto(t, n.base, paths[3], http.StatusNotFound, "hidden")
		if err := bc.DeletePost(ctx, desk, c.id); err != nil {
			t.Fatal(err)
		}
		awaitPhoto(t, n.base, paths[3], http.StatusNotFound, "not_found")
		if stored(dir, names[3]) {
			t.Fatal("a deleted hidden listing's photo is still on disk")
		}

		// The JSON the API and the CLI carry.
		raw, _ := json.Marshal(res)
		if !strings.Contains(string(raw), `"photos_deleted":2`) || !strings.Contains(string(raw), `"photos_kept":1`) {
			t.Fatalf("removal JSON %s", raw)
		}

		// A removal of a post without photos deleted none.
		plain := c.publishPhotos("Sofa")
		res, err = n.srv.ModerationService().Remove(ctx, "op", plain, moderation.RemoveRequest{})
		if err != nil || res.PhotosDeleted == nil || *res.PhotosDeleted != 0 || len(res.Photos) != 0 || res.PhotosError != "" {
			t.Fatalf("removal of a post without photos: %+v %v", res, err)
		}
	})
}

// Separate roles: the img node, given --redis, follows the hides and the
// dismissals, loads what is hidden at its start, and purges on the
// photos channel a removal made on the db node (which has no store): the
// db node's answer says it asked one node, the photos go within moments.
func TestPhotosHiddenAndRemovedSeparateRoles(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		dir := t.TempDir()
		db := startNode(t, b.Options, photoDB)
		imgCfg := photoImg(dir)
		img := startNode(t, b.Options, imgCfg)
		bc := brokertest.Open(t, b.Options)
		ctx := context.Background()
		paths, names, mine, theirs := photoSetup(t, db, img)
		awaitPost(t, db, fmt.Sprint(theirs), http.StatusOK)

		hide(t, bc, mine, 91)
		awaitPhoto(t, img.base, paths[0], http.StatusNotFound, "hidden")
		awaitPhoto(t, img.base, paths[3], http.StatusOK, "")

		// A second img node started while the post is hidden loads it.
		img2 := startNode(t, b.Options, imgCfg)
		awaitPhoto(t, img2.base, paths[1], http.StatusNotFound, "hidden")

		if _, _, err := bc.DismissReports(ctx, mine); err != nil {
			t.Fatal(err)
		}
		awaitPhoto(t, img.base, paths[0], http.StatusOK, "")
		awaitPhoto(t, img2.base, paths[1], http.StatusOK, "")
		img2.stop()

		res, err := db.srv.ModerationService().Remove(ctx, "op", mine, moderation.RemoveRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if res.PhotosDeleted != nil || res.PhotosSent != 1 || res.PhotosError != "" || fmt.Sprint(res.Photos) != fmt.Sprint(paths[:3]) {
			t.Fatalf("removal answer on db %+v, want sent to 1, photos %v", res, paths[:3])
		}
		for i, p := range paths[:2] {
			awaitPhoto(t, img.base, p, http.StatusNotFound, "not_found")
			if stored(dir, names[i]) {
				t.Fatalf("photo %s still on disk", p)
			}
		}
		awaitPhoto(t, img.base, paths[2], http.StatusOK, "")

		// With no img node following Redis, the answer says so.
		img.stop()
		c := register(t, db.url)
		one := c.publishPhotos("Desk", strings.TrimPrefix(paths[3], "/"))
		res, err = db.srv.ModerationService().Remove(ctx, "op", one, moderation.RemoveRequest{})
		if err != nil || res.PhotosError != moderation.PhotosNoImgNode || res.PhotosSent != 0 {
			t.Fatalf("removal with no img node: %+v %v", res, err)
		}
		if !stored(dir, names[3]) {
			t.Fatal("a photo was deleted with no img node following")
		}
	})
}

// metricLine returns the /metrics line that starts with prefix ("" when
// none does).
func metricLine(t *testing.T, base, prefix string) string {
	t.Helper()
	_, body := httpDo(t, http.MethodGet, base+"/metrics", nil)
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// A hide the img node missed (its subscription was down) is picked up when
// it reconnects: it reads Redis's hidden set again. A real redis-server
// with an append-only file, restarted under the node.
func TestPhotosReloadedAfterReconnect(t *testing.T) {
	r := brokertest.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	opt := broker.Options{Addrs: []string{r.Addr}, Prefix: brokertest.Prefix()}
	img := startNode(t, opt, func(c *roles.Config) {
		c.Role = "img"
		c.ImageKey = testImageKey
		c.ImageDir = t.TempDir()
	})
	s, err := images.NewSigner(testImageKey)
	if err != nil {
		t.Fatal(err)
	}
	names, err := s.Names(2)
	if err != nil {
		t.Fatal(err)
	}
	jpg, _ := testPhotos(t)
	bc := brokertest.Open(t, opt)
	ctx := context.Background()
	var ids []uint64
	for _, n := range names {
		if code, _ := httpDo(t, http.MethodPost, img.base+"/"+n+".jpg", jpg); code != http.StatusCreated {
			t.Fatalf("upload: %d", code)
		}
		body, _ := json.Marshal(`{"images":["` + n + `.jpg"]}`)
		id, err := bc.StorePost(ctx, []byte(`"from":"5","body":`+string(body)+`,"to":[[[0,0,0]]],"features":0,"date":0,"range_values":[]`), "5", time.Now().Unix(), "test")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	path := "/" + names[0] + ".jpg"
	// The follower is live (loaded, following): a hide announced reaches it.
	hide(t, bc, ids[1], 91)
	awaitPhoto(t, img.base, "/"+names[1]+".jpg", http.StatusNotFound, "hidden")
	id := ids[0]
	// Hidden in Redis without the announcement: as if the node's
	// subscription had been down.
	raw := brokertest.Raw(t, r.Addr)
	if err := raw.Do(ctx, raw.B().Sadd().Key(opt.Prefix+"{posts}:hidden").Member(fmt.Sprint(id)).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	awaitPhoto(t, img.base, path, http.StatusOK, "")
	r.Restart()
	awaitPhoto(t, img.base, path, http.StatusNotFound, "hidden")
}
