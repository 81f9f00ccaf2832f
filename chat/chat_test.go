package chat_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/chat"
	"github.com/occase/occase/wire"
	"go.uber.org/zap/zaptest"
)

func TestValidUserID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"1", true}, {"42", true}, {"18446744073709551615", true},
		{"", false}, {"0", true}, {"01", false}, {"-1", false}, {"1a", false},
		{"18446744073709551616", false}, {"../1", false}, {" 1", false},
	}
	for _, tt := range tests {
		if got := chat.ValidUserID(tt.id); got != tt.want {
			t.Errorf("ValidUserID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestServerAck(t *testing.T) {
	tests := []struct {
		name, req, to, reason string
		id                    int64
		want                  string
	}{
		{"ok with everything", `{"cmd":"message","to":"57","id":23,"post_id":17,"is_sender_post":false}`, "57", "", 9,
			`{"cmd":"message","type":"server_ack","result":"ok","msg_id":9,"ack_id":23,"from":"57","post_id":17,"is_sender_post":true}`},
		{"ok minimal", `{"cmd":"message","to":"57"}`, "57", "", 1,
			`{"cmd":"message","type":"server_ack","result":"ok","msg_id":1,"from":"57"}`},
		{"fail keeps the echo", `{"cmd":"message","to":"5","id":"abc","is_sender_post":true}`, "5", "not_found", 0,
			`{"cmd":"message","type":"server_ack","result":"fail","reason":"not_found","ack_id":"abc","from":"5","is_sender_post":false}`},
		{"a cid is echoed", `{"cmd":"message","to":"57","id":3,"cid":"a-1"}`, "57", "", 4,
			`{"cmd":"message","type":"server_ack","result":"ok","msg_id":4,"ack_id":3,"from":"57","cid":"a-1"}`},
		{"an invalid cid is not echoed", `{"cmd":"message","to":"57","cid":"a b"}`, "57", "bad_request", 0,
			`{"cmd":"message","type":"server_ack","result":"fail","reason":"bad_request","from":"57"}`},
		{"non-bool is_sender_post is not echoed", `{"cmd":"message","to":"5","is_sender_post":1}`, "5", "", 2,
			`{"cmd":"message","type":"server_ack","result":"ok","msg_id":2,"from":"5"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := wire.ParseRequest([]byte(tt.req))
			if err != nil {
				t.Fatal(err)
			}
			if got := string(chat.ServerAck(r, tt.to, tt.id, tt.reason)); got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestPrepare(t *testing.T) {
	s := chat.New(chat.Config{MaxMessage: 100}, nil, zaptest.NewLogger(t))
	tests := []struct {
		name, req, reason string
		malformed         bool
	}{
		{"ok", `{"cmd":"message","to":"5","msg":"hi"}`, "", false},
		{"no to", `{"cmd":"message","msg":"hi"}`, wire.BadRequest, true},
		{"to a number", `{"cmd":"message","to":5}`, wire.BadRequest, true},
		{"to not an id", `{"cmd":"message","to":"x"}`, wire.NotFound, false},
		{"reserved type", `{"cmd":"message","to":"5","type":"server_ack"}`, wire.BadRequest, false},
		{"too large", `{"cmd":"message","to":"5","msg":"` + fmt.Sprint(make([]byte, 100)) + `"}`, wire.TooLarge, false},
		{"cid", `{"cmd":"message","to":"5","cid":"Az09-_.:"}`, "", false},
		{"cid a number", `{"cmd":"message","to":"5","cid":7}`, wire.BadRequest, false},
		{"cid empty", `{"cmd":"message","to":"5","cid":""}`, wire.BadRequest, false},
		{"cid a space", `{"cmd":"message","to":"5","cid":"a b"}`, wire.BadRequest, false},
		{"cid null", `{"cmd":"message","to":"5","cid":null}`, wire.BadRequest, false},
		{"cid the last of two", `{"cmd":"message","to":"5","cid":"ok","cid":"n/o"}`, wire.BadRequest, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := wire.ParseRequest([]byte(tt.req))
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Prepare("7", r)
			if tt.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			we := wire.AsError(err)
			if we.Reason != tt.reason || we.Malformed != tt.malformed {
				t.Fatalf("got %+v, want reason %s malformed %v", we, tt.reason, tt.malformed)
			}
		})
	}
}

func TestValidCID(t *testing.T) {
	tests := []struct {
		raw  string
		want bool
	}{
		{`"a"`, true}, {`"0f3c2a9e-7d1b-4c55-9a0e-2f6b1c8d4e7a"`, true}, {`"dev:42.7_x-Y"`, true},
		{`"` + strings.Repeat("x", chat.MaxCID) + `"`, true},
		{`"` + strings.Repeat("x", chat.MaxCID+1) + `"`, false},
		{`""`, false}, {`"a b"`, false}, {`"a/b"`, false}, {`"\u0041"`, false}, {`"é"`, false},
		{`"<b>"`, false}, {`7`, false}, {`null`, false}, {`["a"]`, false}, {`{"a":1}`, false}, {`"`, false},
	}
	for _, tt := range tests {
		if got := chat.ValidCID([]byte(tt.raw)); got != tt.want {
			t.Errorf("ValidCID(%s) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}

// writer records frames; it fails every write from failAt on.
type writer struct {
	mu     sync.Mutex
	frames []string
	failAt int
	wrote  chan struct{}
	queue  chan func()
}

func newWriter(failAt int) *writer {
	w := &writer{failAt: failAt, wrote: make(chan struct{}, 64), queue: make(chan func(), 64)}
	go func() {
		for f := range w.queue {
			f()
		}
	}()
	return w
}

func (w *writer) SendTracked(frame []byte, done func(error)) bool {
	w.mu.Lock()
	var err error
	if w.failAt > 0 && len(w.frames) >= w.failAt {
		err = errors.New("connection broke")
	} else {
		w.frames = append(w.frames, string(frame))
	}
	w.mu.Unlock()
	// Like the real outbox: completions come in order, after the call.
	w.queue <- func() {
		done(err)
		w.wrote <- struct{}{}
	}
	return true
}

// A connection that breaks in the middle of a batch: exactly the written
// messages leave Redis, the rest stay at the front in order.
func TestMailboxRemovesOnlyWhatWasWritten(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		bc := brokertest.Open(t, b.Options)
		s := chat.New(chat.Config{Batch: 4}, bc, zaptest.NewLogger(t))
		now := time.Now().UnixMilli()
		id, _ := bc.CreateUser(ctx, "d", now)
		for i := 0; i < 10; i++ {
			r, _ := wire.ParseRequest([]byte(fmt.Sprintf(`{"cmd":"message","to":%q,"n":%d}`, id, i)))
			m, err := s.Prepare("9", r)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Store(ctx, m, false); err != nil {
				t.Fatal(err)
			}
		}
		w := newWriter(6)
		mb := s.Mailbox(id, w)
		mb.Poke()
		// 6 written, then the 7th fails and the pump stops.
		for i := 0; i < 7; i++ {
			select {
			case <-w.wrote:
			case <-time.After(5 * time.Second):
				t.Fatalf("only %d writes", i)
			}
		}
		mb.Close(ctx)
		left, _ := bc.FetchMessages(ctx, id, 0, "", 100)
		if len(left) != 4 {
			t.Fatalf("%d left in Redis, want 4: %v", len(left), left)
		}
		for i, f := range left {
			if want := fmt.Sprintf(`"n":%d}`, 6+i); f[len(f)-len(want):] != want {
				t.Fatalf("left[%d] = %s, want n %d", i, f, 6+i)
			}
		}
		// The six written ones, in order: increasing ids, n 0 to 5.
		var prev int64
		for i, f := range w.frames {
			var m struct {
				ID int64 `json:"msg_id"`
				N  int   `json:"n"`
			}
			if err := json.Unmarshal([]byte(f), &m); err != nil || m.ID <= prev || m.N != i {
				t.Fatalf("frame %d = %s", i, f)
			}
			prev = m.ID
		}
	})
}

func TestFailAck(t *testing.T) {
	r, _ := wire.ParseRequest([]byte(`{"cmd":"message","to":"5","id":3}`))
	got := string(chat.FailAck(r, "5", wire.Errorf(wire.QueueFull, "this sender's share")))
	want := `{"cmd":"message","type":"server_ack","result":"fail","reason":"queue_full","ack_id":3,"from":"5","detail":"this sender's share"}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if got := string(chat.FailAck(r, "5", &wire.Error{Reason: wire.NotFound})); got != string(chat.ServerAck(r, "5", 0, wire.NotFound)) {
		t.Fatalf("without a detail: %s", got)
	}
}

// A full queue refuses the next message instead of dropping an
// acknowledged one; a sender's share is refused with its own detail while
// another sender gets through; requeued replies are never refused.
func TestQueueFullAndSenderShare(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		bc := brokertest.Open(t, b.Options)
		s := chat.New(chat.Config{QueueCap: 4, QueueSenderShare: 2}, bc, zaptest.NewLogger(t))
		id, _ := bc.CreateUser(ctx, "d", time.Now().UnixMilli())
		send := func(from string, n int) error {
			r, _ := wire.ParseRequest([]byte(fmt.Sprintf(`{"cmd":"message","to":%q,"n":%d}`, id, n)))
			m, err := s.Prepare(from, r)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Store(ctx, m, false)
			return err
		}
		for i, from := range []string{"7", "7", "8"} {
			if err := send(from, i); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		err := send("7", 3)
		if we := wire.AsError(err); we.Reason != wire.QueueFull || !strings.Contains(we.Detail, "sender's share") {
			t.Fatalf("7 past its share: %v", err)
		}
		if err := send("8", 4); err != nil {
			t.Fatalf("8 within its share: %v", err)
		}
		err = send("9", 5)
		if we := wire.AsError(err); we.Reason != wire.QueueFull || strings.Contains(we.Detail, "share") {
			t.Fatalf("a full queue: %v", err)
		}
		if st := s.Stats(); st.RefusedQueueFull != 1 || st.RefusedSenderShare != 1 {
			t.Fatalf("stats %+v", st)
		}
		if err := s.Requeue(ctx, id, [][]byte{[]byte(`{"cmd":"publish_ack","result":"ok"}`)}); err != nil {
			t.Fatalf("requeue into a full queue: %v", err)
		}
		left, _ := bc.FetchMessages(ctx, id, 0, "", 100)
		if len(left) != 5 || !strings.Contains(left[4], "publish_ack") {
			t.Fatalf("queue %v: want the four acknowledged messages, then the reply", left)
		}
	})
}

// Requeued replies may take a queue past its cap by a tenth of it, no
// more: a client that reconnects without reading cannot grow its own queue
// without end. What does not fit is dropped and counted; the chat messages
// already in the queue stay.
func TestRequeueBoundedPastCap(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		bc := brokertest.Open(t, b.Options)
		s := chat.New(chat.Config{QueueCap: 20, QueueSenderShare: 20}, bc, zaptest.NewLogger(t))
		id, _ := bc.CreateUser(ctx, "d", time.Now().UnixMilli())
		for i := range 20 {
			r, _ := wire.ParseRequest([]byte(fmt.Sprintf(`{"cmd":"message","to":%q,"n":%d}`, id, i)))
			m, err := s.Prepare("7", r)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Store(ctx, m, false); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		reply := []byte(`{"cmd":"publish_ack","result":"ok"}`)
		for range 3 { // three sessions ending with replies unwritten
			if err := s.Requeue(ctx, id, [][]byte{reply, reply}); err != nil {
				t.Fatal(err)
			}
		}
		n, _ := bc.QueueLen(ctx, id)
		if n != 22 || s.Stats().RepliesDropped != 4 {
			t.Fatalf("queue holds %d (want the cap 20 + a tenth), %d replies dropped (want 4)", n, s.Stats().RepliesDropped)
		}
		left, _ := bc.FetchMessages(ctx, id, 0, "", 100)
		for i, m := range left[:20] {
			if !strings.Contains(m, `"from":"7"`) {
				t.Fatalf("message %d of the queue is not a chat message: %s", i, m)
			}
		}
	})
}
