package images

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// A purge deletes the removed post's photos that no live post links,
// whatever their age, and keeps the rest; it reads every post first, and
// a scan that fails deletes nothing. On a real redis-server and the
// embedded server.
func TestPurge(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		e := newGCEnv(t, be.Options)
		ctx := context.Background()
		now := time.Now().Unix()
		own, shared, unrelated := e.upload(), e.upload(), e.upload()
		// The removed post, as it was in Redis: gone from there now.
		removed := fmt.Sprintf(`{"id":1,"body":"{\"images\":[\"%s.jpg\",\"%s.png\"]}"}`, own, shared)
		e.publish("8", `{\"images\":[\"`+shared+`.jpg\"]}`, now)

		res, err := e.gc(GCConfig{}, failingPosts{e.b}).Purge(ctx, removed)
		if err == nil || res.Deleted != 0 || !e.served(own) {
			t.Fatalf("failed scan: %+v %v", res, err)
		}
		res, err = e.gc(GCConfig{}, nil).Purge(ctx, removed)
		want := []string{"/" + own + ".jpg", "/" + shared + ".png"}
		if err != nil || res.Deleted != 1 || res.Kept != 1 || res.Missing != 0 || !reflect.DeepEqual(res.Photos, want) {
			t.Fatalf("purge: %+v %v, want 1 deleted, 1 kept, photos %v", res, err, want)
		}
		if e.served(own) || !e.served(shared) || !e.served(unrelated) {
			t.Fatal("purge deleted the wrong photos")
		}
		// Again: already gone.
		if res, err = e.gc(GCConfig{}, nil).Purge(ctx, removed); err != nil || res.Deleted != 0 || res.Missing != 1 {
			t.Fatalf("second purge: %+v %v", res, err)
		}
		// A post without photos signed by this key purges nothing.
		other := otherSigner(t).mustName(t)
		if res, err = e.gc(GCConfig{}, nil).Purge(ctx, `{"body":"`+other+`.jpg"}`); err != nil || len(res.Photos) != 0 {
			t.Fatalf("foreign photo: %+v %v", res, err)
		}
	})
}

func (s *Signer) mustName(t *testing.T) string {
	t.Helper()
	n, err := s.Names(1)
	if err != nil {
		t.Fatal(err)
	}
	return n[0]
}

// Links reads what the sweep reads, each photo once, with the extension
// the link has ("" when none).
func TestLinks(t *testing.T) {
	s := newHarness(t, Config{}).signer
	a, b := s.mustName(t), s.mustName(t)
	post := `{"body":"{\"images\":[\"` + a + `.webp\",\"https://cdn.example/` + b + `\",\"` + a + `.jpg\"]}"}`
	got := Links(post, s, 0)
	want := []Photo{{Digest: a[:DigestLen], Name: a[DigestLen+1:], Ext: "webp"}, {Digest: b[:DigestLen], Name: b[DigestLen+1:]}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Links: %+v, want %+v", got, want)
	}
	if p := got[1].Path(); p != "/"+b+".jpg" {
		t.Fatalf("Path without an extension: %s", p)
	}
	if got := Links(post, s, 1); len(got) != 1 {
		t.Fatalf("Links bounded to 1: %+v", got)
	}
}

// The withheld set counts a photo once per hidden post that links it,
// and keeps to its bounds.
func TestWithheld(t *testing.T) {
	w := NewWithheld(2)
	w.MaxPerPost = 3
	if !w.Set(1, []string{"a", "b", "a"}) || !w.Set(2, []string{"b", "c"}) {
		t.Fatal("Set within bounds refused")
	}
	if w.Set(3, []string{"d"}) || w.Has("d") {
		t.Fatal("a third post withheld past the bound of 2")
	}
	if w.Set(1, []string{"a", "b", "c", "d"}) {
		t.Fatal("four photos withheld past the bound of 3")
	}
	if w.Posts() != 2 || w.Photos() != 3 {
		t.Fatalf("%d posts, %d photos", w.Posts(), w.Photos())
	}
	w.Drop(1)
	if w.Has("a") || !w.Has("b") || !w.Has("c") {
		t.Fatal("dropping post 1 freed a photo post 2 links, or kept one only 1 linked")
	}
	if left := w.Replace(map[uint64][]string{5: {"x"}, 6: {"y"}, 7: {"z"}}); left != 1 || w.Posts() != 2 || w.Has("b") {
		t.Fatalf("Replace: %d left, %d posts", left, w.Posts())
	}
	if !w.Holds(5) && !w.Holds(6) {
		t.Fatal("Holds")
	}
}

type withheldFunc func(string) bool

func (f withheldFunc) Has(d string) bool { return f(d) }

// A withheld photo is refused 404 "hidden", never cached, on GET and
// HEAD; another is served.
func TestServeWithheld(t *testing.T) {
	var hidden atomic.Pointer[string]
	hidden.Store(new(string))
	h := newHarness(t, Config{Withheld: withheldFunc(func(d string) bool { return d == *hidden.Load() })})
	jpg := encodeJPEG(t, 8, 8)
	a, b := h.name(), h.name()
	for _, n := range []string{a, b} {
		if code := h.upload("/"+n+".jpg", jpg); code != http.StatusCreated {
			t.Fatalf("upload: %d", code)
		}
	}
	d := a[:DigestLen]
	hidden.Store(&d)
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		resp, body := h.do(m, "/"+a+".jpg", nil, nil)
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Cache-Control") != "no-store" ||
			m == http.MethodGet && string(body) != "hidden\n" {
			t.Fatalf("%s withheld: %d %q %q", m, resp.StatusCode, resp.Header.Get("Cache-Control"), body)
		}
	}
	if resp, _ := h.do(http.MethodGet, "/"+b+".jpg", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET another: %d", resp.StatusCode)
	}
	hidden.Store(new(string))
	if resp, _ := h.do(http.MethodGet, "/"+a+".jpg", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET once no longer withheld: %d", resp.StatusCode)
	}
}

// publishAfterScan is a PostSource whose scan ends with a post published
// just after it (one the scan did not see), before the purge deletes.
type publishAfterScan struct {
	PostSource
	then func()
}

func (p publishAfterScan) ScanPosts(ctx context.Context, fn func(string)) error {
	err := p.PostSource.ScanPosts(ctx, fn)
	p.then()
	return err
}

// A post published while a purge reads the posts, linking one of the
// removed post's photos (its author publishing it again, a listing that
// copied the link), keeps that photo: the purge reads the posts issued
// since its scan began before it deletes. Before, the scan missed it and
// the photo went under a live listing. On a real redis-server and the
// embedded server.
func TestPurgeKeepsPhotoPublishedDuringScan(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		e := newGCEnv(t, be.Options)
		ctx := context.Background()
		now := time.Now().Unix()
		own, again := e.upload(), e.upload()
		e.publish("7", `{}`, now)
		removed := fmt.Sprintf(`{"id":1,"body":"{\"images\":[\"%s.jpg\",\"%s.jpg\"]}"}`, own, again)
		ps := publishAfterScan{e.b, func() { e.publish("8", `{\"images\":[\"`+again+`.jpg\"]}`, now) }}
		res, err := e.gc(GCConfig{}, ps).Purge(ctx, removed)
		if err != nil || res.Deleted != 1 || res.Kept != 1 {
			t.Fatalf("purge: %+v %v, want 1 deleted, 1 kept", res, err)
		}
		if e.served(own) || !e.served(again) {
			t.Fatalf("served after the purge: own %v, again %v (want false, true)", e.served(own), e.served(again))
		}
	})
}

// A purge keeps a photo that a copy kept for review links (a listing its
// author deleted while reported), as the sweep does: the moderators'
// evidence. On a real redis-server and the embedded server.
func TestPurgeKeepsEvidence(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		e := newGCEnv(t, be.Options)
		ctx := context.Background()
		now := time.Now().Unix()
		own, evidence := e.upload(), e.upload()
		reported := e.publish("9", `{\"images\":[\"`+evidence+`.jpg\"]}`, now)
		if _, err := e.b.ReportPost(ctx, reported, broker.Report{By: "7", Reason: "scam", At: now}, broker.ReportBounds{}); err != nil {
			t.Fatal(err)
		}
		if kept, err := e.b.DeleteOwnPost(ctx, reported, "9"); err != nil || !kept {
			t.Fatalf("the author's delete of a reported post: %v %v", kept, err)
		}
		removed := fmt.Sprintf(`{"id":99,"body":"{\"images\":[\"%s.jpg\",\"%s.jpg\"]}"}`, own, evidence)
		res, err := e.gc(GCConfig{}, nil).Purge(ctx, removed)
		if err != nil || res.Deleted != 1 || res.Kept != 1 {
			t.Fatalf("purge beside a kept copy: %+v %v, want 1 deleted, 1 kept", res, err)
		}
		if e.served(own) || !e.served(evidence) {
			t.Fatal("purge deleted the photo a kept copy links, or kept its own")
		}
	})
}
