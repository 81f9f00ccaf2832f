package images

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"
)

// The benchmarks compare the img server with plain net/http doing the same
// transfer in the same run, so the figure that matters is the ratio:
//
//	go test -run '^$' -bench . -benchtime 3s ./images
//
// Both sides run over loopback with keep-alive clients.

// benchPhoto is a 1024×768 JPEG with noise, about the size of an app's
// resized photo (~400 KB).
func benchPhoto(b *testing.B) []byte { return benchJPEG(b, 1024, 768) }

// benchThumb is a 160×120 JPEG (~10 KB), where per-request cost dominates.
func benchThumb(b *testing.B) []byte { return benchJPEG(b, 160, 120) }

func benchJPEG(b *testing.B, w, h int) []byte {
	b.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(1, 2))
	for y := range h {
		for x := range w {
			n := uint8(r.IntN(48))
			img.Set(x, y, color.RGBA{uint8(x/4) + n, uint8(y/3) + n, n * 3, 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

func benchClient(srv *httptest.Server) *http.Client {
	c := srv.Client()
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	return c
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

func doBench(b *testing.B, c *http.Client, method string, url func() string, body []byte, want int) {
	b.Helper()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var r io.Reader
			if method == http.MethodPost {
				r = bytes.NewReader(body)
			}
			req, _ := http.NewRequest(method, url(), r)
			resp, err := c.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want || (method == http.MethodGet && n != int64(len(body))) {
				b.Errorf("%s: %d, %d bytes", method, resp.StatusCode, n)
				return
			}
		}
	})
	b.StopTimer()
	reportRate(b)
}

// BenchmarkGet serves the same 32 stored photos through the img server and
// through http.FileServer over the same directory.
func BenchmarkGet(b *testing.B) {
	b.Run("photo", func(b *testing.B) { benchGet(b, benchPhoto(b)) })
	b.Run("thumb", func(b *testing.B) { benchGet(b, benchThumb(b)) })
}

func benchGet(b *testing.B, photo []byte) {
	root := b.TempDir()
	st, err := NewDirStore(root)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	s := testSigner(b)
	names, _ := s.Names(32)
	for _, n := range names {
		if err := st.Create(context.Background(), n[:DigestLen], bytes.NewReader(photo)); err != nil {
			b.Fatal(err)
		}
	}
	e := echo.New()
	NewServer(benchConfig, s, st, zap.NewNop()).Register(e)
	occase := httptest.NewServer(e)
	defer occase.Close()
	plain := httptest.NewServer(http.FileServer(http.Dir(root)))
	defer plain.Close()

	var i atomic.Uint64
	b.Run("occase", func(b *testing.B) {
		c := benchClient(occase)
		doBench(b, c, http.MethodGet, func() string {
			return occase.URL + "/" + names[i.Add(1)%32] + ".jpg"
		}, photo, http.StatusOK)
	})
	b.Run("fileserver", func(b *testing.B) {
		c := benchClient(plain)
		doBench(b, c, http.MethodGet, func() string {
			d := names[i.Add(1)%32][:DigestLen]
			return plain.URL + "/" + d[:2] + "/" + d[2:4] + "/" + d
		}, photo, http.StatusOK)
	})
}

// plainUpload is the baseline: net/http streaming the body to a new file,
// with no validation and, unless sync, no fsync.
func plainUpload(dir string, sync bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.CreateTemp(dir, "up-")
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer f.Close()
		if _, err := io.Copy(f, http.MaxBytesReader(w, r.Body, 10_000_000)); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		if sync {
			f.Sync()
		}
		w.WriteHeader(http.StatusCreated)
	})
}

// BenchmarkUpload stores the photo under fresh names through the img server
// (check, strip, write, fsync, link) and through the plain handler.
func BenchmarkUpload(b *testing.B) {
	photo := benchPhoto(b)
	s := testSigner(b)

	b.Run("occase", func(b *testing.B) {
		root := b.TempDir()
		st, err := NewDirStore(root)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		e := echo.New()
		NewServer(benchConfig, s, st, zap.NewNop()).Register(e)
		srv := httptest.NewServer(e)
		defer srv.Close()
		names, err := s.Names(b.N + 64)
		if err != nil {
			b.Fatal(err)
		}
		var i atomic.Int64
		doBench(b, benchClient(srv), http.MethodPost, func() string {
			return srv.URL + "/" + names[i.Add(1)] + ".jpg"
		}, photo, http.StatusCreated)
	})
	for _, sync := range []bool{false, true} {
		name := "nethttp-nosync"
		if sync {
			name = "nethttp-fsync"
		}
		b.Run(name, func(b *testing.B) {
			dir := filepath.Join(b.TempDir(), "up")
			os.Mkdir(dir, 0o755)
			srv := httptest.NewServer(plainUpload(dir, sync))
			defer srv.Close()
			doBench(b, benchClient(srv), http.MethodPost, func() string { return srv.URL + "/x" }, photo, http.StatusCreated)
		})
	}
}

// BenchmarkSanitize is the CPU cost of checking one photo, without HTTP.
func BenchmarkSanitize(b *testing.B) {
	photo := benchPhoto(b)
	withMeta := jpegWithMetadata(photo, 6)
	for _, tc := range []struct {
		name string
		b    []byte
	}{{"plain", photo}, {"metadata", withMeta}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.b)))
			for b.Loop() {
				if _, err := sanitize(tc.b, kindJPEG, 50_000_000); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGetInterleaved alternates requests to the img server and to
// http.FileServer within each goroutine, so that both see the same machine
// load (a shared machine makes back-to-back sub-benchmarks drift), and
// reports the time each spent per request and their ratio
// (occase/fileserver: 1.0 = same cost, 1.2 = 20% slower).
func BenchmarkGetInterleaved(b *testing.B) {
	b.Run("photo", func(b *testing.B) { benchGetInterleaved(b, benchPhoto(b)) })
	b.Run("thumb", func(b *testing.B) { benchGetInterleaved(b, benchThumb(b)) })
}

func benchGetInterleaved(b *testing.B, photo []byte) {
	root := b.TempDir()
	st, err := NewDirStore(root)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	s := testSigner(b)
	names, _ := s.Names(32)
	for _, n := range names {
		if err := st.Create(context.Background(), n[:DigestLen], bytes.NewReader(photo)); err != nil {
			b.Fatal(err)
		}
	}
	e := echo.New()
	NewServer(benchConfig, s, st, zap.NewNop()).Register(e)
	occase := httptest.NewServer(e)
	defer occase.Close()
	plain := httptest.NewServer(http.FileServer(http.Dir(root)))
	defer plain.Close()
	oc, pc := benchClient(occase), benchClient(plain)

	get := func(c *http.Client, url string) time.Duration {
		t0 := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			b.Error(err)
			return 0
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || n != int64(len(photo)) {
			b.Errorf("GET %s: %d, %d bytes", url, resp.StatusCode, n)
		}
		return time.Since(t0)
	}
	var i atomic.Uint64
	var occaseNS, plainNS atomic.Int64
	b.SetBytes(int64(len(photo)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := i.Add(1)
			n := names[k%32]
			d := n[:DigestLen]
			ours := func() { occaseNS.Add(int64(get(oc, occase.URL+"/"+n+".jpg"))) }
			theirs := func() { plainNS.Add(int64(get(pc, plain.URL+"/"+d[:2]+"/"+d[2:4]+"/"+d))) }
			// Both read the same file: whichever goes second finds its
			// bytes in the CPU caches, so take turns going first.
			if k%2 == 0 {
				ours()
				theirs()
			} else {
				theirs()
				ours()
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(occaseNS.Load())/float64(b.N), "occase-ns/req")
	b.ReportMetric(float64(plainNS.Load())/float64(b.N), "fileserver-ns/req")
	b.ReportMetric(float64(occaseNS.Load())/float64(plainNS.Load()), "ratio")
}

// BenchmarkUploadInterleaved alternates a full upload to the img server
// with a bare net/http upload that writes and fsyncs the body, as
// BenchmarkGetInterleaved does for reads. "cold" is a new store, where
// nearly every upload creates its shard directories (and syncs them and
// their parents); "warm" is a store whose shard directories exist, as
// they all do once a store holds a few hundred thousand images.
func BenchmarkUploadInterleaved(b *testing.B) {
	b.Run("cold", func(b *testing.B) { benchUploadInterleaved(b, false) })
	b.Run("warm", func(b *testing.B) { benchUploadInterleaved(b, true) })
}

func benchUploadInterleaved(b *testing.B, warm bool) {
	photo := benchPhoto(b)
	s := testSigner(b)
	root := b.TempDir()
	st, err := NewDirStore(root)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	e := echo.New()
	NewServer(benchConfig, s, st, zap.NewNop()).Register(e)
	occase := httptest.NewServer(e)
	defer occase.Close()
	dir := filepath.Join(b.TempDir(), "up")
	os.Mkdir(dir, 0o755)
	plain := httptest.NewServer(plainUpload(dir, true))
	defer plain.Close()
	oc, pc := benchClient(occase), benchClient(plain)
	names, err := s.Names(b.N + 64)
	if err != nil {
		b.Fatal(err)
	}
	if warm {
		for _, n := range names {
			if err := os.MkdirAll(filepath.Join(root, n[:2], n[2:4]), 0o755); err != nil {
				b.Fatal(err)
			}
		}
	}
	post := func(c *http.Client, url string) time.Duration {
		t0 := time.Now()
		resp, err := c.Post(url, "image/jpeg", bytes.NewReader(photo))
		if err != nil {
			b.Error(err)
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			b.Errorf("POST %s: %d", url, resp.StatusCode)
		}
		return time.Since(t0)
	}
	var i atomic.Int64
	var occaseNS, plainNS atomic.Int64
	b.SetBytes(int64(len(photo)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := i.Add(1)
			ours := func() { occaseNS.Add(int64(post(oc, occase.URL+"/"+names[k]+".jpg"))) }
			theirs := func() { plainNS.Add(int64(post(pc, plain.URL+"/x"))) }
			if k%2 == 0 {
				ours()
				theirs()
			} else {
				theirs()
				ours()
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(occaseNS.Load())/float64(b.N), "occase-ns/req")
	b.ReportMetric(float64(plainNS.Load())/float64(b.N), "nethttp-fsync-ns/req")
	b.ReportMetric(float64(occaseNS.Load())/float64(plainNS.Load()), "ratio")
}

// benchConfig is the default but for the per-address bound: every
// benchmark client is 127.0.0.1, and would otherwise get 503s past 4 at once.
var benchConfig = Config{UploadsPerAddress: 1 << 20}
