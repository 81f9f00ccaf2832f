package images

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap/zaptest"
)

// harness is an img server on a loopback httptest server, storing under
// dir/images, so that anything written beside the root shows.
type harness struct {
	t      *testing.T
	srv    *httptest.Server
	img    *Server
	signer *Signer
	dir    string
	root   string
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	return newHarnessSigner(t, cfg, testSigner(t))
}

func newHarnessSigner(t *testing.T, cfg Config, s *Signer) *harness {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "images")
	st, err := NewDirStore(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	img := NewServer(cfg, s, st, zaptest.NewLogger(t))
	img.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &harness{t: t, srv: srv, img: img, signer: s, dir: dir, root: root}
}

// name returns a fresh signed "<digest>/<name>".
func (h *harness) name() string {
	h.t.Helper()
	n, err := h.signer.Names(1)
	if err != nil {
		h.t.Fatal(err)
	}
	return n[0]
}

// raw sends one request exactly as written, target included, on its own
// connection: http.Client would clean or refuse some of the paths tested.
func (h *harness) raw(method, target string, header map[string]string, body []byte) (*http.Response, []byte) {
	h.t.Helper()
	conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close()
	// Only a guard against a hung test; no test depends on it.
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n", method, target)
	_, te := header["Transfer-Encoding"]
	if !te && body != nil {
		fmt.Fprintf(&req, "Content-Length: %d\r\n", len(body))
	}
	for k, v := range header {
		fmt.Fprintf(&req, "%s: %s\r\n", k, v)
	}
	req.WriteString("\r\n")
	req.Write(body)
	// Written aside: a server may answer (413, 403) without reading a body
	// that does not fit in the socket buffers.
	go conn.Write(req.Bytes())
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		h.t.Fatalf("%s %q: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp, b
}

func (h *harness) do(method, path string, header map[string]string, body []byte) (*http.Response, []byte) {
	h.t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, r)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp, b
}

func (h *harness) upload(path string, body []byte) int {
	h.t.Helper()
	resp, _ := h.do(http.MethodPost, path, map[string]string{"Content-Type": "application/octet-stream"}, body)
	return resp.StatusCode
}

// checkRoot fails unless dir holds nothing but the root, and the root
// nothing but one file per stored digest, where the layout says.
func (h *harness) checkRoot(stored ...string) {
	h.t.Helper()
	entries, err := os.ReadDir(h.dir)
	if err != nil {
		h.t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "images" {
		h.t.Fatalf("written beside the root: %v", entries)
	}
	var want []string
	for _, d := range stored {
		want = append(want, d[:2]+"/"+d[2:4]+"/"+d)
	}
	got := listFiles(h.t, h.root)
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		h.t.Fatalf("files under the root: %v, want %v", got, want)
	}
}

func TestUploadAndServe(t *testing.T) {
	h := newHarness(t, Config{})
	tests := []struct {
		name, ext, other, wrong, ctype string
		body                           []byte
	}{
		{"jpeg", "jpg", "jpeg", "png", "image/jpeg", encodeJPEG(t, 300, 200)},
		{"png", "png", "png", "webp", "image/png", encodePNG(t, 300, 200)},
		{"webp", "webp", "webp", "jpg", "image/webp", webpLossy},
	}
	var stored []string
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := h.name()
			stored = append(stored, n[:DigestLen])
			path := "/" + n + "." + tc.ext
			if code := h.upload(path, tc.body); code != http.StatusCreated {
				t.Fatalf("POST: %d", code)
			}

			resp, got := h.do(http.MethodGet, path, nil, nil)
			if resp.StatusCode != http.StatusOK || !bytes.Equal(got, tc.body) {
				t.Fatalf("GET: %d, %d bytes, want the %d uploaded", resp.StatusCode, len(got), len(tc.body))
			}
			etag := resp.Header.Get("ETag")
			for k, want := range map[string]string{
				"Content-Type":           tc.ctype,
				"Cache-Control":          "public, max-age=31536000, immutable",
				"Content-Length":         strconv.Itoa(len(tc.body)),
				"X-Content-Type-Options": "nosniff",
			} {
				if v := resp.Header.Get(k); v != want {
					t.Errorf("GET %s: %q, want %q", k, v, want)
				}
			}
			if !strings.HasPrefix(etag, `"`) || len(etag) < 3 {
				t.Fatalf("ETag %q is not a strong validator", etag)
			}

			resp, got = h.do(http.MethodHead, path, nil, nil)
			if resp.StatusCode != http.StatusOK || len(got) != 0 ||
				resp.Header.Get("Content-Length") != strconv.Itoa(len(tc.body)) || resp.Header.Get("ETag") != etag {
				t.Fatalf("HEAD: %d, body %d, headers %v", resp.StatusCode, len(got), resp.Header)
			}

			resp, got = h.do(http.MethodGet, path, map[string]string{"Range": "bytes=10-19"}, nil)
			if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, tc.body[10:20]) {
				t.Fatalf("Range: %d, %q", resp.StatusCode, got)
			}
			want := fmt.Sprintf("bytes 10-19/%d", len(tc.body))
			if cr := resp.Header.Get("Content-Range"); cr != want {
				t.Fatalf("Content-Range %q, want %q", cr, want)
			}

			resp, got = h.do(http.MethodGet, path, map[string]string{"If-None-Match": etag}, nil)
			if resp.StatusCode != http.StatusNotModified || len(got) != 0 {
				t.Fatalf("If-None-Match: %d", resp.StatusCode)
			}

			// The other spelling of the same type serves the same bytes;
			// an extension of another type finds nothing.
			resp, got = h.do(http.MethodGet, "/"+n+"."+tc.other, nil, nil)
			if resp.StatusCode != http.StatusOK || !bytes.Equal(got, tc.body) {
				t.Fatalf("GET .%s: %d", tc.other, resp.StatusCode)
			}
			resp, _ = h.do(http.MethodGet, "/"+n+"."+tc.wrong, nil, nil)
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("GET .%s: %d, want 404", tc.wrong, resp.StatusCode)
			}
		})
	}
	h.checkRoot(stored...)
}

func TestUploadStripsLocation(t *testing.T) {
	h := newHarness(t, Config{})
	plain := encodeJPEG(t, 64, 48)
	in := jpegWithMetadata(plain, 6)
	if leaks(in) == "" {
		t.Fatal("test image carries no location")
	}
	n := h.name()
	if code := h.upload("/"+n+".jpg", in); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	resp, got := h.do(http.MethodGet, "/"+n+".jpg", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	if l := leaks(got); l != "" {
		t.Fatalf("%q survived the upload", l)
	}
	if o, _ := jpegOrientation(t, got); o != 6 {
		t.Fatalf("orientation %d, want 6", o)
	}
	samePixels(t, plain, got, decodeJPEG)

	// PNG likewise.
	pn := h.name()
	if code := h.upload("/"+pn+".png", pngWithMetadata(encodePNG(t, 20, 20), 3)); code != http.StatusCreated {
		t.Fatalf("POST png: %d", code)
	}
	_, got = h.do(http.MethodGet, "/"+pn+".png", nil, nil)
	if l := leaks(got); l != "" {
		t.Fatalf("png: %q survived the upload", l)
	}
}

func TestUploadBadInput(t *testing.T) {
	const maxBytes = 256 << 10
	h := newHarness(t, Config{MaxBytes: maxBytes, MaxPixels: 500 * 500})
	jpg := encodeJPEG(t, 120, 80)
	pngb := encodePNG(t, 120, 80)
	taken := h.name()
	if code := h.upload("/"+taken+".jpg", jpg); code != http.StatusCreated {
		t.Fatalf("first upload: %d", code)
	}
	n := h.name()
	d, name, _ := strings.Cut(n, "/")
	other := h.name()
	otherDigest, _, _ := strings.Cut(other, "/")
	big := encodePNG(t, 600, 600) // under MaxBytes, over MaxPixels
	if len(big) > maxBytes {
		t.Fatalf("test image of %d bytes exceeds MaxBytes", len(big))
	}
	noise := bytes.Repeat([]byte("0123456789abcdef"), maxBytes/16+1)

	tests := []struct {
		name   string
		method string
		target string
		header map[string]string
		body   []byte
		want   int
	}{
		{"dotdot", "POST", "/../../etc/passwd", nil, jpg, 400},
		{"dotdot two segments", "POST", "/../" + name + ".jpg", nil, jpg, 400},
		{"dotdot after digest", "POST", "/" + d + "/../" + name + ".jpg", nil, jpg, 400},
		{"escaped dotdot", "POST", "/" + d + "/..%2F..%2Fetc%2Fpasswd", nil, jpg, 400},
		{"encoded slash", "POST", "/" + d + "%2F" + name + ".jpg", nil, jpg, 400},
		{"encoded slash lower", "POST", "/" + d + "%2f" + name + ".jpg", nil, jpg, 400},
		{"absolute form", "POST", "http://test/../../" + name + ".jpg", nil, jpg, 400},
		{"double slash", "POST", "//" + d + "/" + name + ".jpg", nil, jpg, 400},
		{"NUL", "POST", "/" + d + "/" + name[:4] + "\x00" + name[5:] + ".jpg", nil, jpg, 400},
		{"escaped NUL", "POST", "/" + d + "/" + name[:4] + "%00" + name[5:] + ".jpg", nil, jpg, 400},
		{"missing digest", "POST", "/" + name + ".jpg", nil, jpg, 400},
		{"uppercase digest", "POST", "/" + strings.ToUpper(d) + "/" + name + ".jpg", nil, jpg, 400},
		{"root", "POST", "/", nil, jpg, 400},
		{"gif extension", "POST", "/" + n + ".gif", nil, jpg, 400},
		{"no extension", "POST", "/" + n, nil, jpg, 400},
		{"wrong digest", "POST", "/" + otherDigest + "/" + name + ".jpg", nil, jpg, 403},
		{"png bytes as jpg", "POST", "/" + n + ".jpg", nil, pngb, 415},
		{"jpeg bytes as png", "POST", "/" + n + ".png", nil, jpg, 415},
		{"truncated jpeg", "POST", "/" + n + ".jpg", nil, jpg[:len(jpg)/2], 415},
		{"truncated png", "POST", "/" + n + ".png", nil, pngb[:len(pngb)-20], 415},
		{"not an image", "POST", "/" + n + ".jpg", nil, []byte("<html><script>alert(1)</script></html>"), 415},
		{"empty body", "POST", "/" + n + ".jpg", nil, []byte{}, 415},
		{"declared too large", "POST", "/" + n + ".jpg", nil, noise, 413},
		{"chunked too large", "POST", "/" + n + ".jpg", map[string]string{"Transfer-Encoding": "chunked"}, chunked(noise), 413},
		{"too many pixels", "POST", "/" + n + ".png", nil, big, 413},
		{"taken", "POST", "/" + taken + ".jpg", nil, encodeJPEG(t, 10, 10), 409},
		{"taken other ext", "POST", "/" + taken + ".png", nil, pngb, 409},
		{"get absent", "GET", "/" + n + ".jpg", nil, nil, 404},
		{"head absent", "HEAD", "/" + n + ".jpg", nil, nil, 404},
		{"get wrong digest", "GET", "/" + otherDigest + "/" + strings.Split(taken, "/")[1] + ".jpg", nil, nil, 404},
		{"get traversal", "GET", "/../../etc/passwd", nil, nil, 400},
		{"get encoded slash", "GET", "/" + d + "%2F" + name + ".jpg", nil, nil, 400},
		{"put", "PUT", "/" + n + ".jpg", nil, jpg, 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := h.raw(tc.method, tc.target, tc.header, tc.body)
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %q: %d %q, want %d", tc.method, tc.target, resp.StatusCode, body, tc.want)
			}
		})
	}
	// The first upload is untouched, and only it was stored.
	resp, got := h.do(http.MethodGet, "/"+taken+".jpg", nil, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, jpg) {
		t.Fatalf("first upload changed: %d", resp.StatusCode)
	}
	h.checkRoot(taken[:DigestLen])
}

// chunked encodes b as one chunk and the terminator.
func chunked(b []byte) []byte {
	return append(fmt.Appendf(nil, "%x\r\n", len(b)), append(b, "\r\n0\r\n\r\n"...)...)
}

// A client that stops sending half way is cut off by the per-request read
// deadline, gets 408, and leaves nothing behind; the server keeps serving.
func TestUploadSlowClient(t *testing.T) {
	h := newHarness(t, Config{UploadTimeout: 50 * time.Millisecond})
	n := h.name()
	conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard only
	jpg := encodeJPEG(t, 64, 64)
	fmt.Fprintf(conn, "POST /%s.jpg HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n", n, len(jpg))
	// Half the body, then silence: the client never sends the rest.
	if _, err := conn.Write(jpg[:len(jpg)/2]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Fatalf("slow upload: %d (close %v), want 408 and a closed connection", resp.StatusCode, resp.Close)
	}
	h.checkRoot()
	// The same name can then be uploaded properly.
	if code := h.upload("/"+n+".jpg", jpg); code != http.StatusCreated {
		t.Fatalf("upload after the timeout: %d", code)
	}
	h.checkRoot(n[:DigestLen])
}

func TestCORS(t *testing.T) {
	n := "/" + vecDigest + "/" + vecName + ".jpg"
	preflight := map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
	tests := []struct {
		name      string
		origins   []string
		origin    string
		wantAllow string
	}{
		{"listed", []string{"https://app.example"}, "https://app.example", "https://app.example"},
		{"not listed", []string{"https://app.example"}, "https://evil.example", ""},
		{"any", []string{"*"}, "https://evil.example", "*"},
		{"none configured", nil, "https://app.example", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{CORSOrigins: tc.origins})
			hdr := map[string]string{}
			for k, v := range preflight {
				hdr[k] = v
			}
			hdr["Origin"] = tc.origin
			resp, _ := h.do(http.MethodOptions, n, hdr, nil)
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("preflight: %d", resp.StatusCode)
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tc.wantAllow {
				t.Fatalf("preflight allow-origin %q, want %q", got, tc.wantAllow)
			}
			if tc.wantAllow != "" {
				if m := resp.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") {
					t.Fatalf("allow-methods %q", m)
				}
				if ah := resp.Header.Get("Access-Control-Allow-Headers"); !strings.EqualFold(ah, "content-type") {
					t.Fatalf("allow-headers %q", ah)
				}
			}
			// The actual upload carries the header too.
			name := h.name()
			req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/"+name+".jpg", bytes.NewReader(encodeJPEG(t, 8, 8)))
			req.Header.Set("Origin", tc.origin)
			req.Header.Set("Content-Type", "image/jpeg")
			resp, err := h.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated || resp.Header.Get("Access-Control-Allow-Origin") != tc.wantAllow {
				t.Fatalf("upload: %d, allow-origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
			}
			if len(tc.origins) > 0 && tc.origins[0] != "*" && resp.Header.Get("Vary") != "Origin" {
				t.Fatalf("Vary %q, want Origin", resp.Header.Get("Vary"))
			}
		})
	}
}

// The signature and the declared size are judged before the body is read:
// a client that waits for "100 Continue" gets its answer without ever
// sending the body.
func TestUploadRefusedBeforeBody(t *testing.T) {
	h := newHarness(t, Config{MaxBytes: 1000})
	n := h.name()
	d, name, _ := strings.Cut(n, "/")
	other, _, _ := strings.Cut(h.name(), "/")
	tests := []struct {
		name   string
		target string
		length int
		want   int
	}{
		{"bad signature", "/" + other + "/" + name + ".jpg", 500, http.StatusForbidden},
		{"too large", "/" + d + "/" + name + ".jpg", 1001, http.StatusRequestEntityTooLarge},
		{"bad path", "/" + d + "/" + name + ".exe", 500, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard only
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", tc.target, tc.length)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d, want %d without sending the body", resp.StatusCode, tc.want)
			}
		})
	}
	h.checkRoot()
}

// Behind --tls-cert the same handlers run over HTTP/2: uploads, reads and
// the per-request read deadline must work there too.
func TestUploadHTTP2(t *testing.T) {
	dir := t.TempDir()
	st, err := NewDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := echo.New()
	s := testSigner(t)
	NewServer(Config{UploadTimeout: 100 * time.Millisecond}, s, st, zaptest.NewLogger(t)).Register(e)
	srv := httptest.NewUnstartedServer(e)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	c := srv.Client()

	names, _ := s.Names(2)
	jpg := encodeJPEG(t, 32, 32)
	resp, err := c.Post(srv.URL+"/"+names[0]+".jpg", "image/jpeg", bytes.NewReader(jpg))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST over %s: %d", resp.Proto, resp.StatusCode)
	}
	resp, err = c.Get(srv.URL + "/" + names[0] + ".jpg")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, jpg) {
		t.Fatalf("GET: %d", resp.StatusCode)
	}

	// A stream that stops half way gets 408.
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/"+names[1]+".jpg", pr)
	req.ContentLength = int64(len(jpg))
	go pw.Write(jpg[:len(jpg)/2])
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled stream: %d, want 408", resp.StatusCode)
	}
	if files := listFiles(t, dir); len(files) != 1 {
		t.Fatalf("files %v, want only the first upload", files)
	}
}
