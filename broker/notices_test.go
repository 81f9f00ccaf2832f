package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// Notices on a real redis-server, the embedded server and a Redis Cluster
// (every key under the user's tag): an unknown user gets none; each notice
// gets the next id, is published on the user's channel ('o' and the
// notice) and counted by the login; the list keeps the newest MaxNotices
// and expires like the queue; notices_seen drops up to an id; every field
// is bounded and the reason one of the codes.
func TestNotices(t *testing.T) {
	brokertest.EachWithCluster(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		c := brokertest.Open(t, b.Options)
		got := make(chan string, 64)
		c.Handle("c:", func(ch, payload string) { got <- payload })
		id, err := c.CreateUser(ctx, "d", 1000)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Subscribe(ctx, c.UserChannel(id)); err != nil {
			t.Fatal(err)
		}
		n := broker.Notice{Kind: broker.NoticePostRemoved, Post: 18, Title: "Bike", Reason: "scam", Note: "fake <b>", At: 5000}
		if _, err := c.AddNotice(ctx, "999999", n, time.Hour); !errors.Is(err, broker.ErrNoUser) {
			t.Fatalf("notice to an unknown user: %v", err)
		}
		for _, bad := range []broker.Notice{
			{Kind: "other", Reason: "scam"},
			{Kind: broker.NoticePostRemoved, Reason: "Scam"},
			{Kind: broker.NoticePostRemoved, Reason: "scam", Note: strings.Repeat("n", broker.MaxNoticeNote+1)},
			{Kind: broker.NoticePostRemoved, Reason: "scam", Title: strings.Repeat("é", broker.MaxNoticeTitle+1)},
			{Kind: broker.NoticePostRemoved, Reason: "scam", Note: "look \x1b[2J"},
			{Kind: broker.NoticePostRemoved, Reason: "scam", Note: "rtl \u202e"},
		} {
			if _, err := c.AddNotice(ctx, id, bad, time.Hour); err == nil {
				t.Fatalf("taken: %+v", bad)
			}
		}
		login := func() broker.LoginState {
			t.Helper()
			st, ok, err := c.LoginFetch(ctx, id, broker.LoginRequest{Digest: "d", Now: 2000, TTLms: 86400000})
			if err != nil || !ok {
				t.Fatalf("login: %v %v", ok, err)
			}
			return st
		}
		if st := login(); st.Notices != 0 {
			t.Fatalf("notices before any: %d", st.Notices)
		}
		expectPayload(t, got, "k2")
		if nid, err := c.AddNotice(ctx, id, n, time.Hour); err != nil || nid != 1 {
			t.Fatalf("add: %d %v", nid, err)
		}
		want := `{"id":1,"kind":"post_removed","post":18,"title":"Bike","reason":"scam","note":"fake \u003cb\u003e","at":5000}`
		expectPayload(t, got, "o"+want)
		l, err := c.Notices(ctx, id)
		if err != nil || len(l) != 1 || l[0] != want {
			t.Fatalf("notices: %v %v", l, err)
		}
		var m map[string]any
		if json.Unmarshal([]byte(l[0]), &m) != nil {
			t.Fatalf("not JSON: %s", l[0])
		}
		if st := login(); st.Notices != 1 {
			t.Fatalf("login counted %d notices", st.Notices)
		}
		if ttl, _ := c.AccountTTL(ctx, id); ttl != -1 {
			t.Fatal("the account took an expiry")
		}

		// The newest MaxNotices stay (each of another post: one post is
		// told of once).
		for i := range broker.MaxNotices + 4 {
			n.Post = uint64(100 + i)
			if _, err := c.AddNotice(ctx, id, n, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		l, _ = c.Notices(ctx, id)
		if len(l) != broker.MaxNotices || !strings.HasPrefix(l[0], `{"id":6,`) || !strings.HasPrefix(l[len(l)-1], `{"id":25,`) {
			t.Fatalf("bounded list: %d, first %s", len(l), l[0])
		}
		if left, err := c.NoticesSeen(ctx, id, 20); err != nil || left != 5 {
			t.Fatalf("seen up to 20: %d %v", left, err)
		}
		if left, err := c.NoticesSeen(ctx, id, 3); err != nil || left != 5 {
			t.Fatalf("seen up to an older id: %d %v", left, err)
		}
		if left, err := c.NoticesSeen(ctx, id, 1<<62); err != nil || left != 0 {
			t.Fatalf("seen all: %d %v", left, err)
		}
		if st := login(); st.Notices != 0 {
			t.Fatalf("login counted %d notices after all were seen", st.Notices)
		}
		// Ids keep growing after the list emptied.
		n.Post = 99
		if nid, _ := c.AddNotice(ctx, id, n, time.Hour); nid != 26 {
			t.Fatalf("next id %d, want 26", nid)
		}
		if b.Redis != nil {
			rc := brokertest.Raw(t, b.Redis.Addr)
			ms, err := rc.Do(ctx, rc.B().Pttl().Key(b.Options.Prefix+"nt:{"+id+"}").Build()).AsInt64()
			if err != nil || ms <= 0 || ms > time.Hour.Milliseconds() {
				t.Fatalf("the list's lifetime: %d ms %v", ms, err)
			}
		}
	})
}

func TestPostTitle(t *testing.T) {
	for _, tc := range []struct{ name, data, want string }{
		{"title", `{"body":"{\"title\":\"Bike\",\"msg\":\"x\"}"}`, "Bike"},
		{"no title", `{"body":"{\"msg\":\"x\"}"}`, ""},
		{"body not JSON", `{"body":"plain"}`, ""},
		{"not JSON", `garbage`, ""},
		{"control characters", `{"body":"{\"title\":\"a\\u001b[2J\\nb\\u202e\"}"}`, "a [2J b "},
		{"long", `{"body":"{\"title\":\"` + strings.Repeat("é", 150) + `\"}"}`, strings.Repeat("é", broker.MaxNoticeTitle-1) + "…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := broker.PostTitle(tc.data); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
