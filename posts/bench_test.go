package posts

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// countConn counts what it is sent.
type countConn struct{ n int }

func (c *countConn) User() string                 { return "b" }
func (c *countConn) Send([]byte) bool             { c.n++; return true }
func (c *countConn) SendLive(f []byte) bool       { return c.Send(f) }
func (c *countConn) SendPersistent(b []byte) bool { return c.Send(b) }
func (c *countConn) Client() string               { return "127.0.0.1" }

// matchSetup builds 100,000 subscriptions spread over 1,000 product
// channels (two products each; half also filter on one of 10 locations).
func matchSetup() (*index, []*sub, *Post) {
	x := newIndex(0)
	var all []*sub
	for i := 0; i < 100_000; i++ {
		f := &Filter{Prods: normalise([]uint64{uint64(i % 1000), uint64((i*7 + 3) % 1000)})}
		if i%2 == 0 {
			f.Locs = []uint64{uint64(i % 10)}
		}
		c := &countConn{}
		x.subscribe(c, f, 0)
		all = append(all, x.subs[c])
	}
	return x, all, &Post{ID: 1, Prod: 7, Loc: 3}
}

// BenchmarkMatch compares the fan-out through the product index with the
// naive scan of every subscription (the baseline), on the same data:
//
//	go test -run '^$' -bench BenchmarkMatch -benchtime 2s ./posts/
func BenchmarkMatch(b *testing.B) {
	x, all, p := matchSetup()
	frame := liveFrame(&Post{JSON: []byte(`{}`)})
	b.Run("index", func(b *testing.B) {
		d := 0
		for b.Loop() {
			d += x.fanout(p, frame, nil)
		}
		b.ReportMetric(float64(d)/b.Elapsed().Seconds(), "deliveries/s")
		b.ReportMetric(float64(d)/float64(b.N), "deliveries/op")
	})
	b.Run("naive-scan", func(b *testing.B) {
		d := 0
		for b.Loop() {
			for _, s := range all {
				if s.f.Match(p) {
					s.c.Send(frame)
					d++
				}
			}
		}
		b.ReportMetric(float64(d)/b.Elapsed().Seconds(), "deliveries/s")
		b.ReportMetric(float64(d)/float64(b.N), "deliveries/op")
	})
}

// BenchmarkIndexMemory reports the heap a node spends per stored post
// (index structures, the word index, plus the post's JSON), for 100,000
// posts with a 300-byte body over 1,000 products, by 10,000 authors of 10
// posts each: "opaque" is a body of one
// long word, "text" a JSON object whose title and description hold 45 words
// drawn from a vocabulary of 20,000 (the word index's cost):
//
//	go test -run '^$' -bench BenchmarkIndexMemory -benchtime 1x ./posts/
func BenchmarkIndexMemory(b *testing.B) {
	const n = 100_000
	opaque := func(int) string { return `"` + strings.Repeat("x", 298) + `"` }
	r := rand.New(rand.NewPCG(1, 1))
	word := func() string { return fmt.Sprintf("w%xz", r.IntN(20_000)*2654435761%(1<<24)) }
	text := func(int) string {
		var t, d []string
		for i := 0; i < 5; i++ {
			t = append(t, word())
		}
		for i := 0; i < 40; i++ {
			d = append(d, word())
		}
		inner, _ := json.Marshal(map[string]string{"title": strings.Join(t, " "), "description": strings.Join(d, " ")})
		body, _ := json.Marshal(string(inner))
		return string(body)
	}
	for _, tc := range []struct {
		name string
		body func(int) string
	}{{"opaque", opaque}, {"text", text}} {
		b.Run(tc.name, func(b *testing.B) {
			bodies := make([]string, n)
			for i := range bodies {
				bodies[i] = tc.body(i)
			}
			var jsonBytes, words int
			for b.Loop() {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				x := newIndex(0)
				jsonBytes, words = 0, 0
				for i := 0; i < n; i++ {
					d := &draft{body: []byte(bodies[i]), loc: []uint64{uint64(i % 3), 1, 2}, prod: []uint64{uint64(i % 10), uint64(i % 100), 3},
						features: 1, ranges: []int64{27000, 2016, 150000}}
					js := `{"id":` + fmt.Sprint(i+1) + `,` + string(d.members(fmt.Sprint(10000+i%10_000), 1570970000)) + `}`
					p, err := parseStored([]byte(js), 3, 3)
					if err != nil {
						b.Fatal(err)
					}
					jsonBytes += len(js)
					words += len(p.words)
					x.insert(p)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/post")
				b.ReportMetric(float64(jsonBytes)/n, "json-B/post")
				b.ReportMetric(float64(words)/n, "words/post")
				runtime.KeepAlive(x)
			}
		})
	}
}

// chanConn signals each frame it is sent.
type chanConn struct{ ch chan []byte }

func (c *chanConn) User() string                 { return "s" }
func (c *chanConn) Send(f []byte) bool           { c.ch <- f; return true }
func (c *chanConn) SendLive(f []byte) bool       { return c.Send(f) }
func (c *chanConn) SendPersistent(f []byte) bool { return c.Send(f) }
func (c *chanConn) Client() string               { return "127.0.0.1" }

// BenchmarkPublishToDelivery measures one publish on node 2 until its
// delivery to a subscriber on node 1, through a real redis-server:
//
//	go test -run '^$' -bench BenchmarkPublishToDelivery ./posts/
func BenchmarkPublishToDelivery(b *testing.B) {
	r := brokertest.StartRedis(b)
	opt := broker.Options{Addrs: []string{r.Addr}, Prefix: brokertest.Prefix()}
	cfg := Config{QuotaN: 1 << 30}
	n1 := startNode(b, opt, cfg)
	n2 := startNode(b, opt, cfg)
	sub := &chanConn{ch: make(chan []byte, 16)}
	ctx := context.Background()
	if err := n1.Subscribe(ctx, sub, req(b, `{"cmd":"subscribe"}`)); err != nil {
		b.Fatal(err)
	}
	<-sub.ch // subscribe_ack
	pub := &countConn{}
	frame := publishFrame("[0,1,2]", "[0,3,7]", 1, "27000,2016")
	var worst time.Duration
	for b.Loop() {
		start := time.Now()
		if err := n2.Publish(ctx, pub, req(b, frame)); err != nil {
			b.Fatal(err)
		}
		<-sub.ch
		worst = max(worst, time.Since(start))
	}
	b.ReportMetric(float64(worst.Microseconds()), "worst-us")
}

// readSetup builds an index of 200,000 posts over 1,000 products and 10
// locations, the size at which issue 10.5 measured 19 ms per no-match GET
// /api/posts.
func readSetup() *index {
	x := newIndex(0)
	for i := 1; i <= 200_000; i++ {
		x.insert(&Post{ID: uint64(i), Date: 100, Prod: uint64(i % 1000), Loc: uint64(i % 10),
			Features: 1, Ranges: []int64{int64(i % 5000)}, JSON: []byte("{}")})
	}
	return x
}

// fullScan is the read of the index before it had per-channel lists: a
// walk over every post (or every post of the named products) testing the
// whole filter, newest first, until limit matched. It is the baseline of
// BenchmarkNoMatchRead.
func fullScan(x *index, f *Filter, limit int) []*Post {
	var out []*Post
	for i := len(x.all.ps) - 1; i >= 0 && len(out) < limit; i-- {
		if p := x.all.ps[i]; p.alive() && f.matchProd(p) && f.matchRest(p) {
			out = append(out, p)
		}
	}
	return out
}

func fullCount(x *index, f *Filter) int {
	n := 0
	for _, p := range x.all.ps {
		if p.alive() && f.matchProd(p) && f.matchRest(p) {
			n++
		}
	}
	return n
}

// BenchmarkNoMatchRead compares a GET /api/posts page (and a count) whose
// filter matches nothing, at 200,000 posts, through the channel lists with
// the default scan bound against the full scan it replaces, in one run:
//
//	go test -run '^$' -bench BenchmarkNoMatchRead ./posts/
func BenchmarkNoMatchRead(b *testing.B) {
	x := readSetup()
	const maxScan = 10_000
	filters := []struct {
		name string
		f    *Filter
	}{
		{"location", &Filter{Locs: []uint64{77}}},                            // a channel nobody publishes in
		{"location+product", &Filter{Locs: []uint64{3}, Prods: []uint64{4}}}, // channels that never meet
		{"features", &Filter{Features: 2}},                                   // no channel: the residual walk, bounded
	}
	for _, tc := range filters {
		b.Run(tc.name+"/index", func(b *testing.B) {
			for b.Loop() {
				if r := x.scan(tc.f, 0, read{limit: 21, maxScan: maxScan, desc: true}); len(r.posts) != 0 {
					b.Fatal("matched")
				}
			}
		})
		b.Run(tc.name+"/full-scan", func(b *testing.B) {
			for b.Loop() {
				if len(fullScan(x, tc.f, 21)) != 0 {
					b.Fatal("matched")
				}
			}
		})
		b.Run(tc.name+"/count-index", func(b *testing.B) {
			for b.Loop() {
				x.count(tc.f, 0, 0, maxScan)
			}
		})
		b.Run(tc.name+"/count-full-scan", func(b *testing.B) {
			for b.Loop() {
				fullCount(x, tc.f)
			}
		})
	}
}

// BenchmarkSearch reads one page of 20 of a text search over 50,000 posts
// whose bodies hold 45 words from a vocabulary of 20,000 ("common" is on
// every post, "rare" on one in 1,000; prefixes expand to few or many
// words), newest first, with --max-scan's default:
//
//	go test -run '^$' -bench BenchmarkSearch -benchtime 200x ./posts/
func BenchmarkSearch(b *testing.B) {
	const n = 50_000
	r := rand.New(rand.NewPCG(2, 2))
	x := newIndex(0)
	for i := 0; i < n; i++ {
		var ws []string
		for j := 0; j < 44; j++ {
			ws = append(ws, fmt.Sprintf("w%d", r.IntN(20_000)))
		}
		ws = append(ws, "common")
		if i%1000 == 0 {
			ws = append(ws, "rare")
		}
		inner, _ := json.Marshal(map[string]string{"description": strings.Join(ws, " ")})
		body, _ := json.Marshal(string(inner))
		d := &draft{body: body, loc: []uint64{0, 0, 0}, prod: []uint64{uint64(i % 10), 0, 0}, features: 1 << (i % 4)}
		p, err := parseStored([]byte(`{"id":`+fmt.Sprint(i+1)+`,`+string(d.members("1", 1000))+`}`), 3, 3)
		if err != nil {
			b.Fatal(err)
		}
		x.insert(p)
	}
	for _, q := range []string{"common ", "rare ", "common rare ", "w123 ", "w1234", "w1", "absent "} {
		for _, features := range []uint64{0, 8} {
			b.Run(fmt.Sprintf("q=%s/features=%d", strings.TrimSpace(q), features), func(b *testing.B) {
				s, err := parseSearch(q)
				if err != nil {
					b.Fatal(err)
				}
				f := &Filter{Search: s, Features: features}
				var res readResult
				for b.Loop() {
					res = x.scan(f, 0, read{limit: 21, maxScan: 10_000, desc: true})
				}
				b.ReportMetric(float64(res.scanned), "examined")
				b.ReportMetric(float64(len(res.posts)), "found")
			})
		}
	}
}
