package images

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// The broker is the sweep's source of posts and its lease.
var (
	_ PostSource = (*broker.Client)(nil)
	_ Leaser     = (*broker.Client)(nil)
)

// gcEnv is a real img server (uploads over HTTP into a real directory) and a
// real Redis (or the embedded server) holding posts, as a sweep meets them.
type gcEnv struct {
	t   *testing.T
	h   *harness
	b   *broker.Client
	jpg []byte
}

func newGCEnv(t *testing.T, opt broker.Options) *gcEnv {
	t.Helper()
	return &gcEnv{t: t, h: newHarness(t, Config{}), b: brokertest.Open(t, opt), jpg: encodeJPEG(t, 16, 16)}
}

// upload stores a fresh picture over HTTP and returns its "<digest>/<name>".
func (e *gcEnv) upload() string {
	e.t.Helper()
	n := e.h.name()
	if code := e.h.upload("/"+n+".jpg", e.jpg); code != http.StatusCreated {
		e.t.Fatalf("upload %s: %d", n, code)
	}
	return n
}

// age sets the stored file of name to have been stored d ago.
func (e *gcEnv) age(name string, d time.Duration) {
	e.t.Helper()
	dg := name[:DigestLen]
	p := filepath.Join(e.h.root, dg[:2], dg[2:4], dg)
	old := time.Now().Add(-d)
	if err := os.Chtimes(p, old, old); err != nil {
		e.t.Fatal(err)
	}
}

// publish stores a post whose body is body (a JSON string's contents,
// already escaped) by owner, dated date, and returns its id.
func (e *gcEnv) publish(owner, body string, date int64) uint64 {
	e.t.Helper()
	id, err := e.b.StorePost(context.Background(),
		[]byte(`"from":"`+owner+`","body":"`+body+`","to":[[[0,0,0]]],"features":0,"date":0,"range_values":[]`),
		owner, date, "test")
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// served reports whether the img server still serves name.
func (e *gcEnv) served(name string) bool {
	e.t.Helper()
	resp, _ := e.h.do(http.MethodGet, "/"+name+".jpg", nil, nil)
	switch resp.StatusCode {
	case http.StatusOK:
		return true
	case http.StatusNotFound:
		return false
	}
	e.t.Fatalf("GET %s: %d", name, resp.StatusCode)
	return false
}

// gc is a sweeper on its own DirStore over the same directory, as the
// `occase images gc` command opens the volume beside a running img node.
func (e *gcEnv) gc(cfg GCConfig, ps PostSource) *GC {
	e.t.Helper()
	st, err := NewDirStore(e.h.root)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { st.Close() })
	if cfg.DeleteRate == 0 {
		cfg.DeleteRate = -1
	}
	if ps == nil {
		ps = e.b
	}
	return NewGC(cfg, e.h.signer, st, ps, e.b, zaptest.NewLogger(e.t))
}

func counterValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

const week = 7 * 24 * time.Hour

func TestImageSweep(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, be brokertest.Backend) {
		e := newGCEnv(t, be.Options)
		ctx := context.Background()
		now := time.Now().Unix()
		old := 30 * 24 * time.Hour

		linked := e.upload()    // linked from a live post: kept however old
		escaped := e.upload()   // linked as a URL inside JSON inside JSON, with "\/"
		orphan := e.upload()    // never linked, old: deleted
		young := e.upload()     // never linked, stored an hour ago: kept
		forged := e.upload()    // "linked" by its digest with another name: not ours, deleted
		ofDeleted := e.upload() // its post was deleted: deleted
		ofExpired := e.upload() // its post expired: deleted
		evidence := e.upload()  // its post was reported, then deleted by its author: kept for review
		for _, n := range []string{linked, escaped, orphan, forged, ofDeleted, ofExpired, evidence} {
			e.age(n, old)
		}
		e.age(young, time.Hour)

		e.publish("7", `{\"images\":[\"`+linked+`.jpg\"],\"title\":\"bike\"}`, now)
		e.publish("7", `{\"images\":[\"https:\\\/\\\/img.example\\\/`+strings.Replace(escaped, "/", `\\\/`, 1)+`.jpg\"]}`, now)
		e.publish("8", `{\"images\":[\"`+forged[:DigestLen]+`/AAAAAAAAA.jpg\"]}`, now)
		del := e.publish("9", `{\"images\":[\"`+ofDeleted+`.jpg\"]}`, now)
		e.publish("9", `{\"images\":[\"`+ofExpired+`.jpg\"]}`, now-100*24*3600)
		if err := e.b.DeletePost(ctx, del, "9"); err != nil {
			t.Fatal(err)
		}
		reported := e.publish("9", `{\"images\":[\"`+evidence+`.jpg\"]}`, now)
		if _, err := e.b.ReportPost(ctx, reported, broker.Report{By: "7", Reason: "scam", At: now}, broker.ReportBounds{}); err != nil {
			t.Fatal(err)
		}
		if kept, err := e.b.DeleteOwnPost(ctx, reported, "9"); err != nil || !kept {
			t.Fatalf("the author's delete of a reported post: %v %v", kept, err)
		}
		if _, err := e.b.ExpirePosts(ctx, now-90*24*3600, 100); err != nil {
			t.Fatal(err)
		}
		gone := []string{orphan, forged, ofDeleted, ofExpired}
		kept := []string{linked, escaped, young, evidence}

		// A dry run counts and deletes nothing.
		res, err := e.gc(GCConfig{OrphanAge: week, DryRun: true}, nil).Sweep(ctx)
		if err != nil || res.Outcome != OutcomeOK {
			t.Fatalf("dry run: %+v, %v", res, err)
		}
		if res.Deleted != len(gone) || res.Stored != 8 || res.Linked != 3 || res.Young != 1 || res.Posts != 3 || res.Evidence != 1 {
			t.Fatalf("dry run: %+v", res)
		}
		for _, n := range append(gone, kept...) {
			if !e.served(n) {
				t.Fatalf("the dry run deleted %s", n)
			}
		}

		g := e.gc(GCConfig{OrphanAge: week}, nil)
		res, err = g.Sweep(ctx)
		if err != nil || res.Outcome != OutcomeOK || res.Deleted != len(gone) {
			t.Fatalf("sweep: %+v, %v", res, err)
		}
		if want := int64(len(gone) * len(e.jpg)); res.BytesFreed != want {
			t.Fatalf("bytes freed %d, want %d", res.BytesFreed, want)
		}
		for _, n := range gone {
			if e.served(n) {
				t.Errorf("%s was kept", n)
			}
		}
		for _, n := range kept {
			if !e.served(n) {
				t.Errorf("%s was deleted", n)
			}
		}
		if got := counterValue(t, g.swept); got != float64(len(gone)) {
			t.Fatalf("occase_images_swept_total = %v", got)
		}
		if got := counterValue(t, g.freed); got != float64(res.BytesFreed) {
			t.Fatalf("occase_image_bytes_freed_total = %v", got)
		}
		// The lease was given back: the next sweep runs, and finds nothing.
		res, err = g.Sweep(ctx)
		if err != nil || res.Outcome != OutcomeOK || res.Deleted != 0 || res.Stored != 4 {
			t.Fatalf("second sweep: %+v, %v", res, err)
		}
	})
}

// failingPosts reads every post, then fails, as a connection lost on the
// last page would.
type failingPosts struct{ PostSource }

func (f failingPosts) ScanPosts(ctx context.Context, fn func(string)) error {
	if err := f.PostSource.ScanPosts(ctx, fn); err != nil {
		return err
	}
	return errors.New("connection reset")
}

// A sweep that cannot read every post deletes nothing: not when Redis is
// down, not when the scan fails part way.
func TestImageSweepDeletesNothingWithoutAllPosts(t *testing.T) {
	r := brokertest.StartRedis(t)
	e := newGCEnv(t, broker.Options{Addrs: []string{r.Addr}, Prefix: brokertest.Prefix(), Timeout: time.Second})
	ctx := context.Background()
	orphan := e.upload()
	e.age(orphan, 30*24*time.Hour)
	e.publish("7", `{}`, time.Now().Unix())

	res, err := e.gc(GCConfig{OrphanAge: week}, failingPosts{e.b}).Sweep(ctx)
	if err == nil || res.Outcome != OutcomeFailed || res.Deleted != 0 {
		t.Fatalf("partial scan: %+v, %v", res, err)
	}
	r.Stop()
	res, err = e.gc(GCConfig{OrphanAge: week}, nil).Sweep(ctx)
	if err == nil || res.Outcome != OutcomeFailed || res.Deleted != 0 {
		t.Fatalf("Redis down: %+v, %v", res, err)
	}
	if !e.served(orphan) {
		t.Fatal("the orphan was deleted without the posts")
	}
}

// One sweep at a time over a shared store; and none on a Redis where no
// post was ever published (a wrong --redis or --redis-prefix would
// otherwise delete every image).
func TestImageSweepLeaseAndEmptyRedis(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		e := newGCEnv(t, be.Options)
		ctx := context.Background()
		orphan := e.upload()
		e.age(orphan, 30*24*time.Hour)

		res, err := e.gc(GCConfig{OrphanAge: week}, nil).Sweep(ctx)
		if err != nil || res.Outcome != OutcomeRefused || res.Deleted != 0 {
			t.Fatalf("empty Redis: %+v, %v", res, err)
		}
		e.publish("7", `{}`, time.Now().Unix())
		if ok, err := e.b.TakeLease(ctx, LeaseName, "another-node", time.Minute); !ok || err != nil {
			t.Fatalf("take lease: %v %v", ok, err)
		}
		res, err = e.gc(GCConfig{OrphanAge: week}, nil).Sweep(ctx)
		if err != nil || res.Outcome != OutcomeBusy || res.Deleted != 0 {
			t.Fatalf("lease held: %+v, %v", res, err)
		}
		if !e.served(orphan) {
			t.Fatal("deleted while another held the lease")
		}
		if err := e.b.ReleaseLease(ctx, LeaseName, "another-node"); err != nil {
			t.Fatal(err)
		}
		res, err = e.gc(GCConfig{OrphanAge: week}, nil).Sweep(ctx)
		if err != nil || res.Outcome != OutcomeOK || res.Deleted != 1 {
			t.Fatalf("after release: %+v, %v", res, err)
		}
	})
}

func TestScanNames(t *testing.T) {
	s := testSigner(t)
	const name = "aB3+x-9Qz"
	d := s.Digest(name)
	tests := []struct {
		name, text string
		want       bool
	}{
		{"path", d + "/" + name + ".jpg", true},
		{"url", "https://img.example/" + d + "/" + name + ".webp", true},
		{"json slash", `"` + d + `\/` + name + `.jpg"`, true},
		{"json in json", `\"` + d + `\\\/` + name + `.jpg\"`, true},
		{"percent slash", d + "%2F" + name, true},
		{"percent plus", d + "/aB3%2Bx-9Qz", true},
		{"unicode plus", d + `/aB3\u002bx-9Qz`, true},
		{"unicode plus in json in json", d + `/aB3\\u002Bx-9Qz`, true},
		{"bare, no separator", d + name, false},
		{"other name", d + "/aB3+x-9QQ", false},
		{"uppercase digest", strings.ToUpper(d) + "/" + name, false},
		{"short", d + "/aB3+x", false},
		{"other key", otherSigner(t).Digest(name) + "/" + name, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			scanNames(tt.text, s, func(dg, n string) { got = append(got, dg+"/"+n) })
			if ok := len(got) == 1 && got[0] == d+"/"+name; ok != tt.want {
				t.Fatalf("scanNames(%q) = %v, want found %v", tt.text, got, tt.want)
			}
		})
	}
}

func otherSigner(t *testing.T) *Signer {
	k, err := RandomKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRefSet(t *testing.T) {
	var r refSet
	a, b := "00112233445566778899aabbccddeeff", "ffeeddccbbaa99887766554433221100"
	r.add(a)
	r.add(a)
	r.add("not hex at all, not a digest....")
	r.seal()
	if !r.has(a) || r.has(b) || r.len() != 1 {
		t.Fatalf("has(a)=%v has(b)=%v len=%d", r.has(a), r.has(b), r.len())
	}
}

// The disk guard: an upload is refused with 507 before its body is read
// while the store's file system has less free space than the threshold.
// A threshold above the disk's free space stands in for a full disk.
func TestUploadInsufficientStorage(t *testing.T) {
	for _, cfg := range []Config{{MinFreeBytes: 1 << 62}, {MinFreeBytes: -1, MinFreePercent: 100}} {
		h := newHarness(t, cfg)
		n := h.name()
		resp, body := h.do(http.MethodPost, "/"+n+".jpg", nil, encodeJPEG(t, 8, 8))
		if resp.StatusCode != http.StatusInsufficientStorage || string(body) != "insufficient_storage\n" {
			t.Fatalf("%+v: %d %q, want 507 insufficient_storage", cfg, resp.StatusCode, body)
		}
		if got := refusals(h.img, reasonNoSpace); got != 1 {
			t.Fatalf("refusals{insufficient_storage} = %v", got)
		}
		h.checkRoot()
	}
	// The default (1 GiB) lets a test machine's uploads through.
	h := newHarness(t, Config{})
	if code := h.upload("/"+h.name()+".jpg", encodeJPEG(t, 8, 8)); code != http.StatusCreated {
		t.Fatalf("default threshold: %d", code)
	}
}

func TestDiskGuardCachesStatfs(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	calls := 0
	g := newDiskGuard("/x", 100, 0)
	g.now = func() time.Time { return now }
	g.statfs = func(string) (uint64, uint64, error) { calls++; return 150, 1000, nil }
	if !g.allows(10) || g.allows(60) || calls != 1 {
		t.Fatalf("calls %d", calls)
	}
	now = now.Add(diskGuardEvery)
	g.allows(0)
	if calls != 2 {
		t.Fatalf("calls %d after a second", calls)
	}
	g.statfs = func(string) (uint64, uint64, error) { return 0, 0, errors.New("EIO") }
	now = now.Add(diskGuardEvery)
	if !g.allows(0) {
		t.Fatal("a file system that cannot be asked refuses uploads")
	}
}

// BenchmarkScanPost: the sweep's cost per post, for a stored post with five
// linked photos as the web app writes them.
func BenchmarkScanPost(b *testing.B) {
	s := testSigner(b)
	names, err := s.Names(5)
	if err != nil {
		b.Fatal(err)
	}
	post := `{"id":123456,"from":"98765","body":"{\"title\":\"Golf, 2016, 150,000 km\",\"msg\":\"One owner, full service history, winter tyres included.\",\"price\":9500,\"images\":[\"` +
		strings.Join(names, `.jpg\",\"`) + `.jpg\"]}","to":[[[1,2,3]],[[4,5,0]]],"features":4,"date":1770000000,"range_values":[9500,2016,150000]}`
	b.SetBytes(int64(len(post)))
	b.ReportAllocs()
	var refs refSet
	for b.Loop() {
		refs.keys = refs.keys[:0]
		scanNames(post, s, func(d, _ string) { refs.add(d) })
	}
	if len(refs.keys) != 5 {
		b.Fatalf("found %d links", len(refs.keys))
	}
}

// lostLease grants the lease, then says it was lost at the first renewal.
type lostLease struct{ renewals int }

func (l *lostLease) TakeLease(context.Context, string, string, time.Duration) (bool, error) {
	return true, nil
}
func (l *lostLease) RenewLease(context.Context, string, string, time.Duration) (bool, error) {
	l.renewals++
	return false, nil
}
func (l *lostLease) ReleaseLease(context.Context, string, string) error { return nil }

// A sweep renews its lease as it goes, and stops, deleting nothing more,
// once the lease is lost: another sweeper may hold it now.
func TestImageSweepStopsWhenLeaseLost(t *testing.T) {
	m, err := broker.StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	e := newGCEnv(t, broker.Options{Addrs: []string{m.Addr()}, Prefix: brokertest.Prefix()})
	orphan := e.upload()
	e.age(orphan, 30*24*time.Hour)
	e.publish("7", `{}`, time.Now().Unix())
	st, err := NewDirStore(e.h.root)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Each reading of the clock is a minute after the last: the lease
	// (2 minutes, renewed after a third of that) is due at every step.
	now := time.Now()
	clock := func() time.Time { now = now.Add(time.Minute); return now }
	l := &lostLease{}
	g := NewGC(GCConfig{OrphanAge: week, DeleteRate: -1, Clock: clock}, e.h.signer, st, e.b, l, zaptest.NewLogger(t))
	res, err := g.Sweep(context.Background())
	if !errors.Is(err, errLeaseLost) || res.Deleted != 0 || l.renewals == 0 {
		t.Fatalf("%+v, %v, %d renewals", res, err, l.renewals)
	}
	if !e.served(orphan) {
		t.Fatal("deleted after the lease was lost")
	}
}

// BenchmarkSweepPosts: one dry-run sweep over 100,000 posts with five
// linked photos each in a real redis-server (the store is empty, so this
// is the reading of the posts: HSCAN, the scan for names, the set).
func BenchmarkSweepPosts(b *testing.B) {
	r := brokertest.StartRedis(b)
	c := brokertest.Open(b, broker.Options{Addrs: []string{r.Addr}, Prefix: brokertest.Prefix()})
	s := testSigner(b)
	const posts = 100_000
	ctx := context.Background()
	sem := make(chan struct{}, 64)
	errs := make(chan error, 1)
	for i := range posts {
		names, err := s.Names(5)
		if err != nil {
			b.Fatal(err)
		}
		post := `{"id":` + strconv.Itoa(i+1) + `,"from":"98765","body":"{\"title\":\"Golf, 2016\",\"price\":9500,\"images\":[\"` +
			strings.Join(names, `.jpg\",\"`) + `.jpg\"]}","to":[[[1,2,3]],[[4,5,0]]],"features":4,"date":1770000000,"range_values":[9500]}`
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			if err := c.RawStorePost(ctx, uint64(i+1), post, 1770000000); err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		}()
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	st, err := NewDirStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	g := NewGC(GCConfig{DryRun: true}, s, st, c, nil, zap.NewNop())
	b.ResetTimer()
	for b.Loop() {
		res, err := g.Sweep(ctx)
		if err != nil || res.Posts != posts || res.Links != 5*posts {
			b.Fatalf("%+v, %v", res, err)
		}
	}
}

// The walk reports only stored images where the layout puts them: a file
// an operator left in a shard, a digest in the wrong shard, a symbolic link
// (even one pointing at a stored image) and upload temporaries are never
// the sweep's to delete.
func TestWalkSkipsForeignFiles(t *testing.T) {
	root := t.TempDir()
	st, err := NewDirStore(root)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := testSigner(t)
	names, _ := s.Names(1)
	d := names[0][:DigestLen]
	if err := st.Create(context.Background(), d, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	shard := filepath.Join(root, d[:2], d[2:4])
	other := "ffff" + d[4:]
	outside := filepath.Join(t.TempDir(), "precious")
	for _, f := range []struct{ path, body string }{
		{filepath.Join(shard, "README"), "notes"},
		{filepath.Join(shard, other), "wrong shard"},
		{filepath.Join(root, tempPrefix+"fresh"), "in flight"},
		{outside, "outside the root"},
	} {
		if err := os.WriteFile(f.path, []byte(f.body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := "0000" + d[4:]
	if err := os.MkdirAll(filepath.Join(root, "00", "00"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "00", "00", link)); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := st.walk(context.Background(), func(im StoredImage) error {
		got = append(got, im.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != d {
		t.Fatalf("walk reported %v, want only %s", got, d)
	}
	if err := st.remove(link); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Fatalf("removing a link's name reached its target: %v", err)
	}
}
