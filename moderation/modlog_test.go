package moderation

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"go.uber.org/zap/zaptest"
)

// Two named tokens each act through the API; the log says which name
// did what, from which address, newest first, the hostile note as it was
// given; a wrong token acts as nobody. On Redis and on the embedded server.
func TestTokenNamesInLog(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		ctx := context.Background()
		b := brokertest.Open(t, be.Options)
		anaTok, bobTok := strings.Repeat("a", 40), strings.Repeat("b", 40)
		h, err := NewHandler(HandlerConfig{Service: New(b, 10, 0, nil, zaptest.NewLogger(t)),
			Operators:  []Operator{{Name: "ana", Token: []byte(anaTok)}, {Name: "bob", Token: []byte(bobTok)}},
			ClientAddr: func(r *http.Request) string { return r.Header.Get("X-Test-Addr") }, Log: zaptest.NewLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		call := func(method, path, tok, addr, body string) (int, string) {
			t.Helper()
			req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("X-Test-Addr", addr)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(out)
		}
		user, err := b.CreateUser(ctx, "d", time.Now().UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		note := "scam ring \x1b[31m\u202e<img src=x onerror=alert(1)>"
		nb, _ := json.Marshal(map[string]string{"note": note})
		if code, body := call("POST", "/admin/v1/users/"+user+"/ban", anaTok, "192.0.2.1", string(nb)); code != 200 || !strings.Contains(body, `"logged":true`) {
			t.Fatalf("ana bans: %d %s", code, body)
		}
		if code, _ := call("POST", "/admin/v1/users/"+user+"/unban", strings.Repeat("c", 40), "192.0.2.3", ""); code != 401 {
			t.Fatalf("a wrong token: %d, want 401", code)
		}
		if code, body := call("POST", "/admin/v1/users/"+user+"/unban", bobTok, "192.0.2.2", ""); code != 200 || !strings.Contains(body, `"logged":true`) {
			t.Fatalf("bob unbans: %d %s", code, body)
		}
		code, body := call("GET", "/admin/v1/log?limit=10", bobTok, "192.0.2.2", "")
		var p LogPage
		if code != 200 || json.Unmarshal([]byte(body), &p) != nil {
			t.Fatalf("the log: %d %s", code, body)
		}
		if p.Total != 2 || len(p.Entries) != 2 {
			t.Fatalf("the log holds %d entries (%s), want 2", p.Total, body)
		}
		un, ban := p.Entries[0], p.Entries[1]
		if un.By != "bob" || un.Addr != "192.0.2.2" || un.Action != "unban" || un.Target != user || un.Result != ResultOK {
			t.Errorf("the newest entry: %+v, want bob's unban", un)
		}
		if ban.By != "ana" || ban.Addr != "192.0.2.1" || ban.Action != "ban" || ban.Target != user || ban.Note != note || ban.At == 0 {
			t.Errorf("the older entry: %+v, want ana's ban with the note as given", ban)
		}
		if code, _ := call("GET", "/admin/v1/log?limit=1001", anaTok, "192.0.2.1", ""); code != 400 {
			t.Errorf("limit 1001: %d, want 400", code)
		}
		if code, _ := call("GET", "/admin/v1/log?offset=-1", anaTok, "192.0.2.1", ""); code != 400 {
			t.Errorf("offset -1: %d, want 400", code)
		}
	})
}

// A log write that fails (a Redis user that may not touch the log's
// key) neither undoes nor hides the action: the ban holds, the result
// says logged:false.
func TestLogWriteFails(t *testing.T) {
	r := brokertest.StartRedis(t)
	prefix := brokertest.Prefix()
	ctx := context.Background()
	admin := brokertest.Open(t, broker.Options{Addrs: []string{r.Addr}, Prefix: prefix})
	limited := r.Limited(t, prefix, "nolog", prefix+"u:*", prefix+"pd:*", prefix+"{posts}:*", prefix+"{bans}:*")
	user, err := admin.CreateUser(ctx, "d", 1000)
	if err != nil {
		t.Fatal(err)
	}
	res, err := New(limited, 10, 0, nil, zaptest.NewLogger(t)).Ban(ctx, "ana", user, BanRequest{Note: "n"})
	if err != nil || res.Logged || !res.Listed {
		t.Fatalf("a ban whose log write fails: %+v %v, want done with logged false", res, err)
	}
	if ban, err := admin.BanOf(ctx, user); err != nil || ban.At == 0 {
		t.Fatalf("the ban must hold: %+v %v", ban, err)
	}
	if p, err := New(admin, 10, 0, nil, zaptest.NewLogger(t)).Log(ctx, 0, 10); err != nil || p.Total != 0 {
		t.Fatalf("the log: %+v %v, want empty", p, err)
	}
}
