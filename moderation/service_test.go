package moderation

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"go.uber.org/zap/zaptest"
)

// A removal's request is checked before anything is touched (the post
// is still there after each refusal); with a reason the author gets one
// notice, living the Service's notice lifetime, with the post's title;
// without one, none. On Redis and on the embedded server.
func TestServiceRemoveWithReason(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		ctx := context.Background()
		b := brokertest.Open(t, be.Options)
		s := New(b, 10, time.Hour, nil, zaptest.NewLogger(t))
		author, err := b.CreateUser(ctx, "d", time.Now().UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		post := func(title string) uint64 { return storeTitled(t, b, author, title) }
		bike, golf := post("Bike"), post("Golf")
		for _, c := range []struct {
			req  RemoveRequest
			want string
		}{
			{RemoveRequest{Reason: "ugly"}, `reason "ugly": want one of spam, scam, prohibited, offensive, other`},
			{RemoveRequest{Note: "why"}, "give a reason too"},
			{RemoveRequest{Reason: "spam", Note: strings.Repeat("n", broker.MaxNoticeNote+1)}, "at most 280 bytes"},
			{RemoveRequest{Reason: "spam", Note: "look \u202e"}, "control or formatting characters"},
		} {
			_, err := s.Remove(ctx, "test", bike, c.req)
			var e *Error
			if !errors.As(err, &e) || e.Reason != ReasonBadRequest || !strings.Contains(e.Msg, c.want) {
				t.Fatalf("%+v: %v, want bad_request with %q", c.req, err, c.want)
			}
		}
		if ids, err := b.PostsOf(ctx, author); err != nil || len(ids) != 2 {
			t.Fatalf("a refused removal touched the posts: %v %v", ids, err)
		}
		r, err := s.Remove(ctx, "test", bike, RemoveRequest{Reason: "scam", Note: "a deposit first"})
		if err != nil || !r.Told || r.Reason != "scam" || r.Author != author || r.Post != bike {
			t.Fatalf("remove with a reason: %+v %v", r, err)
		}
		if r, err := s.Remove(ctx, "test", golf, RemoveRequest{}); err != nil || r.Told || r.Reason != "" {
			t.Fatalf("remove without a reason: %+v %v", r, err)
		}
		ns, err := b.Notices(ctx, author)
		if err != nil || len(ns) != 1 || !strings.Contains(ns[0], `"title":"Bike"`) || !strings.Contains(ns[0], `"reason":"scam"`) ||
			!strings.Contains(ns[0], `"note":"a deposit first"`) {
			t.Fatalf("notices %q %v, want one for Bike", ns, err)
		}
		if _, err := s.Remove(ctx, "test", bike, RemoveRequest{Reason: "scam"}); !isReason(err, ReasonPostNotFound) {
			t.Fatalf("remove again: %v", err)
		}
	})
}

// The list of bans through the Service: its bounds, newest first, paged;
// an unban takes the entry off.
func TestServiceBans(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		ctx := context.Background()
		b := brokertest.Open(t, be.Options)
		clk := &clock{t: time.Unix(1_800_000_000, 0)}
		s := New(b, 10, 0, clk.now, zaptest.NewLogger(t))
		for _, c := range [][2]int{{0, 0}, {0, MaxBansLimit + 1}, {-1, 10}, {broker.MaxBanList + 1, 10}} {
			if _, err := s.Bans(ctx, c[0], c[1]); !isReason(err, ReasonBadRequest) {
				t.Fatalf("offset %d limit %d: %v, want bad_request", c[0], c[1], err)
			}
		}
		var users []string
		for range 3 {
			u, err := b.CreateUser(ctx, "d", 1)
			if err != nil {
				t.Fatal(err)
			}
			clk.add(time.Second)
			if res, err := s.Ban(ctx, "test", u, BanRequest{Note: "n" + u}); err != nil || !res.Listed {
				t.Fatalf("ban %s: %+v %v", u, res, err)
			}
			users = append(users, u)
		}
		p, err := s.Bans(ctx, 0, 2)
		if err != nil || p.Total != 3 || len(p.Bans) != 2 || p.Bans[0].User != users[2] || p.Bans[1].User != users[1] || p.Next != 2 ||
			p.Bans[0].Note != "n"+users[2] {
			t.Fatalf("first page: %+v %v", p, err)
		}
		if _, err := s.Unban(ctx, "test", users[2]); err != nil {
			t.Fatal(err)
		}
		if p, err := s.Bans(ctx, 0, 10); err != nil || p.Total != 2 || len(p.Bans) != 2 || p.Bans[0].User != users[1] || p.Next != 0 {
			t.Fatalf("after the unban: %+v %v", p, err)
		}
	})
}

// A ban whose list write fails (a Redis user that may not touch the
// {bans} keys, as a real server's ACL makes it) holds and still deletes
// the user's posts; the Service ends with ban_not_listed and the Banned
// in it (Listed false); the same ban again, with the list writable,
// lists it. An unban whose list write fails succeeds (a listing cleans).
func TestServiceBanNotListed(t *testing.T) {
	r := brokertest.StartRedis(t)
	prefix := brokertest.Prefix()
	ctx := context.Background()
	admin := brokertest.Open(t, broker.Options{Addrs: []string{r.Addr}, Prefix: prefix})
	limited := r.Limited(t, prefix, "nolist", prefix+"u:*", prefix+"pd:*", prefix+"{posts}:*")
	user, err := admin.CreateUser(ctx, "d", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.StorePost(ctx, []byte(`"from":"`+user+`","date":1`), user, time.Now().Unix(), "test"); err != nil {
		t.Fatal(err)
	}
	res, err := New(limited, 10, 0, nil, zaptest.NewLogger(t)).Ban(ctx, "test", user, BanRequest{RemovePosts: true})
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonBanNotListed || !strings.Contains(e.Msg, "run the same command again") {
		t.Fatalf("ban without the list: %v, want ban_not_listed", err)
	}
	if got, ok := e.Result.(Banned); !ok || got.Listed || got.PostsDeleted != 1 || res.PostsDeleted != 1 {
		t.Fatalf("the result: %+v %+v, want the post deleted and not listed", e.Result, res)
	}
	if ban, err := admin.BanOf(ctx, user); err != nil || ban.At == 0 {
		t.Fatalf("the ban must hold: %+v %v", ban, err)
	}
	s := New(admin, 10, 0, nil, zaptest.NewLogger(t))
	if p, err := s.Bans(ctx, 0, 10); err != nil || p.Total != 0 {
		t.Fatalf("listed: %+v %v", p, err)
	}
	if res, err := s.Ban(ctx, "test", user, BanRequest{}); err != nil || !res.Listed || !res.Already {
		t.Fatalf("the rerun: %+v %v", res, err)
	}
	if p, err := s.Bans(ctx, 0, 10); err != nil || p.Total != 1 || p.Bans[0].User != user {
		t.Fatalf("listed after the rerun: %+v %v", p, err)
	}
	if u, err := New(limited, 10, 0, nil, zaptest.NewLogger(t)).Unban(ctx, "test", user); err != nil || !u.WasBanned {
		t.Fatalf("unban without the list: %+v %v", u, err)
	}
	if p, err := s.Bans(ctx, 0, 10); err != nil || p.Total != 0 || p.Cleaned != 1 {
		t.Fatalf("the listing after a failed unban: %+v %v", p, err)
	}
}

func isReason(err error, reason string) bool {
	var e *Error
	return errors.As(err, &e) && e.Reason == reason
}

// A removal whose notice cannot be written (a Redis user that may not
// touch the notices' keys): the post is gone, the Service says
// author_not_told with the Removed in it.
func TestServiceRemoveNotTold(t *testing.T) {
	r := brokertest.StartRedis(t)
	prefix := brokertest.Prefix()
	ctx := context.Background()
	admin := brokertest.Open(t, broker.Options{Addrs: []string{r.Addr}, Prefix: prefix})
	limited := r.Limited(t, prefix, "nonotice", prefix+"[^n]*")
	user, err := admin.CreateUser(ctx, "d", 1000)
	if err != nil {
		t.Fatal(err)
	}
	id, err := admin.StorePost(ctx, []byte(`"from":"`+user+`","date":1`), user, time.Now().Unix(), "test")
	if err != nil {
		t.Fatal(err)
	}
	ls := New(limited, 10, 0, nil, zaptest.NewLogger(t))
	ls.noticeRetry = 200 * time.Millisecond
	res, err := ls.Remove(ctx, "test", id, RemoveRequest{Reason: "spam"})
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonNotTold || !strings.Contains(e.Msg, "could not be told why") {
		t.Fatalf("remove without the notices' keys: %v, want author_not_told", err)
	}
	if got, ok := e.Result.(Removed); !ok || got.Told || got.Author != user || res.Post != id {
		t.Fatalf("the result: %+v %+v", e.Result, res)
	}
	if ids, err := admin.PostsOf(ctx, user); err != nil || len(ids) != 0 {
		t.Fatalf("the post must be gone: %v %v", ids, err)
	}
	// The notice is kept; the same removal by a client that may write
	// notices sends it.
	if !res.NoticeKept || !strings.Contains(e.Msg, "the notice is kept") {
		t.Fatalf("the notice not kept: %+v %q", res, e.Msg)
	}
	again, err := New(admin, 10, 0, nil, zaptest.NewLogger(t)).Remove(ctx, "test", id, RemoveRequest{})
	if err != nil || !again.Resent || !again.Told || again.Reason != "spam" {
		t.Fatalf("the removal again: %+v %v", again, err)
	}
	if ns, err := admin.Notices(ctx, user); err != nil || len(ns) != 1 {
		t.Fatalf("the author's notices: %q %v", ns, err)
	}
}

// storeTitled stores a post of author's whose body is the app's JSON
// string with that title, and returns its id.
func storeTitled(t *testing.T, b *broker.Client, author, title string) uint64 {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"title": title, "msg": "m"})
	bs, _ := json.Marshal(string(body))
	id, err := b.StorePost(context.Background(), []byte(`"from":"`+author+`","date":1,"body":`+string(bs)), author, time.Now().Unix(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return id
}
