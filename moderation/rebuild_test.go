package moderation

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
)

// Bans made the old way (the hash's fields only, as the ban script of
// before the list set them) are listed by a rebuild through the Service
// and through the API (POST /admin/v1/bans/rebuild, the Client of
// --node), with their time and note; the rebuild is in the moderation
// log with its counts; a second one adds nothing. On Redis and on the
// embedded server.
func TestServiceRebuildBans(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		ctx := context.Background()
		b := brokertest.Open(t, be.Options)
		clk := &clock{t: time.Unix(1_800_000_000, 0)}
		s := New(b, 10, 0, clk.now, zaptest.NewLogger(t))
		raw := brokertest.Raw(t, be.Options.Addrs...)
		oldBan := func(u string, at int64, note string) {
			t.Helper()
			if err := raw.Do(ctx, raw.B().Hset().Key(be.Options.Prefix+"u:{"+u+"}").FieldValue().
				FieldValue("ban", strconv.FormatInt(at, 10)).FieldValue("bnote", note).Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}
		var users []string
		for range 4 {
			u, err := b.CreateUser(ctx, "d", 1)
			if err != nil {
				t.Fatal(err)
			}
			users = append(users, u)
		}
		oldBan(users[0], 1_700_000_000_000, "spam")
		oldBan(users[1], 1_700_000_001_000, "")
		if _, err := s.Ban(ctx, "test", users[2], BanRequest{Note: "new"}); err != nil {
			t.Fatal(err)
		}
		r, err := s.RebuildBans(ctx, "test")
		if err != nil || r.Scanned != 4 || r.Banned != 3 || r.Added != 2 || r.Listed != 1 {
			t.Fatalf("rebuild: %+v %v", r, err)
		}
		p, err := s.Bans(ctx, 0, 10)
		if err != nil || p.Total != 3 || p.Bans[0].User != users[2] || p.Bans[1].User != users[1] || p.Bans[2].User != users[0] ||
			p.Bans[2].At != 1_700_000_000_000 || p.Bans[2].Note != "spam" || p.Bans[1].At != 1_700_000_001_000 {
			t.Fatalf("after the rebuild: %+v %v", p, err)
		}
		lg, err := s.Log(ctx, 0, 1)
		if err != nil || len(lg.Entries) != 1 || lg.Entries[0].Action != "rebuild" || lg.Entries[0].By != "test" ||
			lg.Entries[0].Detail != "4 users scanned, 3 banned, 2 added, 1 listed already" {
			t.Fatalf("the moderation log: %+v %v", lg, err)
		}
		if r, err := s.RebuildBans(ctx, "test"); err != nil || r.Added != 0 || r.Listed != 3 {
			t.Fatalf("second rebuild: %+v %v", r, err)
		}

		// Through the API, as --node calls it.
		h, err := NewHandler(HandlerConfig{Service: s, Token: []byte(token),
			ClientAddr: func(*http.Request) string { return "192.0.2.7" }, Metrics: prometheus.NewRegistry(), Log: zaptest.NewLogger(t), Now: clk.now})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		cl, err := NewClient(srv.URL, []byte(token))
		if err != nil {
			t.Fatal(err)
		}
		oldBan(users[3], 1_700_000_002_000, "late")
		if r, err := cl.RebuildBans(ctx); err != nil || r.Added != 1 || r.Listed != 3 || r.Banned != 4 {
			t.Fatalf("rebuild through the API: %+v %v", r, err)
		}
		if p, err := cl.Bans(ctx, 0, 10); err != nil || p.Total != 4 || p.Bans[1].User != users[3] || p.Bans[1].Note != "late" {
			t.Fatalf("after the API's rebuild: %+v %v", p, err)
		}
		if lg, _ := s.Log(ctx, 0, 1); len(lg.Entries) != 1 || lg.Entries[0].Action != "rebuild" || !strings.Contains(lg.Entries[0].Detail, ", 1 added,") || lg.Entries[0].Addr != "192.0.2.7" {
			t.Fatalf("the API's rebuild in the log: %+v", lg)
		}
		// A GET is not the rebuild.
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/admin/v1/bans/rebuild", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("GET /admin/v1/bans/rebuild answered 200")
		}
	})
}

// slowRebuild holds RebuildBanList until release closes, so that a
// second rebuild meets the first (a real Redis is never that slow here).
type slowRebuild struct {
	*broker.Client
	started, release chan struct{}
}

func (s slowRebuild) RebuildBanList(ctx context.Context) (broker.BanRebuild, error) {
	select {
	case s.started <- struct{}{}:
	default: // nobody waits: not the held one
	}
	<-s.release
	return s.Client.RebuildBanList(ctx)
}

// One rebuild at a time on a Service: a second, while the first runs, is
// refused busy and changes nothing; after it, a rebuild runs again.
func TestServiceRebuildBusy(t *testing.T) {
	r := brokertest.StartRedis(t)
	b := brokertest.Open(t, broker.Options{Addrs: []string{r.Addr}, Prefix: brokertest.Prefix()})
	st := slowRebuild{Client: b, started: make(chan struct{}, 1), release: make(chan struct{})}
	s := New(st, 10, 0, nil, zaptest.NewLogger(t))
	ctx := context.Background()
	done := make(chan error, 1)
	go func() { _, err := s.RebuildBans(ctx, "first"); done <- err }()
	<-st.started
	if _, err := s.RebuildBans(ctx, "second"); !isReason(err, ReasonBusy) {
		t.Fatalf("a second rebuild: %v, want busy", err)
	}
	close(st.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := s.RebuildBans(ctx, "third"); err != nil {
		t.Fatalf("a rebuild after the first ended: %v", err)
	}
}
