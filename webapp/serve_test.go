package webapp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker/brokertest"
)

// serveBinary runs the real `occase serve --role=all` built from this
// repository, with its state in a redis-server of its own so that it
// survives a restart. Until the router mounts this package at "/", a
// loopback proxy in front serves the app and forwards everything else.
type serveBinary struct {
	bin, addr string
	args      []string
	cmd       *exec.Cmd
	done      chan error
	log       *os.File
	front     *httptest.Server // nil when the binary serves the app itself
}

// freeAddr is a loopback address for a process the test starts
// (brokertest.FreeAddr: outside the ports the kernel hands out).
func freeAddr(t *testing.T) string { return brokertest.FreeAddr(t) }

// startRedis runs a throw-away redis-server on loopback, or uses
// $OCCASE_TEST_REDIS.
func startRedis(t *testing.T) string {
	if a := os.Getenv("OCCASE_TEST_REDIS"); a != "" {
		return a
	}
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (apt-get install -y redis-server): the restart step needs state that outlives the process")
	}
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(path, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not come up: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond) // readiness poll, not synchronisation of the test
	}
}

func newServeBinary(t *testing.T) *serveBinary { return newServeBinaryWith(t) }

// newServeBinaryWithAdmin is newServeBinaryWith plus the moderation API:
// tokenLine (a token, or "name token") in a token file of the test's, and
// an admin listener; it returns the node, the admin listener's URL
// (http://host:port) and the token file.
func newServeBinaryWithAdmin(t *testing.T, tokenLine string, extra ...string) (*serveBinary, string, string) {
	tf := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tf, []byte(tokenLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := freeAddr(t)
	s := newServeBinaryWith(t, append([]string{"--admin-addr", admin, "--admin-token-file", tf}, extra...)...)
	return s, "http://" + admin, tf
}

// newServeBinaryWith is newServeBinary with further serve flags; in
// each, "{public}" is the node's public address (http://host:port).
func newServeBinaryWith(t *testing.T, extra ...string) *serveBinary {
	if _, err := os.Stat(filepath.Join("..", "main.go")); err != nil {
		t.Skip("no main.go at the repository root: the occase server is not on this branch yet")
	}
	s := &serveBinary{bin: os.Getenv("OCCASE_BIN")}
	if s.bin == "" {
		s.bin = filepath.Join(t.TempDir(), "occase")
		build := exec.Command("go", "build", "-o", s.bin, ".")
		build.Dir = ".."
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	prefix := make([]byte, 4)
	_, _ = rand.Read(prefix)
	s.addr = freeAddr(t)
	redis := startRedis(t)
	s.args = []string{"serve", "--role=all", "--addr", s.addr,
		"--redis", redis, "--redis-prefix", "webapp-test-" + hex.EncodeToString(prefix) + ":",
		"--secret", hex.EncodeToString(secret), "--log-level", "warn"}
	if redis == "embedded" {
		// The embedded server's snapshot goes with the test, not into
		// webapp/data/ of the checkout (the serve default, ./data/).
		s.args = append(s.args, "--embedded-snapshot", filepath.Join(t.TempDir(), "embedded.json"))
	}
	if s.hasFlag(t, "--menu") {
		// A known menu: without one, GET /api/menu answers 404 (an error in
		// the browser console on every load) and the app falls back to its
		// sample menu.
		menu := filepath.Join(t.TempDir(), "menu.json")
		if err := os.WriteFile(menu, []byte(fakeMenu), 0o644); err != nil {
			t.Fatal(err)
		}
		s.args = append(s.args, "--menu", menu)
	}
	if s.hasFlag(t, "--image-key") {
		// Fixed across the restart, like the password secret: names handed
		// out before it must still upload and display after it.
		imgKey := make([]byte, 32)
		_, _ = rand.Read(imgKey)
		s.args = append(s.args, "--image-key", hex.EncodeToString(imgKey), "--image-dir", t.TempDir())
	}
	for _, a := range extra {
		// "{public}" stands for the node's own public address, which
		// is chosen here (e.g. --public-url {public}).
		s.args = append(s.args, strings.ReplaceAll(a, "{public}", "http://"+s.addr))
	}
	var err error
	if s.log, err = os.Create(filepath.Join(t.TempDir(), "occase.log")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(s.log.Name())
			t.Logf("server log:\n%s", b)
		}
	})
	s.Start(t)
	if !s.servesApp() {
		target := &url.URL{Scheme: "http", Host: s.addr}
		proxy := httputil.NewSingleHostReverseProxy(target)
		app := Handler()
		s.front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Upgrade") == "" && (r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, AssetPrefix)) {
				app.ServeHTTP(w, r)
				return
			}
			proxy.ServeHTTP(w, r)
		}))
		t.Cleanup(s.front.Close)
		t.Log("the server does not serve the app at / yet: a test proxy serves it and forwards the rest")
	}
	return s
}

// hasFlag reports whether `occase serve` knows flag, so that the harness
// works with the server as it was before and after that flag landed.
func (s *serveBinary) hasFlag(t *testing.T, flag string) bool {
	out, err := exec.Command(s.bin, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("occase serve --help: %v\n%s", err, out)
	}
	return bytes.Contains(out, []byte(flag+" "))
}

func (s *serveBinary) URL() string {
	if s.front != nil {
		return s.front.URL
	}
	return "http://" + s.addr
}

func (s *serveBinary) servesApp() bool {
	r, err := http.Get("http://" + s.addr + "/")
	if err != nil {
		return false
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode == http.StatusOK && bytes.Contains(b, []byte("/assets/app.js"))
}

func (s *serveBinary) Start(t *testing.T) {
	s.cmd = exec.Command(s.bin, s.args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start occase: %v", err)
	}
	s.done = make(chan error, 1)
	go func(c *exec.Cmd, done chan error) { done <- c.Wait() }(s.cmd, s.done)
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := http.Get("http://" + s.addr + "/readyz")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-s.done:
			s.cmd = nil
			t.Fatalf("occase exited at start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("occase on %s not ready: %v", s.addr, err)
		}
		time.Sleep(50 * time.Millisecond) // readiness poll
	}
}

func (s *serveBinary) Stop(t *testing.T) {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		t.Errorf("occase did not stop within 30 s of SIGTERM")
	}
	s.cmd = nil
}

// probe asks the running server, over the real protocol, which parts it
// offers, so that the scenario skips only what is really missing.
func probe(t *testing.T, s *serveBinary) features {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+s.addr+"/ws", nil)
	if err != nil {
		t.Fatalf("probe: dial: %v", err)
	}
	defer c.CloseNow()
	call := func(req string) map[string]any {
		if err := c.Write(ctx, websocket.MessageText, []byte(req)); err != nil {
			t.Fatalf("probe: write %s: %v", req, err)
		}
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("probe: read reply to %s: %v", req, err)
			}
			var f map[string]any
			_ = json.Unmarshal(b, &f)
			if _, ok := f["result"]; ok {
				return f
			}
		}
	}
	why := func(f map[string]any) string {
		return fmt.Sprintf("%v replied %v (%v)", f["cmd"], f["reason"], f["detail"])
	}
	var have features
	if r := call(`{"cmd":"register"}`); r["result"] != "ok" {
		t.Fatalf("probe: register: %v", r)
	}
	if r := call(`{"cmd":"subscribe","channels":[[],[]],"any_of_features":0,"last_post_id":0,"ranges":[]}`); r["result"] != "ok" {
		have.posts = "subscribe: " + why(r)
	}
	have.deletions = probeDeletions(t, s)
	r := call(`{"cmd":"filenames"}`)
	if r["result"] != "ok" {
		have.images = "filenames: " + why(r)
		return have
	}
	names, _ := r["names"].([]any)
	if len(names) == 0 {
		have.images = "filenames_ack without names"
		return have
	}
	img, _ := os.ReadFile(writePhoto(t))
	resp, err := http.Post("http://"+s.addr+"/"+names[0].(string)+".png", "image/png", bytes.NewReader(img))
	if err != nil {
		have.images = "upload: " + err.Error()
		return have
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		have.images = fmt.Sprintf("image upload answered HTTP %d", resp.StatusCode)
	}
	return have
}

// probeDeletions publishes and deletes a post on a subscription that asks
// for deletions (PROTOCOL.md 1.1 §4), and says what is missing when no
// post_deleted comes.
func probeDeletions(t *testing.T, s *serveBinary) string {
	p := dialProto(t, "http://"+s.addr)
	if r := p.call(`{"cmd":"register"}`); r["result"] != "ok" {
		return fmt.Sprintf("register: %v", r)
	}
	if r := p.call(`{"cmd":"subscribe","deletions":true}`); r["result"] != "ok" {
		return fmt.Sprintf("subscribe: %v", r)
	}
	r := p.call(`{"cmd":"publish","items":[{"body":"{}","to":[[[0,0,0]],[[0,0,0]]]}]}`)
	if r["result"] != "ok" {
		return fmt.Sprintf("publish: %v", r)
	}
	id := fmt.Sprint(r["id"])
	if r := p.call(`{"cmd":"delete","id":` + id + `}`); r["result"] != "ok" {
		return fmt.Sprintf("delete: %v", r)
	}
	// A bounded wait for a frame that an older server never sends.
	if !p.waitPush(func(f map[string]any) bool { return f["cmd"] == "post_deleted" && fmt.Sprint(f["id"]) == id }, 5*time.Second) {
		return "no post_deleted within 5 s of a delete"
	}
	return ""
}

// probeEdits asks set_status of a post that does not exist: a server with
// issue 15's listing commands answers set_status_ack (not_found); an older
// one closes the connection on the unknown command.
func probeEdits(t *testing.T, s *serveBinary) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+s.addr+"/ws", nil)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.CloseNow()
	for _, req := range []string{`{"cmd":"register"}`, `{"cmd":"set_status","id":9007199254740991,"status":"sold"}`} {
		if err := c.Write(ctx, websocket.MessageText, []byte(req)); err != nil {
			return "write: " + err.Error()
		}
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				return "no reply to " + req + ": " + err.Error()
			}
			var f map[string]any
			_ = json.Unmarshal(b, &f)
			if _, ok := f["result"]; ok {
				if strings.Contains(req, "set_status") && f["cmd"] != "set_status_ack" {
					return fmt.Sprintf("set_status answered %v", f)
				}
				break
			}
		}
	}
	return ""
}

// probeSearch asks GET /api/posts?q=a: a server with text search refuses a
// query without a word of two letters (400); an older one ignores q.
func probeSearch(s *serveBinary) string {
	r, err := http.Get("http://" + s.addr + "/api/posts?q=a")
	if err != nil {
		return err.Error()
	}
	r.Body.Close()
	if r.StatusCode != http.StatusBadRequest {
		return fmt.Sprintf("GET /api/posts?q=a answered %d: q is not understood", r.StatusCode)
	}
	return ""
}

func TestBrowserAgainstServe(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	chromiumPath(t) // skip early when there is no browser
	s := newServeBinary(t)
	if s.front == nil {
		// Issue 11: /favicon.ico went to the image server and answered 400.
		r, err := http.Get("http://" + s.addr + FaviconPath)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusNoContent {
			t.Errorf("GET %s: %d, want 204", FaviconPath, r.StatusCode)
		}
	}
	have := probe(t, s)
	if have.posts != "" {
		t.Logf("skipping the post stages: %s", have.posts)
	}
	if have.images != "" {
		t.Logf("skipping the photo steps: %s", have.images)
	}
	if have.deletions != "" {
		t.Logf("not checking post_deleted: %s", have.deletions)
	}
	if have.edits = probeEdits(t, s); have.edits != "" {
		t.Logf("skipping the edit stage: %s", have.edits)
	}
	if have.search = probeSearch(s); have.search != "" {
		t.Logf("skipping the search stage: %s", have.search)
	}
	runScenario(t, s, "serve", have)
}

// hiddenPhotoListing has seller, registered on s, upload a 200x150 JPEG
// under its first filename and publish a listing of title and msg that
// links it; two fresh users then report it (scam, spam), which hides it
// on a server run with --auto-hide-reports 2 --auto-hide-min-age 0s. It
// waits until the photo is refused and returns the post's id, the
// photo's name ("<digest>/<name>.jpg") and refused, which waits until a
// GET of the photo on the public listener answers 404 hidden (when names
// the moment in a failure).
func hiddenPhotoListing(t *testing.T, s *serveBinary, seller *protoClient, title, msg string) (post, photo string, refused func(when string)) {
	t.Helper()
	public := "http://" + s.addr
	names, _ := seller.mustOK(`{"cmd":"filenames"}`)["names"].([]any)
	if len(names) == 0 {
		t.Fatal("filenames_ack without names")
	}
	var jpg bytes.Buffer
	img := image.NewRGBA(image.Rect(0, 0, 200, 150))
	for y := range 150 {
		for x := range 200 {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 90, 255})
		}
	}
	if err := jpeg.Encode(&jpg, img, nil); err != nil {
		t.Fatal(err)
	}
	photo = names[0].(string) + ".jpg"
	up, err := http.Post(public+"/"+photo, "image/jpeg", bytes.NewReader(jpg.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	up.Body.Close()
	if up.StatusCode != http.StatusCreated {
		t.Fatalf("upload: HTTP %d", up.StatusCode)
	}
	doc, _ := json.Marshal(map[string]any{"title": title, "msg": msg, "images": []string{photo}})
	post = fmt.Sprint(seller.mustOK(`{"cmd":"publish","items":[{"body":` + js(string(doc)) + `,"to":[[[0,0,0]],[[0,0,0]]],"features":0,"range_values":[120,2020,0]}]}`)["id"])
	for _, reason := range []string{"scam", "spam"} {
		rp := dialProto(t, s.URL())
		rp.mustOK(`{"cmd":"register"}`)
		rp.mustOK(fmt.Sprintf(`{"cmd":"report","id":%s,"reason":%q}`, post, reason))
	}
	refused = func(when string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; {
			resp, err := http.Get(public + "/" + photo)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusNotFound && strings.TrimSpace(string(b)) == "hidden" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: GET the photo: %d, want 404 hidden", when, resp.StatusCode)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	refused("hidden")
	return post, photo, refused
}
