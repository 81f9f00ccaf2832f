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

	"github.com/occase/occase/broker/brokertest"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
)

// A viewer's token reads the queue, the bans, the log and whoami, and
// every action it tries is refused 403 forbidden_for_role before
// anything is done or logged; a moderator's acts as before. A reload
// that makes the viewer a moderator lets it act at once. On Redis and on
// the embedded server.
func TestViewerRole(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		ctx := context.Background()
		b := brokertest.Open(t, be.Options)
		anaTok, sueTok := strings.Repeat("a", 40), strings.Repeat("s", 40)
		h, err := NewHandler(HandlerConfig{Service: New(b, 10, 0, nil, zaptest.NewLogger(t)),
			Operators:  []Operator{{Name: "ana", Token: []byte(anaTok)}, {Name: "sue", Token: []byte(sueTok), Role: RoleViewer}},
			ClientAddr: func(r *http.Request) string { return "192.0.2.9" }, Log: zaptest.NewLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		call := func(method, path, tok, body string) (int, map[string]any) {
			t.Helper()
			req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatalf("%s %s: not JSON: %q", method, path, raw)
			}
			return resp.StatusCode, m
		}
		user, err := b.CreateUser(ctx, "d", time.Now().UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ tok, name, role string }{{anaTok, "ana", "moderator"}, {sueTok, "sue", "viewer"}} {
			code, m := call("GET", "/admin/v1/whoami", c.tok, "")
			if code != 200 || m["name"] != c.name || m["role"] != c.role || m["can_act"] != (c.role == "moderator") {
				t.Fatalf("whoami of %s: %d %v", c.name, code, m)
			}
		}
		for _, p := range []string{"/admin/v1/reports", "/admin/v1/bans", "/admin/v1/log"} {
			if code, m := call("GET", p, sueTok, ""); code != 200 {
				t.Fatalf("the viewer's GET %s: %d %v", p, code, m)
			}
		}
		for _, c := range []struct{ path, body, words string }{
			{"/admin/v1/users/" + user + "/ban", `{"note":"x","remove_posts":true}`, "may not ban users"},
			{"/admin/v1/users/" + user + "/unban", "", "may not unban users"},
			{"/admin/v1/posts/1/remove", `{"reason":"spam"}`, "may not remove posts"},
			{"/admin/v1/posts/1/dismiss", "", "may not dismiss reports"},
			{"/admin/v1/bans/rebuild", "", "may not rebuild the list of bans"},
			{"/admin/v1/users/" + user + "/ban", strings.Repeat("x", MaxBody+10), "may not ban users"}, // refused before the body bound
		} {
			code, m := call("POST", c.path, sueTok, c.body)
			msg, _ := m["error"].(string)
			if code != 403 || m["reason"] != ReasonRole || !strings.Contains(msg, "the token of sue is a viewer's") || !strings.Contains(msg, c.words) {
				t.Fatalf("the viewer's POST %s: %d %v", c.path, code, m)
			}
		}
		if ban, err := b.BanOf(ctx, user); err != nil || ban.At != 0 {
			t.Fatalf("the viewer's ban took effect: %+v %v", ban, err)
		}
		if _, m := call("GET", "/admin/v1/log", anaTok, ""); m["total"] != 0.0 {
			t.Fatalf("the viewer's refusals reached the moderation log: %v", m)
		}
		if got := testutil.ToFloat64(h.refusals.WithLabelValues(ReasonRole)); got != 6 {
			t.Fatalf("refusals{forbidden_for_role} = %v, want 6", got)
		}
		if code, m := call("POST", "/admin/v1/users/"+user+"/ban", anaTok, ""); code != 200 || m["logged"] != true {
			t.Fatalf("the moderator's ban: %d %v", code, m)
		}
		if err := h.SetOperators([]Operator{{Name: "sue", Token: []byte(sueTok), Role: RoleModerator}}); err != nil {
			t.Fatal(err)
		}
		if code, m := call("POST", "/admin/v1/users/"+user+"/unban", sueTok, ""); code != 200 || m["was_banned"] != true {
			t.Fatalf("sue, a moderator after the reload, unbans: %d %v", code, m)
		}
		_, m := call("GET", "/admin/v1/log", sueTok, "")
		entries, _ := m["entries"].([]any)
		if len(entries) != 2 || entries[0].(map[string]any)["by"] != "sue" || entries[1].(map[string]any)["by"] != "ana" {
			t.Fatalf("the log: %v", m)
		}
		if err := h.SetOperators([]Operator{{Name: "x", Token: []byte(sueTok), Role: "admin"}}); err == nil {
			t.Fatal("a set with an unknown role was taken")
		}
	})
}
