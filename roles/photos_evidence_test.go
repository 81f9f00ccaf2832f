package roles_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/images"
	"github.com/occase/occase/moderation"
)

// evidenceSetup uploads n photos through img (names from a seller
// registered on db) and returns their paths, names and the seller.
func evidenceSetup(t *testing.T, db, img *node, n int) (paths, names []string, seller *client) {
	t.Helper()
	seller = register(t, db.url)
	names = seller.filenames()[:n]
	for _, p := range uploadJPG(t, img.base, names...) {
		paths = append(paths, "/"+p)
	}
	return paths, names, seller
}

func rel(p string) string { return strings.TrimPrefix(p, "/") }

// reportOnce reports post id once (not enough to hide it): it enters the
// review queue.
func reportOnce(t *testing.T, bc *broker.Client, id uint64, by string) {
	t.Helper()
	if _, err := bc.ReportPost(context.Background(), id, broker.Report{By: by, Reason: "scam", At: 1, Aged: true},
		broker.ReportBounds{HideAt: 3}); err != nil {
		t.Fatal(err)
	}
}

// deleteOwn is the author's own delete; the post must be kept for review.
func deleteOwn(t *testing.T, bc *broker.Client, id uint64, author string) {
	t.Helper()
	kept, err := bc.DeleteOwnPost(context.Background(), id, author)
	if err != nil || !kept {
		t.Fatalf("author's delete of %d: kept %v, %v", id, kept, err)
	}
}

// reviewURL is path with a review token made now (or at when given).
func reviewURL(t *testing.T, path string, at time.Time) string {
	t.Helper()
	s, err := images.NewSigner(testImageKey, images.WithClock(func() time.Time { return at }))
	if err != nil {
		t.Fatal(err)
	}
	return path + "?review=" + s.ReviewToken(path[1:33])
}

// getHeader GETs url and returns the status and a header.
func getHeader(t *testing.T, url, header string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get(header)
}

// checkWithheldReview checks that a withheld photo is refused (404
// hidden) plainly and with a forged or expired review URL, and served,
// never cached, with a valid one.
func checkWithheldReview(t *testing.T, base, path string) {
	t.Helper()
	awaitPhoto(t, base, path, http.StatusNotFound, "hidden")
	good := reviewURL(t, path, time.Now())
	if code, cc := getHeader(t, base+good, "Cache-Control"); code != http.StatusOK || cc != "private, no-store" {
		t.Fatalf("GET %s with a review URL: %d, Cache-Control %q", path, code, cc)
	}
	forged := good[:len(good)-1] + map[bool]string{true: "1", false: "0"}[strings.HasSuffix(good, "0")]
	for name, u := range map[string]string{
		"forged":  forged,
		"expired": reviewURL(t, path, time.Now().Add(-images.ReviewTTL-time.Second)),
		"too long-lived": path + "?review=" + func() string {
			s, _ := images.NewSigner(testImageKey, images.WithClock(func() time.Time { return time.Now().Add(time.Hour) }))
			return s.ReviewToken(path[1:33])
		}(),
		"another photo's": strings.Split(path, "?")[0] + "?review=" + strings.SplitN(reviewURL(t, "/"+strings.Repeat("ab", 16)+"/x.jpg", time.Now()), "=", 2)[1],
		"empty":           path + "?review=",
		"huge":            path + "?review=" + strings.Repeat("9", 5000),
	} {
		code, body := httpDo(t, http.MethodGet, base+u, nil)
		if code != http.StatusNotFound || strings.TrimSpace(string(body)) != "hidden" {
			t.Fatalf("GET %s with a %s review URL: %d %q, want 404 hidden", path, name, code, body)
		}
	}
}

// An author's delete of a hidden listing keeps its photos (the
// moderators' evidence) withheld: not served, not purged, shown to a
// review URL; a photo a kept copy links is kept by another listing's
// removal; the moderator's removal of the copy purges like a live
// removal (answering the photos), and a dismissal of a copy, hidden or
// not, purges its photos at once. Role all, on a real redis-server and
// the embedded broker.
func TestPhotosOfEvidenceRoleAll(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		dir := t.TempDir()
		n := startNode(t, b.Options, photoAll(dir))
		bc := brokertest.Open(t, b.Options)
		ctx := context.Background()
		svc := n.srv.ModerationService()
		paths, names, seller := evidenceSetup(t, n, n, 5)
		other := register(t, n.url)

		bike := seller.publishPhotos("Bike", rel(paths[0]), rel(paths[1]))
		hide(t, bc, bike, 91)
		awaitPhoto(t, n.base, paths[0], http.StatusNotFound, "hidden")
		deleteOwn(t, bc, bike, seller.id)
		// A later hide on the same channel: once it is applied, the
		// deletion before it is too.
		desk := other.publishPhotos("Desk", rel(paths[4]))
		hide(t, bc, desk, 81)
		awaitPhoto(t, n.base, paths[4], http.StatusNotFound, "hidden")
		for i, p := range paths[:2] {
			if !stored(dir, names[i]) {
				t.Fatalf("photo %s of a listing kept for review was deleted", p)
			}
			checkWithheldReview(t, n.base, p)
		}

		// The admin API's line carries a review token per photo.
		q, err := svc.Reports(ctx, 10, 1)
		if err != nil {
			t.Fatal(err)
		}
		var line *moderation.ReportLine
		for i := range q.Reports {
			if q.Reports[i].ID == bike {
				line = &q.Reports[i]
			}
		}
		if line == nil || !line.DeletedByAuthor || len(line.ImagesReview) != 2 {
			t.Fatalf("report line of the kept copy %+v", line)
		}
		if code, cc := getHeader(t, n.base+"/"+line.Images[1]+"?review="+line.ImagesReview[1], "Cache-Control"); code != http.StatusOK || cc != "private, no-store" {
			t.Fatalf("the API's review URL: %d %q", code, cc)
		}

		// A copy kept of a listing reported once (not hidden) links
		// photo 2: a live listing's removal keeps it.
		lamp := register(t, n.url).publishPhotos("Lamp", rel(paths[2]))
		reportOnce(t, bc, lamp, "71")
		// Live and not hidden: its photos are served, no token needed.
		if q, err := svc.Reports(ctx, 10, 1); err != nil {
			t.Fatal(err)
		} else {
			for _, l := range q.Reports {
				if l.ID == lamp && (len(l.Images) != 1 || l.ImagesReview != nil) {
					t.Fatalf("a live listing reported once: %+v", l)
				}
			}
		}
		lampOwner, _ := bc.PostOwner(ctx, lamp)
		deleteOwn(t, bc, lamp, lampOwner)
		// (its seller is under review: another publishes it)
		chair := register(t, n.url).publishPhotos("Chair", rel(paths[2]), rel(paths[3]))
		res, err := svc.Remove(ctx, "op", chair, moderation.RemoveRequest{})
		if err != nil || res.PhotosDeleted == nil || *res.PhotosDeleted != 1 || res.PhotosKept != 1 {
			t.Fatalf("removal beside a kept copy: %+v %v", res, err)
		}
		if !stored(dir, names[2]) || stored(dir, names[3]) {
			t.Fatal("a removal deleted a photo a kept copy links, or kept its own")
		}

		// The moderator removes the copy: its photos go, answered.
		res, err = svc.Remove(ctx, "op", bike, moderation.RemoveRequest{Reason: "prohibited"})
		if err != nil || !res.DeletedByAuthor || res.PhotosDeleted == nil || *res.PhotosDeleted != 2 ||
			fmt.Sprint(res.Photos) != fmt.Sprint(paths[:2]) {
			t.Fatalf("removal of a kept copy: %+v (deleted %v) %v", res, res.PhotosDeleted, err)
		}
		for i, p := range paths[:2] {
			awaitPhoto(t, n.base, p, http.StatusNotFound, "not_found")
			if stored(dir, names[i]) {
				t.Fatalf("photo %s of a removed copy still on disk", p)
			}
			// A review URL never makes a deleted photo appear.
			if code, _ := httpDo(t, http.MethodGet, n.base+reviewURL(t, p, time.Now()), nil); code != http.StatusNotFound {
				t.Fatalf("review URL of a deleted photo: %d", code)
			}
		}

		// Dismissal of the copy that was never hidden: purged at once.
		d, err := svc.Dismiss(ctx, "op", lamp)
		if err != nil || !d.DeletedByAuthor || d.PhotosDeleted == nil || *d.PhotosDeleted != 1 {
			t.Fatalf("dismissal of a kept copy: %+v %v", d, err)
		}
		if stored(dir, names[2]) {
			t.Fatal("the photo of a dismissed copy is still on disk")
		}

		// Dismissal of a hidden copy: purged at once.
		deleteOwn(t, bc, desk, other.id)
		if d, err = svc.Dismiss(ctx, "op", desk); err != nil || d.PhotosDeleted == nil || *d.PhotosDeleted != 1 {
			t.Fatalf("dismissal of a hidden kept copy: %+v %v", d, err)
		}
		awaitPhoto(t, n.base, paths[4], http.StatusNotFound, "not_found")
		if stored(dir, names[4]) {
			t.Fatal("the photo of a dismissed hidden copy is still on disk")
		}
	})
}

// Separate roles: the img node keeps the photos of a hidden listing its
// author deleted withheld, one started afterwards loads them withheld
// (from the copy), and a dismissal or a removal on the db node (no
// store) reaches both: the photos go.
func TestPhotosOfEvidenceSeparateRoles(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		dir := t.TempDir()
		db := startNode(t, b.Options, photoDB)
		imgCfg := photoImg(dir)
		img := startNode(t, b.Options, imgCfg)
		bc := brokertest.Open(t, b.Options)
		ctx := context.Background()
		svc := db.srv.ModerationService()
		paths, names, seller := evidenceSetup(t, db, img, 4)

		bike := seller.publishPhotos("Bike", rel(paths[0]), rel(paths[1]))
		desk := seller.publishPhotos("Desk", rel(paths[2]))
		hide(t, bc, bike, 91)
		hide(t, bc, desk, 81)
		awaitPhoto(t, img.base, paths[2], http.StatusNotFound, "hidden")
		deleteOwn(t, bc, bike, seller.id)
		deleteOwn(t, bc, desk, seller.id)
		marker := register(t, db.url).publishPhotos("Lamp", rel(paths[3]))
		hide(t, bc, marker, 71)
		awaitPhoto(t, img.base, paths[3], http.StatusNotFound, "hidden")
		for i, p := range paths[:3] {
			if !stored(dir, names[i]) {
				t.Fatalf("photo %s of a listing kept for review was deleted", p)
			}
			checkWithheldReview(t, img.base, p)
		}

		// Started now: it loads the copies' photos withheld.
		img2 := startNode(t, b.Options, imgCfg)
		for _, p := range paths[:3] {
			checkWithheldReview(t, img2.base, p)
		}

		d, err := svc.Dismiss(ctx, "op", bike)
		if err != nil || !d.DeletedByAuthor || d.PhotosSent != 2 || len(d.Photos) != 2 {
			t.Fatalf("dismissal of a kept copy on db: %+v %v", d, err)
		}
		res, err := svc.Remove(ctx, "op", desk, moderation.RemoveRequest{})
		if err != nil || !res.DeletedByAuthor || res.PhotosSent != 2 || fmt.Sprint(res.Photos) != fmt.Sprint(paths[2:3]) {
			t.Fatalf("removal of a kept copy on db: %+v %v", res, err)
		}
		for i, p := range paths[:3] {
			awaitPhoto(t, img.base, p, http.StatusNotFound, "not_found")
			awaitPhoto(t, img2.base, p, http.StatusNotFound, "not_found")
			if stored(dir, names[i]) {
				t.Fatalf("photo %s still on disk", p)
			}
		}
		awaitPhoto(t, img.base, paths[3], http.StatusNotFound, "hidden")
	})
}

// A follower a moment behind the posts channel reads a hide after the
// author already deleted the post (the tour met it on a loaded machine:
// the hidden listing's photo was served, then purged at the dismissal).
// The hide then finds the copy kept for review and withholds its photos
// from it, and the deletion that follows keeps them withheld. Before, the
// hide found no post and withheld nothing. Role all, on a real
// redis-server and the embedded broker.
func TestPhotosOfEvidenceHideReadLate(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		dir := t.TempDir()
		n := startNode(t, b.Options, photoAll(dir))
		bc := brokertest.Open(t, b.Options)
		paths, names, seller := evidenceSetup(t, n, n, 1)
		bike := seller.publishPhotos("Bike", rel(paths[0]))
		// The follower stops at the hide's envelope until the author's
		// delete is done.
		deleted := make(chan struct{})
		n.srv.BeforePhotoApply(func(payload string) {
			if strings.HasPrefix(payload, `{"op":"hide"`) {
				select {
				case <-deleted:
				case <-time.After(10 * time.Second):
				}
			}
		})
		hide(t, bc, bike, 91)
		deleteOwn(t, bc, bike, seller.id)
		close(deleted)
		awaitPhoto(t, n.base, paths[0], http.StatusNotFound, "hidden")
		// Still withheld once the deletion is applied too (a later hide
		// on the same channel is applied after it), and on disk.
		other := register(t, n.url)
		more := uploadJPG(t, n.base, other.filenames()[0])
		desk := other.publishPhotos("Desk", more[0])
		hide(t, bc, desk, 81)
		awaitPhoto(t, n.base, "/"+more[0], http.StatusNotFound, "hidden")
		checkWithheldReview(t, n.base, paths[0])
		if !stored(dir, names[0]) {
			t.Fatal("the photo of a listing kept for review was deleted")
		}
	})
}
