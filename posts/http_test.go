package posts

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/occase/occase/broker/brokertest"
)

func serve(t *testing.T, n *node) *httptest.Server {
	e := echo.New()
	n.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	r, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

type page struct {
	Posts []struct {
		ID       uint64 `json:"id"`
		Features uint64 `json:"features"`
	} `json:"posts"`
	Next string `json:"next"`
}

func TestHTTPReadAPI(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		clk := newClock()
		n := startNode(t, b.Options, Config{Clock: clk.Now, QuotaN: 100, Menu: DemoMenu(),
			CORSOrigins: []string{"https://app.example"}})
		srv := serve(t, n)
		pub := newConn("7")
		var all, cars []uint64
		for i := 0; i < 30; i++ {
			prod := "[0,0,0]" // Cars/Volkswagen/Golf
			if i%3 == 0 {
				prod = "[1,0,0]" // Motorcycles/Honda/CB500F
			}
			id := n.publish(t, pub, publishFrame("[0,0,0]", prod, 1<<(i%4), fmt.Sprint(1000*i)))
			all = append([]uint64{id}, all...)
			if i%3 != 0 {
				cars = append([]uint64{id}, cars...)
			}
		}
		walk := func(query string) []uint64 {
			var got []uint64
			cursor := ""
			for pages := 0; pages < 100; pages++ {
				code, _, body := get(t, srv.URL+"/api/posts?"+query+cursor)
				if code != http.StatusOK {
					t.Fatalf("%s: %d %s", query, code, body)
				}
				var p page
				if err := json.Unmarshal([]byte(body), &p); err != nil {
					t.Fatal(err)
				}
				for _, it := range p.Posts {
					got = append(got, it.ID)
				}
				if p.Next == "" {
					return got
				}
				cursor = "&before=" + p.Next
			}
			t.Fatal("pagination does not end")
			return nil
		}
		// Newest first, 20 per page by default, the cursor walks the rest.
		if got := walk(""); fmt.Sprint(got) != fmt.Sprint(all) {
			t.Fatalf("all posts\n got %v\nwant %v", got, all)
		}
		if got := walk("limit=7&product=0"); fmt.Sprint(got) != fmt.Sprint(cars) {
			t.Fatalf("cars (product hash 0)\n got %v\nwant %v", got, cars)
		}
		// Filters as in subscribe: features, ranges, locations, repeated or
		// comma-separated lists.
		tests := []struct {
			query string
			want  int
		}{
			{"", 30},
			{"product=0", 20},
			{"product=0&product=4398046511104", 30}, // [1,0,0] at depth 3
			{"product=0,4398046511104", 30},
			{"features=1", 8},
			{"features=3", 16},
			{"ranges=0,4999", 5},
			{"ranges=0,4999&features=1", 2},
			{"location=1", 0},
			{"location=0", 30},
		}
		for _, tc := range tests {
			code, _, body := get(t, srv.URL+"/api/posts?count=1&"+tc.query)
			if code != http.StatusOK || body != fmt.Sprintf("{\"count\":%d}\n", tc.want) {
				t.Errorf("count %q: %d %s, want %d", tc.query, code, body, tc.want)
			}
		}
		// The detail is a sentence, not the reason again ("bad_request: sort
		// must be ...").
		for _, bad := range []string{"product=x", "features=-1", "ranges=1", "ranges=a,b", "limit=0", "before=x", "sort=x", "q=a"} {
			if code, _, body := get(t, srv.URL+"/api/posts?"+bad); code != http.StatusBadRequest || !strings.Contains(body, `"reason":"bad_request"`) ||
				strings.Contains(body, `"detail":"bad_request`) {
				t.Errorf("%s: %d %s", bad, code, body)
			}
		}

		// One post, exactly as stored.
		code, _, body := get(t, fmt.Sprintf("%s/api/posts/%d", srv.URL, all[0]))
		n.mu.RLock()
		want := string(n.x.byID[all[0]].JSON)
		n.mu.RUnlock()
		if code != http.StatusOK || body != want {
			t.Fatalf("one post: %d %s", code, body)
		}
		if code, _, _ := get(t, srv.URL+"/api/posts/99999"); code != http.StatusNotFound {
			t.Fatalf("unknown post: %d", code)
		}
		if code, _, _ := get(t, srv.URL+"/api/posts/abc"); code != http.StatusBadRequest {
			t.Fatalf("bad id: %d", code)
		}

		// The menu, in the shape the web app reads.
		code, _, body = get(t, srv.URL+"/api/menu")
		if code != http.StatusOK || !strings.HasPrefix(body,
			`{"locations":{"depth":3,"children":[{"name":"Germany","children":[{"name":"Bavaria","children":[{"name":"Munich"},`) ||
			!strings.Contains(body, `"products":{"depth":3,"children":[{"name":"Cars","children":[{"name":"Volkswagen","children":[{"name":"Golf"},`) {
			t.Fatalf("menu: %d %s", code, body)
		}

		// CORS for the configured origin only, with a preflight.
		_, h, _ := get(t, srv.URL+"/api/posts", "Origin", "https://app.example")
		if h.Get("Access-Control-Allow-Origin") != "https://app.example" {
			t.Fatalf("allowed origin: %v", h)
		}
		_, h, _ = get(t, srv.URL+"/api/posts", "Origin", "https://evil.example")
		if h.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("other origin allowed: %v", h)
		}
		r, _ := http.NewRequest(http.MethodOptions, srv.URL+"/api/posts/1", nil)
		r.Header.Set("Origin", "https://app.example")
		r.Header.Set("Access-Control-Request-Method", "GET")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "GET") {
			t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
		}

		// Without a menu, /api/menu says so.
		n2 := startNode(t, b.Options, Config{Clock: clk.Now})
		if code, _, body := get(t, serve(t, n2).URL+"/api/menu"); code != http.StatusNotFound || !strings.Contains(body, "not_found") {
			t.Fatalf("no menu: %d %s", code, body)
		}
	})
}
