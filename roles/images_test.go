package roles_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/images"
	"github.com/occase/occase/roles"
	"go.uber.org/zap/zaptest"
)

// End to end through the real session loop and the real image routes:
// names come from `filenames` over a WebSocket, uploads and reads over HTTP.

var testImageKey = []byte("0123456789abcdefghijklmnopqrstuv")

func testPhotos(t *testing.T) (jpg, pngb []byte) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 120, 90))
	for y := range 90 {
		for x := range 120 {
			img.Set(x, y, color.RGBA{uint8(x * 2), uint8(y * 2), uint8(x + y), 255})
		}
	}
	var a, b bytes.Buffer
	if err := jpeg.Encode(&a, img, nil); err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return a.Bytes(), b.Bytes()
}

func (c *client) filenames() []string {
	c.t.Helper()
	c.send(`{"cmd":"filenames"}`)
	m := c.expect("filenames_ack")
	if m.str("result") != "ok" {
		c.t.Fatalf("filenames_ack %v", m)
	}
	raw, _ := m["names"].([]any)
	var names []string
	for _, r := range raw {
		s, _ := r.(string)
		names = append(names, s)
	}
	if len(names) != 9 {
		c.t.Fatalf("filenames_ack has %d names: %v", len(names), m)
	}
	return names
}

func httpDo(t *testing.T, method, url string, body []byte) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func TestImagesRoleAll(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options, func(c *roles.Config) {
			c.Role = "all"
			c.ImageDir = t.TempDir()
			c.FilenamesRate = 0
		})
		jpg, pngb := testPhotos(t)
		c := register(t, n.url)
		names := c.filenames()
		for _, tc := range []struct {
			name, ext string
			body      []byte
		}{{names[0], "jpg", jpg}, {names[1], "png", pngb}} {
			url := n.base + "/" + tc.name + "." + tc.ext
			if code, body := httpDo(t, http.MethodPost, url, tc.body); code != http.StatusCreated {
				t.Fatalf("POST %s: %d %s", url, code, body)
			}
			code, got := httpDo(t, http.MethodGet, url, nil)
			if code != http.StatusOK || !bytes.Equal(got, tc.body) {
				t.Fatalf("GET %s: %d, %d bytes, want the %d uploaded", url, code, len(got), len(tc.body))
			}
			if code, _ := httpDo(t, http.MethodPost, url, tc.body); code != http.StatusConflict {
				t.Fatalf("second POST %s: %d, want 409", url, code)
			}
		}
		// A name the node did not sign is refused.
		forged := strings.Repeat("0", images.DigestLen) + names[2][images.DigestLen:]
		if code, _ := httpDo(t, http.MethodPost, n.base+"/"+forged+".jpg", jpg); code != http.StatusForbidden {
			t.Fatalf("forged name: %d, want 403", code)
		}
		// The db half still works beside the image routes.
		c.send(`{"cmd":"filenames"}`)
		if m := c.expect("filenames_ack"); m.str("result") != "ok" {
			t.Fatalf("filenames after uploads: %v", m)
		}
		// Uploads are counted by outcome, and the stored bytes.
		_, body := httpDo(t, http.MethodGet, n.base+"/metrics", nil)
		for _, want := range []string{
			`occase_http_requests_total{code="201",method="POST",route="/:digest/:file"} 2`,
			`occase_http_requests_total{code="409",method="POST",route="/:digest/:file"} 2`,
			`occase_http_requests_total{code="403",method="POST",route="/:digest/:file"} 1`,
			fmt.Sprintf("occase_image_upload_bytes_total %d", len(jpg)+len(pngb)),
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("metrics lack %q", want)
			}
		}
	})
}

// Separate db and img nodes share only the key: names issued by db are
// accepted by img; img runs without Redis; db does not take uploads.
func TestImagesSeparateRoles(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		db := startNode(t, b.Options, func(c *roles.Config) {
			c.Role = "db"
			c.ImageKey = testImageKey
			c.FilenamesRate = 0
		})
		// Nothing listens on port 1: the img node must never need Redis.
		img := startNode(t, broker.Options{Addrs: []string{"127.0.0.1:1"}}, func(c *roles.Config) {
			c.Role = "img"
			c.ImageKey = testImageKey
			c.ImageDir = t.TempDir()
		})
		jpg, _ := testPhotos(t)
		names := register(t, db.url).filenames()

		path := "/" + names[0] + ".jpg"
		if code, _ := httpDo(t, http.MethodPost, db.base+path, jpg); code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
			t.Fatalf("POST to the db node: %d, want 404 or 405", code)
		}
		if code, _ := httpDo(t, http.MethodPost, img.base+path, jpg); code != http.StatusCreated {
			t.Fatalf("POST to the img node: %d", code)
		}
		if code, got := httpDo(t, http.MethodGet, img.base+path, nil); code != http.StatusOK || !bytes.Equal(got, jpg) {
			t.Fatalf("GET from the img node: %d", code)
		}
		if code, _ := httpDo(t, http.MethodGet, db.base+path, nil); code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
			t.Fatalf("GET from the db node: %d, want 404 or 405", code)
		}
		if code, _ := httpDo(t, http.MethodGet, img.base+"/readyz", nil); code != http.StatusOK {
			t.Fatalf("img /readyz: %d", code)
		}
		// The img node has no WebSocket endpoint.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(img.base, "http")+"/ws", nil); err == nil {
			c.CloseNow()
			t.Fatal("the img node accepted a WebSocket")
		}
	})
}

func TestImagesKeyRequirements(t *testing.T) {
	cfg := roles.DefaultConfig()
	cfg.Role = "img"
	cfg.ImageDir = t.TempDir()
	if _, err := roles.New(context.Background(), cfg, zaptest.NewLogger(t)); err == nil {
		t.Fatal("the img role started without an image key")
	}
	cfg.ImageKey = []byte("short")
	if _, err := roles.New(context.Background(), cfg, zaptest.NewLogger(t)); err == nil {
		t.Fatal("the img role started with a 5-byte image key")
	}

	// A db node without a key runs, and says filenames is unavailable.
	n := startNode(t, broker.Options{Addrs: []string{broker.Embedded}}, func(c *roles.Config) { c.FilenamesRate = 0 })
	c := register(t, n.url)
	c.send(`{"cmd":"filenames"}`)
	if m := c.expect("filenames_ack"); m.str("result") != "fail" || m.str("reason") != "unavailable" {
		t.Fatalf("filenames without a key: %v", m)
	}
}
