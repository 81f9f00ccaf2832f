package roles_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/images"
	"github.com/occase/occase/posts"
	"github.com/occase/occase/roles"
)

// Role all sweeps its own image store: an image published in a post stays,
// an old one no post links to goes, a young one stays; the sweep is
// counted in /metrics.
func TestImageGCRoleAll(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		dir := t.TempDir()
		n := startNode(t, b.Options, func(c *roles.Config) {
			c.Role = "all"
			c.ImageKey = testImageKey
			c.ImageDir = dir
			c.FilenamesRate = 0
			c.Posts.Menu = posts.DemoMenu()
			c.ImageGC.Every = 10 * time.Millisecond
			c.ImageGC.DeleteRate = -1
		})
		jpg, _ := testPhotos(t)
		c := register(t, n.url)
		names := c.filenames()
		linked, orphan, young := names[0], names[1], names[2]
		for _, nm := range []string{linked, orphan, young} {
			if code, body := httpDo(t, http.MethodPost, n.base+"/"+nm+".jpg", jpg); code != http.StatusCreated {
				t.Fatalf("POST %s: %d %s", nm, code, body)
			}
		}
		c.send(`{"cmd":"publish","items":[{"body":"{\"images\":[\"` + linked + `.jpg\"]}","to":[[[0,0,0]],[[0,0,0]]],"features":0,"range_values":[]}]}`)
		if m := c.expect("publish_ack"); m.str("result") != "ok" {
			t.Fatalf("publish: %v", m)
		}
		old := time.Now().Add(-30 * 24 * time.Hour)
		for _, nm := range []string{linked, orphan} {
			d := nm[:images.DigestLen]
			if err := os.Chtimes(filepath.Join(dir, d[:2], d[2:4], d), old, old); err != nil {
				t.Fatal(err)
			}
		}
		brokertest.Poll(t, 20*time.Second, "the sweep to delete the orphan", func() bool {
			code, _ := httpDo(t, http.MethodGet, n.base+"/"+orphan+".jpg", nil)
			return code == http.StatusNotFound
		})
		for _, nm := range []string{linked, young} {
			if code, _ := httpDo(t, http.MethodGet, n.base+"/"+nm+".jpg", nil); code != http.StatusOK {
				t.Fatalf("GET %s after the sweep: %d", nm, code)
			}
		}
		// The sweep counts a deletion just after the file goes: wait
		// for it, as a GET can land in between.
		brokertest.Poll(t, 10*time.Second, "the deletion counted", func() bool {
			return metricLine(t, n.base, "occase_images_swept_total ") == "occase_images_swept_total 1"
		})
		_, body := httpDo(t, http.MethodGet, n.base+"/metrics", nil)
		for _, want := range []string{"occase_images_swept_total 1", `occase_image_gc_runs_total{outcome="ok"}`,
			"occase_image_bytes_freed_total ", "occase_image_disk_free_bytes "} {
			if !strings.Contains(string(body), want) {
				t.Errorf("metrics lack %q", want)
			}
		}
	})
}
