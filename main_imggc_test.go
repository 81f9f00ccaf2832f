package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"image"
	"image/jpeg"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/images"
)

func TestParseMinFree(t *testing.T) {
	tests := []struct {
		in    string
		bytes int64
		pct   float64
		bad   bool
	}{
		{"1GiB", 1 << 30, 0, false},
		{"500MB", 500e6, 0, false},
		{"1073741824", 1 << 30, 0, false},
		{"2 GiB", 2 << 30, 0, false},
		{"5%", -1, 5, false},
		{"0", -1, 0, false},
		{"0%", -1, 0, false},
		{"100%", 0, 0, true},
		{"-1", 0, 0, true},
		{"lots", 0, 0, true},
		{"", 0, 0, true},
	}
	for _, tt := range tests {
		b, p, err := parseMinFree(tt.in)
		if (err != nil) != tt.bad || (!tt.bad && (b != tt.bytes || p != tt.pct)) {
			t.Errorf("parseMinFree(%q) = %d, %v, %v; want %d, %v, bad %v", tt.in, b, p, err, tt.bytes, tt.pct, tt.bad)
		}
	}
}

// The real binary: img nodes store uploads on a volume and know no Redis;
// `occase images gc` from cron sweeps the volume against the posts in the
// db nodes' Redis. A dry run deletes nothing; the sweep deletes the old
// orphan only. An img node whose disk is under --image-min-free answers
// 507.
func TestImagesGCCommand(t *testing.T) {
	key := []byte("0123456789abcdefghijklmnopqrstuv")
	keyFile := filepath.Join(t.TempDir(), "image.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "images")
	p := startProc(t, "--role", "img", "--image-key-file", keyFile, "--image-dir", dir)
	r := brokertest.StartRedis(t)
	prefix := brokertest.Prefix()
	b := brokertest.Open(t, broker.Options{Addrs: []string{r.Addr}, Prefix: prefix})

	s, err := images.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	names, err := s.Names(2)
	if err != nil {
		t.Fatal(err)
	}
	linked, orphan := names[0], names[1]
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, image.NewGray(image.Rect(0, 0, 16, 16)), nil); err != nil {
		t.Fatal(err)
	}
	status := func(method, name string) int {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+p.addr+"/"+name+".jpg", bytes.NewReader(jpg.Bytes()))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	old := time.Now().Add(-30 * 24 * time.Hour)
	for _, n := range names {
		if code := status(http.MethodPost, n); code != http.StatusCreated {
			t.Fatalf("POST: %d", code)
		}
		d := n[:images.DigestLen]
		if err := os.Chtimes(filepath.Join(dir, d[:2], d[2:4], d), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.StorePost(context.Background(), []byte(`"from":"7","body":"{\"images\":[\"`+linked+`.jpg\"]}","date":1`),
		"7", time.Now().Unix(), "test"); err != nil {
		t.Fatal(err)
	}
	gc := func(extra ...string) string {
		t.Helper()
		args := append([]string{"images", "gc", "--redis", r.Addr, "--redis-prefix", prefix,
			"--image-key-file", keyFile, "--image-dir", dir, "--log-format", "json"}, extra...)
		out, err := exec.Command(binary(t), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("occase %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := gc("--dry-run"); !strings.Contains(out, `"deleted":1`) || !strings.Contains(out, `"dry_run":true`) {
		t.Fatalf("dry run log: %s", out)
	}
	if status(http.MethodGet, orphan) != http.StatusOK {
		t.Fatal("the dry run deleted the orphan")
	}
	if out := gc(); !strings.Contains(out, `"deleted":1`) {
		t.Fatalf("sweep log: %s", out)
	}
	if status(http.MethodGet, orphan) != http.StatusNotFound || status(http.MethodGet, linked) != http.StatusOK {
		t.Fatal("after the sweep: the orphan is served, or the linked image is not")
	}
	// Without Redis the command fails, and says so in its exit status.
	out, err := exec.Command(binary(t), "images", "gc", "--redis", "127.0.0.1:1", "--redis-timeout", "500ms",
		"--image-key-file", keyFile, "--image-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "open Redis: connect to redis 127.0.0.1:1:") || strings.Contains(string(out), "retrying") {
		t.Fatalf("gc without Redis: %v, want one error naming the address, no retries:\n%s", err, out)
	}

	full := startProc(t, "--role", "img", "--image-key-file", keyFile, "--image-dir", t.TempDir(), "--image-min-free", "1000000TB")
	n, _ := s.Names(1)
	resp, err := http.Post("http://"+full.addr+"/"+n[0]+".jpg", "image/jpeg", bytes.NewReader(jpg.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInsufficientStorage {
		t.Fatalf("upload on a full disk: %d, want 507", resp.StatusCode)
	}
}
