package moderation

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"go.uber.org/zap/zaptest"
)

const (
	goodA = "0123abcd/photo_1.jpg"
	goodB = "deadbeef00/p-2.webp"
)

// hostileImages is an images member no path of which may reach the page
// but the two good ones, in their order.
func hostileImages() []any {
	return []any{1, nil, true, map[string]any{"src": goodA}, []any{goodA},
		"javascript:alert(1)", "//evil.example/0123abcd/x.jpg", "https://evil.example/0123abcd/x.jpg",
		"../0123abcd/x.jpg", "0123abcd/../x.jpg", "0123abcd/x.jpg/..", "0123abcd/x.svg", "0123ABCD/x.jpg",
		"/0123abcd/x.jpg", "0123abcd/x.jpg?u=1", "0123abcd/x.jpg#f", "0123abcd/x y.jpg", "0123abcd/x.jpg\n",
		"0123abcd\\x.jpg", "0123abcd/a/b.jpg", "0123abc/x.jpg", "0123abcd/" + strings.Repeat("a", 65) + ".jpg",
		goodA, "data:image/png;base64,AAAA", goodB}
}

// post bodies the tests store, as the app writes them: a JSON string.
func bodyWith(images any) string {
	doc := map[string]any{"title": "Bike", "msg": "m"}
	if images != nil {
		doc["images"] = images
	}
	b, _ := json.Marshal(doc)
	s, _ := json.Marshal(string(b))
	return string(s)
}

func TestPostImages(t *testing.T) {
	many := make([]any, 1000)
	for i := range many {
		many[i] = fmt.Sprintf("%08x/n%d.png", i, i)
	}
	for _, c := range []struct {
		name, post string
		want       []string
	}{
		{"gone", "", nil},
		{"not json", "{", nil},
		{"body not json", `{"body":"x"}`, nil},
		{"missing", `{"body":` + bodyWith(nil) + `}`, nil},
		{"not a list", `{"body":` + bodyWith("0123abcd/x.jpg") + `}`, nil},
		{"an object", `{"body":` + bodyWith(map[string]any{"0": goodA}) + `}`, nil},
		{"valid", `{"body":` + bodyWith([]any{goodA, goodB}) + `}`, []string{goodA, goodB}},
		{"hostile", `{"body":` + bodyWith(hostileImages()) + `}`, []string{goodA, goodB}},
		{"1000", `{"body":` + bodyWith(many) + `}`, []string{"00000000/n0.png", "00000001/n1.png", "00000002/n2.png", "00000003/n3.png"}},
	} {
		if _, _, got := readPost(c.post); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// readPost reads the title and text from the same parse as the photos,
// and a member of the wrong type costs only that member.
func TestReadPost(t *testing.T) {
	enc := func(doc map[string]any) string {
		b, _ := json.Marshal(doc)
		s, _ := json.Marshal(string(b))
		return `{"body":` + string(s) + `}`
	}
	long := strings.Repeat("é", 200)
	for _, c := range []struct {
		name, post, title, snippet string
		images                     []string
	}{
		{"gone", "", "", "", nil},
		{"not json", "{x", "", "{x", nil},
		{"body not json", `{"body":"plain words"}`, "", "plain words", nil},
		{"title, msg, photos", enc(map[string]any{"title": "Bike", "msg": "red", "images": []any{goodA}}), "Bike", "red", []string{goodA}},
		{"photos of the wrong type", enc(map[string]any{"title": "Bike", "msg": "red", "images": "x"}), "Bike", "red", nil},
		{"title of the wrong type", enc(map[string]any{"title": 7, "msg": "red", "images": []any{goodB}}), "", "red", []string{goodB}},
		{"neither title nor msg", enc(map[string]any{"price": 3}), "", `{"price":3}`, nil},
		{"clipped", enc(map[string]any{"title": long, "msg": long}), strings.Repeat("é", 80) + "…", strings.Repeat("é", 120) + "…", nil},
	} {
		title, snippet, images := readPost(c.post)
		if title != c.title || snippet != c.snippet || !reflect.DeepEqual(images, c.images) {
			t.Errorf("%s: %q %q %q, want %q %q %q", c.name, title, snippet, images, c.title, c.snippet, c.images)
		}
	}
}

func TestParsePublicURL(t *testing.T) {
	for in, want := range map[string][2]string{
		"https://market.example.com":        {"https://market.example.com", "https://market.example.com"},
		"https://Market.Example.com/":       {"https://market.example.com", "https://market.example.com"},
		"http://127.0.0.1:8080/shop/":       {"http://127.0.0.1:8080/shop", "http://127.0.0.1:8080"},
		"https://[::1]:8443":                {"https://[::1]:8443", "https://[::1]:8443"},
		"https://market.example.com/a%20b/": {"https://market.example.com/a%20b", "https://market.example.com"},
	} {
		p, o, err := ParsePublicURL(in)
		if err != nil || p != want[0] || o != want[1] {
			t.Errorf("%q: %q %q %v, want %q", in, p, o, err, want)
		}
	}
	for _, in := range []string{"", "market.example.com", "/shop", "//market.example.com", "ftp://x.example",
		"javascript:alert(1)", "https:market.example.com", "https://", "https:///x", "https://u@x.example",
		"https://x.example/?", "https://x.example/?a=1", "https://x.example/#", "https://x.example/#/post/1",
		"https://x.example/'; script-src *", "https://x.example/a;b", "https://x.example\n",
		"https://*.example.com", "https://a_b.example.com", "https://a$b.com", "https://a(b).com", "https://x.example:*"} {
		if _, _, err := ParsePublicURL(in); err == nil || !strings.Contains(err.Error(), "--public-url") {
			t.Errorf("%q: %v, want a refusal naming --public-url", in, err)
		}
	}
}

// The reports listing carries each post's photo paths, valid ones only
// (at most MaxImages), none for a post without; the handler passes them
// on, with the public address, only with PublicURL, and the page's CSP
// lets in images of exactly that origin. On Redis and on the embedded
// server.
func TestReportImages(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		ctx := context.Background()
		b := brokertest.Open(t, be.Options)
		svc := New(b, 10, time.Hour, nil, zaptest.NewLogger(t))
		author, err := b.CreateUser(ctx, "d", time.Now().UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		reporter, err := b.CreateUser(ctx, "d", time.Now().UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		many := make([]any, 1000)
		for i := range many {
			many[i] = "javascript:alert(1)"
		}
		many[999] = goodB
		want := map[uint64][]string{}
		for i, c := range []struct {
			images any
			want   []string
		}{
			{[]any{goodA, goodB}, []string{goodA, goodB}},
			{hostileImages(), []string{goodA, goodB}},
			{nil, nil},
			{"javascript:alert(1)", nil},
			{many, []string{goodB}},
		} {
			id, err := b.StorePost(ctx, []byte(`"from":"`+author+`","date":1,"body":`+bodyWith(c.images)), author, time.Now().Unix(), "test")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.ReportPost(ctx, id, broker.Report{By: reporter, Reason: "scam", At: int64(i), Text: "look"}, broker.ReportBounds{}); err != nil {
				t.Fatal(err)
			}
			want[id] = c.want
		}
		q, err := svc.Reports(ctx, 50, 3)
		if err != nil || len(q.Reports) != len(want) {
			t.Fatalf("reports: %+v %v", q, err)
		}
		for _, l := range q.Reports {
			if !reflect.DeepEqual(l.Images, want[l.ID]) {
				t.Errorf("post %d: images %q, want %q", l.ID, l.Images, want[l.ID])
			}
		}

		for _, public := range []string{"", "https://market.example.com/shop/"} {
			h, err := NewHandler(HandlerConfig{Service: svc, Token: []byte(token), PublicURL: public,
				ClientAddr: func(*http.Request) string { return "192.0.2.7" }, Log: zaptest.NewLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			req, _ := http.NewRequest("GET", srv.URL+"/admin/v1/reports", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var got struct {
				PublicURL *string `json:"public_url"`
				Reports   []struct {
					ID     uint64    `json:"id"`
					Images *[]string `json:"images"`
				} `json:"reports"`
			}
			if resp.StatusCode != 200 || json.Unmarshal(raw, &got) != nil || len(got.Reports) != len(want) {
				t.Fatalf("public %q: %d %s", public, resp.StatusCode, raw)
			}
			for _, l := range got.Reports {
				switch {
				case public == "" && l.Images != nil:
					t.Errorf("without a public URL, post %d has images: %s", l.ID, raw)
				case public != "" && want[l.ID] != nil && (l.Images == nil || !reflect.DeepEqual(*l.Images, want[l.ID])):
					t.Errorf("post %d: %s, want images %q", l.ID, raw, want[l.ID])
				case public != "" && want[l.ID] == nil && l.Images != nil:
					t.Errorf("post %d has no good photo, yet: %s", l.ID, raw)
				}
			}
			wantCSP := "img-src 'self';"
			if public == "" && got.PublicURL != nil {
				t.Errorf("public_url without the flag: %s", raw)
			}
			if public != "" {
				wantCSP = "img-src 'self' https://market.example.com;"
				if got.PublicURL == nil || *got.PublicURL != "https://market.example.com/shop" {
					t.Errorf("public_url: %s", raw)
				}
			}
			for _, p := range []string{"/admin/", "/admin/admin.js", "/admin/admin.css"} {
				resp, err := http.Get(srv.URL + p)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				csp := resp.Header.Get("Content-Security-Policy")
				if resp.StatusCode != 200 || strings.Count(csp, "img-src") != 1 || !strings.Contains(csp, wantCSP) ||
					!strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self';") {
					t.Errorf("public %q, %s: %d CSP %q, want %q", public, p, resp.StatusCode, csp, wantCSP)
				}
			}
			srv.Close()
		}
		if _, err := NewHandler(HandlerConfig{Service: svc, Token: []byte(token), PublicURL: "javascript:alert(1)"}); err == nil {
			t.Fatal("a handler took a bad public URL")
		}
	})
}
