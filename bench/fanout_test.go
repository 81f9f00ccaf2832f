package bench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/bench"
)

// fakePosts speaks just enough of PROTOCOL.md section 4 (register,
// subscribe to everything, publish, live post delivery) to check the
// fanout scenario's bookkeeping, and can damage the delivery to its first
// subscriber, so the test sees the bench count loss, duplication and
// reordering exactly, which a correct server never lets a test see.
type fakePosts struct {
	damage bool

	mu     sync.Mutex
	users  int
	nextID int
	subs   []*websocket.Conn
	held   []byte // a post kept back to be sent out of order
}

func (f *fakePosts) serve(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := r.Context()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return
		}
		var req struct {
			Cmd   string `json:"cmd"`
			Items []struct {
				Body string `json:"body"`
			} `json:"items"`
		}
		if json.Unmarshal(b, &req) != nil {
			return
		}
		f.mu.Lock()
		switch req.Cmd {
		case "register":
			f.users++
			c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"cmd":"register_ack","result":"ok","id":"%d","password":"0123456789"}`, f.users))
		case "subscribe":
			c.Write(ctx, websocket.MessageText, []byte(`{"cmd":"subscribe_ack","result":"ok"}`))
			f.subs = append(f.subs, c)
		case "publish":
			f.nextID++
			id := f.nextID
			c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"cmd":"publish_ack","result":"ok","id":%d,"date":0}`, id))
			body, _ := json.Marshal(req.Items[0].Body)
			post := fmt.Appendf(nil, `{"cmd":"post","items":[{"id":%d,"from":"1","body":%s,"to":[[[0,0,0]],[[0,0,0]]],"features":1,"date":0,"range_values":[]}]}`, id, body)
			for i, s := range f.subs {
				if i == 0 && f.damage {
					switch id {
					case 3: // lost
						continue
					case 5: // duplicated
						s.Write(ctx, websocket.MessageText, post)
					case 7: // overtaken by 8
						f.held = post
						continue
					case 8:
						s.Write(ctx, websocket.MessageText, post)
						s.Write(ctx, websocket.MessageText, f.held)
						continue
					}
				}
				s.Write(ctx, websocket.MessageText, post)
			}
		}
		f.mu.Unlock()
	}
}

func startFake(t *testing.T, damage bool) string {
	f := &fakePosts{damage: damage}
	ts := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(ts.Close)
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
}

func TestFanoutEverySubscriberGetsEveryPost(t *testing.T) {
	cfg := short(bench.Fanout, startFake(t, false))
	cfg.Users, cfg.Publishers, cfg.Count, cfg.PostRate = 20, 2, 25, 0
	rep, err := bench.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	noErrors(t, rep)
	want := bench.Tally{Sent: 50, Accepted: 50, Delivered: 50 * 20}
	if *rep.Messages != want {
		t.Fatalf("tally %+v, want %+v", *rep.Messages, want)
	}
	if rep.Connections != 22 || rep.Latency.Count != 50*20 {
		t.Fatalf("connections %d, latency samples %d", rep.Connections, rep.Latency.Count)
	}
}

func TestFanoutCountsLossDuplicatesAndReordering(t *testing.T) {
	cfg := short(bench.Fanout, startFake(t, true))
	cfg.Users, cfg.Publishers, cfg.Count, cfg.Window, cfg.PostRate = 4, 1, 10, 1, 0
	// One post never reaches the first subscriber: the drain waits for it
	// this long, then gives up and counts it lost.
	cfg.Drain = 200 * time.Millisecond
	rep, err := bench.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := bench.Tally{Sent: 10, Accepted: 10, Delivered: 4*10 - 1, Lost: 1, Duplicates: 1, OutOfOrder: 1}
	if *rep.Messages != want {
		t.Fatalf("tally %+v, want %+v", *rep.Messages, want)
	}
	if rep.Errors["drain_timeout"] != 1 {
		t.Fatalf("errors %v, want a drain_timeout", rep.Errors)
	}
}
