package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
)

// photoNames asks a node for upload names over the WebSocket.
func (w *wsClient) photoNames() []string {
	w.t.Helper()
	w.send(`{"cmd":"filenames"}`)
	m := w.next("filenames_ack")
	raw, _ := m["names"].([]any)
	var out []string
	for _, r := range raw {
		out = append(out, r.(string))
	}
	if len(out) < 3 {
		w.t.Fatalf("filenames_ack %v", m)
	}
	return out
}

// publishWith publishes a post whose body links photos.
func (w *wsClient) publishWith(title string, photos ...string) int64 {
	w.t.Helper()
	inner, _ := json.Marshal(map[string]any{"title": title, "images": photos})
	body, _ := json.Marshal(string(inner))
	w.send(`{"cmd":"publish","items":[{"body":` + string(body) + `,"to":[[[0,0,0]],[[0,0,0]]],"features":1,"range_values":[]}]}`)
	m := w.next("publish_ack")
	if m["result"] != "ok" {
		w.t.Fatalf("publish_ack %v", m)
	}
	return num(m["id"])
}

func httpSend(t *testing.T, method, url string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// awaitImage waits until GET url answers code with reason (the body's
// line; "" for any body).
func awaitImage(t *testing.T, url string, code int, reason string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		got, body := httpSend(t, http.MethodGet, url, nil)
		if got == code && (reason == "" || strings.TrimSpace(body) == reason) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d, want %d %q", url, got, code, reason)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The real binaries on a real redis-server, separate roles: a db node, an
// img node given --redis, and `occase moderate remove` on Redis. Three
// reports hide the listing: the img node refuses its photos (404
// hidden); the CLI removes it: the photos it alone linked are deleted
// from the img node's disk, the one another listing links stays, and the
// CLI names the paths to purge from a CDN.
func TestRemovedListingPhotosEndToEnd(t *testing.T) {
	r := brokertest.StartRedis(t)
	key := []byte("0123456789abcdefghijklmnopqrstuv")
	keyFile := filepath.Join(t.TempDir(), "image.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "images")
	db := startProc(t, "--role=db", "--redis", r.Addr, "--secret", testSecret, "--image-key-file", keyFile,
		"--auto-hide-reports", "3", "--auto-hide-min-age", "0s")
	img := startProc(t, "--role=img", "--redis", r.Addr, "--image-key-file", keyFile, "--image-dir", dir)

	seller, other := wsDial(t, db.addr), wsDial(t, db.addr)
	seller.register()
	other.register()
	names := seller.photoNames()
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, image.NewGray(image.Rect(0, 0, 32, 32)), nil); err != nil {
		t.Fatal(err)
	}
	var urls []string
	for _, n := range names[:3] {
		u := "http://" + img.addr + "/" + n + ".jpg"
		if code, body := httpSend(t, http.MethodPost, u, jpg.Bytes()); code != http.StatusCreated {
			t.Fatalf("upload %s: %d %s", u, code, body)
		}
		urls = append(urls, u)
	}
	bike := seller.publishWith("Bike", names[0]+".jpg", names[1]+".jpg")
	other.publishWith("Lamp", names[1]+".jpg")
	for i := range 3 {
		rep := wsDial(t, db.addr)
		rep.register()
		rep.report(bike, "prohibited", fmt.Sprint(i))
	}
	awaitImage(t, urls[0], http.StatusNotFound, "hidden")
	awaitImage(t, urls[1], http.StatusNotFound, "hidden")
	awaitImage(t, urls[2], http.StatusOK, "")

	out, errOut, err := run(t, binary(t), "moderate", "remove", fmt.Sprint(bike), "--redis", r.Addr, "--reason", "prohibited")
	if err != nil {
		t.Fatalf("remove: %v\n%s%s", err, out, errOut)
	}
	if !strings.Contains(out, "photos: purge asked of 1 img node") ||
		!strings.Contains(out, "purge from a CDN in front of the img nodes: /"+names[0]+".jpg /"+names[1]+".jpg") {
		t.Fatalf("remove printed:\n%s", out)
	}
	awaitImage(t, urls[0], http.StatusNotFound, "not_found")
	awaitImage(t, urls[1], http.StatusOK, "")
	awaitImage(t, urls[2], http.StatusOK, "")
	d := names[0][:32]
	if _, err := os.Stat(filepath.Join(dir, d[:2], d[2:4], d)); !os.IsNotExist(err) {
		t.Fatalf("the removed listing's own photo is still on disk: %v", err)
	}
	out, _, err = run(t, binary(t), "moderate", "log", "--redis", r.Addr)
	if err != nil || !strings.Contains(out, "photo purge sent to 1 img nodes") {
		t.Fatalf("moderation log: %v\n%s", err, out)
	}
}
