package roles_test

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/roles"
	"github.com/occase/occase/wire"
)

// metric returns the value of the series named exactly series (name and
// labels as /metrics writes them), or 0 when it is absent.
func metric(t *testing.T, n *node, series string) float64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(httpGet(t, n.base+"/metrics")))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if ok && name == series {
			v, err := strconv.ParseFloat(val, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", sc.Text(), err)
			}
			return v
		}
	}
	return 0
}

// waitMetric polls until series reaches at least want.
func waitMetric(t *testing.T, n *node, series string, want float64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got := metric(t, n, series)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want at least %v", series, got, want)
		}
	}
}

// manyFieldChat is a chat frame to to of about 16 KiB in some 2,000 fields.
func manyFieldChat(to string, id int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"cmd":"message","type":"chat","to":%q,"id":%d,"post_id":17,"is_sender_post":false`, to, id)
	for i := 0; b.Len() < 16<<10-16; i++ {
		fmt.Fprintf(&b, `,"f%d":%d`, i, i)
	}
	b.WriteByte('}')
	return b.String()
}

// One connection floods as fast as it can: its reader is paused
// (read_throttled, by the byte budget for 16 KiB many-field chat frames,
// by the frame budget for small presence frames), it is refused
// (rate_limited), and it is finally closed with 4006 and an error frame,
// while an honest pair on the same node chats on undisturbed.
func TestFloodIsThrottledThenClosed(t *testing.T) {
	for _, tt := range []struct {
		name   string
		frame  func(to string, i int) string
		budget string
		cmd    string
	}{
		{"many-field chat", manyFieldChat, "bytes", "message"},
		{"small presence", func(to string, i int) string {
			return `{"cmd":"presence","to":"` + to + `","i":` + strconv.Itoa(i) + `}`
		}, "frames", "presence"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			testFlood(t, tt.frame, tt.budget, tt.cmd)
		})
	}
}

func testFlood(t *testing.T, frame func(to string, i int) string, budget, cmd string) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options, func(c *roles.Config) {
			c.ReadRateFrames, c.ReadBurstFrames = 50, 20
			c.ReadRateBytes, c.ReadBurstBytes = 256<<10, 64<<10
			c.AbuseLimit, c.AbuseWindow = 30, 10*time.Second
			c.ChatRate, c.ChatBurst = 5, 5
			c.PresenceRate, c.PresenceBurst = 5, 5
		})
		a := register(t, n.url)
		u := register(t, n.url)
		f := register(t, n.url)
		v := register(t, n.url) // the flood's target, offline
		v.c.Close(websocket.StatusNormalClosure, "")

		// The flooder writes until its connection fails; its reader
		// records what the server said.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		wrote := make(chan int, 1)
		go func() {
			i := 0
			for ; ctx.Err() == nil; i++ {
				wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
				err := f.c.Write(wctx, websocket.MessageText, []byte(frame(v.id, i)))
				wcancel()
				if err != nil {
					break
				}
			}
			wrote <- i
		}()
		type end struct {
			code    websocket.StatusCode
			refused int  // server_acks rate_limited
			errorRL bool // the error frame before the close
		}
		ended := make(chan end, 1)
		go func() {
			var e end
			for {
				_, data, err := f.c.Read(context.Background())
				if err != nil {
					e.code = websocket.CloseStatus(err)
					ended <- e
					return
				}
				s := string(data)
				switch {
				case strings.Contains(s, `"type":"server_ack"`) && strings.Contains(s, `"reason":"rate_limited"`):
					e.refused++
				case strings.Contains(s, `"cmd":"error"`) && strings.Contains(s, `"reason":"rate_limited"`):
					e.errorRL = true
				}
			}
		}()

		// The honest pair chats while the flood is paced.
		waitMetric(t, n, `occase_read_throttled_total{budget="`+budget+`"}`, 1)
		for i := 1; i <= 3; i++ {
			a.chat(u.id, "during", i)
			a.expectServerAck(i, u.id)
			u.expectChat(a.id, "during")
		}

		var e end
		select {
		case e = <-ended:
		case <-time.After(20 * time.Second):
			t.Fatal("the flooding connection was not closed")
		}
		cancel()
		sent := <-wrote
		if e.code != wire.CloseRateExceeded {
			t.Fatalf("flooder closed with %d, want %d", e.code, wire.CloseRateExceeded)
		}
		if !e.errorRL {
			t.Errorf("no rate_limited error frame before the close")
		}
		if cmd == "message" && e.refused == 0 {
			t.Errorf("no message was refused rate_limited")
		}
		// Nothing the flooder sent past its chat rate was stored: at most
		// the chat burst plus what the rate refilled.
		if got := metric(t, n, "occase_chat_stored_total"); got > 3+5+5*20 {
			t.Errorf("chat_stored_total %v after a flood of %d frames", got, sent)
		}
		for _, want := range []string{
			`occase_connection_closes_total{code="4006"}`,
			`occase_rate_refused_total{cmd="` + cmd + `"}`,
			`occase_read_throttled_total{budget="` + budget + `"}`,
		} {
			if metric(t, n, want) < 1 {
				t.Errorf("metrics lack %s", want)
			}
		}
		if got := metric(t, n, `occase_connection_closes_total{code="4006"}`); got != 1 {
			t.Errorf("closes 4006 = %v, want 1 (only the flooder)", got)
		}
		// And after it.
		a.chat(u.id, "after", 9)
		a.expectServerAck(9, u.id)
		u.expectChat(a.id, "after")
		// The flooder's account cools off (--abuse-cooloff): its next
		// login is refused at once, without a Redis round trip; other
		// users log in as ever.
		again := dial(t, n.url)
		again.send(`{"cmd":"login","user":"` + f.id + `","password":"` + f.pwd + `"}`)
		if m := again.expect("login_ack"); m.str("result") != "fail" || m.str("reason") != wire.RateLimited || !strings.Contains(m.str("detail"), "wait") {
			t.Fatalf("the flooder's login right after 4006: %v, want rate_limited with how long to wait", m)
		}
		login(t, n.url, v.id, v.pwd) // v's own session ended long ago: nothing is kicked
		t.Logf("flooder sent %d frames, %d refused or dropped, before the close", sent, e.refused)
	})
}

// A session on its way out (replaced by a newer login: 4001; or its send
// queue overflowed: 4004) acts on nothing it reads afterwards: a
// subscribe does not put it back into the fan-out, a message is not
// stored, a publish is not published. The frames are sent while its
// shutdown sits just after posts.Leave, the moment a subscribe could undo
// the Leave.
func TestLeavingSessionActsOnNothing(t *testing.T) {
	for _, tt := range []struct {
		name string
		code websocket.StatusCode
	}{
		{"replaced", wire.CloseReplaced},
		{"overflowed", wire.CloseSlowConsumer},
	} {
		t.Run(tt.name, func(t *testing.T) {
			brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
				testLeavingSessionActsOnNothing(t, b, tt.code)
			})
		})
	}
}

func testLeavingSessionActsOnNothing(t *testing.T, b brokertest.Backend, code websocket.StatusCode) {
	n := startNode(t, b.Options, func(c *roles.Config) {
		c.Posts.QuotaN = 100
		if code == wire.CloseSlowConsumer {
			// Replies fit; a 1 KiB chat delivery does not.
			c.SendQueueBytes = 400
		}
	})
	victim := make(chan string, 1)
	left, release := make(chan struct{}), make(chan struct{})
	n.srv.AfterPostsLeave(func(user string) {
		select {
		case id := <-victim:
			if id == user {
				close(left)
				<-release
				return
			}
			victim <- id
		default:
		}
	})

	bob := register(t, n.url)
	bob.send(`{"cmd":"subscribe"}`)
	bob.expect("subscribe_ack")
	old := register(t, n.url)
	old.send(`{"cmd":"subscribe"}`)
	old.expect("subscribe_ack")
	waitMetric(t, n, "occase_posts_subscriptions", 2)
	victim <- old.id

	var newer *client
	switch code {
	case wire.CloseReplaced:
		newer = dial(t, n.url)
		newer.send(`{"cmd":"login","user":"` + old.id + `","password":"` + old.pwd + `"}`)
	case wire.CloseSlowConsumer:
		bob.chat(old.id, strings.Repeat("x", 1024), 1)
		bob.expectServerAck(1, old.id)
	}
	select {
	case <-left:
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not leave")
	}
	stored := metric(t, n, "occase_chat_stored_total")
	ignored := metric(t, n, "occase_frames_ignored_total")

	// What a kicked client keeps sending.
	old.send(`{"cmd":"subscribe"}`)
	old.chat(bob.id, "from the grave", 2)
	old.send(publishFrame("[1,0,0]", "[2,0,0]"))
	waitMetric(t, n, "occase_frames_ignored_total", ignored+3)
	close(release)

	if got := old.closed(); got != code {
		t.Fatalf("close code %d, want %d", got, code)
	}
	if newer != nil {
		if m := newer.expect("login_ack"); m.str("result") != "ok" {
			t.Fatalf("login_ack %v", m)
		}
	}
	waitMetric(t, n, fmt.Sprintf(`occase_connection_closes_total{code="%d"}`, code), 1)
	if got := metric(t, n, "occase_posts_subscriptions"); got != 1 {
		t.Errorf("posts_subscriptions = %v, want 1 (bob): the leaving session subscribed itself back", got)
	}
	if got := metric(t, n, "occase_chat_stored_total"); got != stored {
		t.Errorf("chat_stored_total went from %v to %v: the leaving session's message was stored", stored, got)
	}
	if got := metric(t, n, "occase_posts_live"); got != 0 {
		t.Errorf("posts_live = %v: the leaving session published", got)
	}
	// Bob hears nothing from it; a post published now reaches bob alone.
	c := register(t, n.url)
	c.send(publishFrame("[1,0,0]", "[2,0,0]"))
	c.expect("publish_ack")
	if m := bob.expect("post"); len(postIDs(t, m)) != 1 {
		t.Fatalf("bob got %v", m)
	}
	waitMetric(t, n, "occase_posts_delivered_total", 1)
	if got := metric(t, n, "occase_posts_delivered_total"); got != 1 {
		t.Errorf("posts_delivered_total = %v, want 1 (bob only)", got)
	}
}

// A subscribe already running when its session is replaced finishes
// before the shutdown leaves the posts index, so it cannot put the
// session back into the fan-out after the Leave.
func TestSubscribeInFlightDuringKick(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options, func(c *roles.Config) {
			c.Posts.QuotaN = 100
			// The newer login does not wait for the old session, which
			// cannot let go while its subscribe is held.
			c.DisplaceTimeout = 200 * time.Millisecond
		})
		victim := make(chan string, 1)
		entered, release := make(chan struct{}), make(chan struct{})
		n.srv.BeforePostsSubscribe(func(user string) {
			select {
			case id := <-victim:
				if id == user {
					close(entered)
					<-release
					return
				}
				victim <- id
			default:
			}
		})
		bob := register(t, n.url)
		bob.send(`{"cmd":"subscribe"}`)
		bob.expect("subscribe_ack")
		old := register(t, n.url)
		victim <- old.id
		old.send(`{"cmd":"subscribe"}`)
		<-entered
		// Replaced while its subscribe is in dispatch.
		newer := login(t, n.url, old.id, old.pwd)
		close(release)
		if got := old.closed(); got != wire.CloseReplaced {
			t.Fatalf("close code %d, want %d", got, wire.CloseReplaced)
		}
		waitMetric(t, n, `occase_connection_closes_total{code="4001"}`, 1)
		if got := metric(t, n, "occase_posts_subscriptions"); got != 1 {
			t.Fatalf("posts_subscriptions = %v, want 1 (bob): the replaced session is still in the fan-out", got)
		}
		// The newer session of the same user works.
		newer.send(`{"cmd":"subscribe"}`)
		newer.expect("subscribe_ack")
		waitMetric(t, n, "occase_posts_subscriptions", 2)
	})
}
