package webapp

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/chromedp/chromedp"
)

// seed stores a post in the fake as if user "from" had published it.
func (s *fakeServer) seed(t *testing.T, from, post string) {
	var p map[string]any
	d := json.NewDecoder(bytes.NewReader([]byte(post)))
	d.UseNumber()
	if err := d.Decode(&p); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p["id"], p["from"], p["date"] = s.nextPost, from, int64(1700000000)
	s.nextPost++
	s.posts = append(s.posts, p)
}

// TestBrowserFilters checks that the filter form becomes the subscription
// the server matches on: location, product, any-of features, price range.
func TestBrowserFilters(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := newFakeServer(t)
	body := func(title string) string {
		b, _ := json.Marshal(map[string]any{"msg": "", "nick": "Seller", "images": []string{}, "title": title})
		return string(b)
	}
	post := func(title, to string, features, price int) string {
		b, _ := json.Marshal(map[string]any{"body": body(title), "features": features, "range_values": []int{price, 2020, 0}})
		return string(b[:len(b)-1]) + `,"to":` + to + `}`
	}
	munichBike := `[[[0,0,0]],[[0,0,0]]]`
	viennaCar := `[[[1,0,0]],[[1,0,0]]]`
	srv.seed(t, "900", post("New bike in Munich", munichBike, 1, 90))
	srv.seed(t, "900", post("Used bike in Munich", munichBike, 2, 350))
	srv.seed(t, "901", post("Used car in Vienna", viennaCar, 2, 9000))

	shots := artifactDir(t, "filters")
	n := 0
	b := newTab(t, startBrowser(t), "B", 1000, 800, shots, &n)
	b.do(chromedp.Navigate(srv.URL() + "/"))
	b.click("#signup-btn")
	b.click("#register-btn")
	b.state("online")

	titles := `[...document.querySelectorAll("#post-list [data-testid=post-title]")].map(e => e.textContent).sort().join("|")`
	expect := func(what, want string) {
		t.Helper()
		b.wait(what+": "+want, titles+` === `+js(want))
	}
	setSelect := func(id, v string) {
		b.eval(`(() => { const s = document.getElementById(` + js(id) + `); s.value = ` + js(v) + `; s.dispatchEvent(new Event("change")); return "" })()`)
	}
	setInput := func(id, v string) {
		b.eval(`(() => { document.getElementById(` + js(id) + `).value = ` + js(v) + `; return "" })()`)
	}
	expect("everything", "New bike in Munich|Used bike in Munich|Used car in Vienna")

	setSelect("filter-loc-0", "0")
	b.click("#filter-apply")
	expect("Germany", "New bike in Munich|Used bike in Munich")

	b.click("#filter-feat-1")
	b.click("#filter-apply")
	expect("new only", "New bike in Munich")

	b.click("#filter-feat-1")
	setInput("filter-price-min", "100")
	setInput("filter-price-max", "1000")
	b.click("#filter-apply")
	expect("100–1000 €", "Used bike in Munich")

	setSelect("filter-loc-0", "")
	setInput("filter-price-min", "")
	setInput("filter-price-max", "")
	setSelect("filter-prod-0", "1")
	b.click("#filter-apply")
	expect("cars anywhere", "Used car in Vienna")
	b.shot("cars")

	// A new matching post arrives live; a non-matching one does not.
	srv.mu.Lock()
	conns := make([]*fakeConn, 0, len(srv.conns))
	for c := range srv.conns {
		conns = append(conns, c)
	}
	srv.mu.Unlock()
	if len(conns) != 1 {
		t.Fatalf("%d connections, want 1", len(conns))
	}
	for _, p := range []string{post("Another bike", munichBike, 1, 50), post("Another car", viennaCar, 1, 5000)} {
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader([]byte(p)))
		d.UseNumber()
		_ = d.Decode(&m)
		srv.mu.Lock()
		m["id"], m["from"], m["date"] = srv.nextPost, "901", int64(1700000100)
		srv.nextPost++
		srv.posts = append(srv.posts, m)
		match := conns[0].sub.match(m)
		srv.mu.Unlock()
		if match {
			conns[0].write(map[string]any{"cmd": "post", "items": []any{m}})
		}
	}
	expect("live car", "Another car|Used car in Vienna")
}
