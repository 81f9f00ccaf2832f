package main

import (
	"bytes"
	"encoding/hex"
	"image"
	"image/jpeg"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/images"
)

// The real binary in role img serves uploads with no Redis anywhere (the
// --redis address has nothing listening), from the directory and key its
// flags give.
func TestImgRoleBinaryWithoutRedis(t *testing.T) {
	key := []byte("0123456789abcdefghijklmnopqrstuv")
	keyFile := filepath.Join(t.TempDir(), "image.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "images")
	p := startProc(t, "--role", "img", "--image-key-file", keyFile, "--image-dir", dir, "--redis", "127.0.0.1:1")

	s, err := images.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	names, err := s.Names(1)
	if err != nil {
		t.Fatal(err)
	}
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, image.NewGray(image.Rect(0, 0, 32, 32)), nil); err != nil {
		t.Fatal(err)
	}
	url := "http://" + p.addr + "/" + names[0] + ".jpg"
	resp, err := http.Post(url, "image/jpeg", bytes.NewReader(jpg.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	resp, err = http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, jpg.Bytes()) {
		t.Fatalf("GET: %d, %d bytes", resp.StatusCode, len(got))
	}
	d := names[0][:images.DigestLen]
	if _, err := os.Stat(filepath.Join(dir, d[:2], d[2:4], d)); err != nil {
		t.Fatalf("not stored under --image-dir: %v", err)
	}
}

// The image flags reach the img server: a name issued longer ago than
// --image-name-ttl is refused with 410, and the refusal shows in /metrics.
func TestImgRoleExpiredName(t *testing.T) {
	key := []byte("0123456789abcdefghijklmnopqrstuv")
	dir := filepath.Join(t.TempDir(), "images")
	p := startProc(t, "--role", "img", "--image-key", hex.EncodeToString(key), "--image-dir", dir,
		"--redis", "127.0.0.1:1", "--image-name-ttl", "1h")

	old := time.Now().Add(-3 * 24 * time.Hour) // names carry their issue day
	s, err := images.NewSigner(key, images.WithClock(func() time.Time { return old }))
	if err != nil {
		t.Fatal(err)
	}
	names, err := s.Names(1)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+p.addr+"/"+names[0]+".jpg", "image/jpeg", bytes.NewReader([]byte{0xff, 0xd8}))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone || string(body) != "name_expired\n" {
		t.Fatalf("POST with a 3-day-old name: %d %q, want 410 name_expired", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `occase_image_refusals_total{reason="name_expired"} 1`) {
		t.Fatalf("/metrics does not count the refusal:\n%s", metrics)
	}
}
