package roles_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/roles"
	"github.com/occase/occase/wire"
)

func TestRegisterLoginAndBadLogin(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options)
		a := register(t, n.url)
		a2 := register(t, n.url)
		if a.id == a2.id {
			t.Fatalf("two registrations got the same id %s", a.id)
		}
		for _, ch := range a.pwd {
			if !strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-", ch) {
				t.Fatalf("password %q has %q outside [A-Za-z0-9+-]", a.pwd, ch)
			}
		}
		a.c.Close(websocket.StatusNormalClosure, "")
		c := login(t, n.url, a.id, a.pwd)
		c.c.Close(websocket.StatusNormalClosure, "")

		tests := []struct{ name, frame string }{
			{"wrong password", `{"cmd":"login","user":"` + a.id + `","password":"nope-nope-nope"}`},
			{"unknown user", `{"cmd":"login","user":"999999","password":"` + a.pwd + `"}`},
			{"not an id", `{"cmd":"login","user":"../1","password":"x"}`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := dial(t, n.url)
				c.send(tt.frame)
				// Sent before the check completes: must not be acted on.
				c.send(`{"cmd":"message","to":"` + a2.id + `","msg":"spoof"}`)
				m := c.expect("login_ack")
				if m.str("result") != "fail" || m.str("reason") != wire.BadCredentials {
					t.Fatalf("login_ack %v, want fail bad_credentials", m)
				}
				if code := c.closed(); code != wire.CloseBadCredentials {
					t.Fatalf("close code %d, want %d", code, wire.CloseBadCredentials)
				}
			})
		}
		// Nothing from the failed logins reached a2.
		if m, err := a2.tryRecv(300 * time.Millisecond); err == nil {
			t.Fatalf("a failed login acted as the user: %v", m)
		}
	})
}

func TestBadInputClosesWithTheRightCode(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options, func(c *roles.Config) { c.MaxFrame = 1024 })
		tests := []struct {
			name   string
			login  bool
			frame  string
			binary bool
			code   websocket.StatusCode
		}{
			{"not json", false, `{"cmd":`, false, wire.CloseInvalidPayload},
			{"not utf8", false, "{\"cmd\":\"\xff\"}", false, wire.CloseInvalidPayload},
			{"no cmd", false, `{"user":"1"}`, false, wire.ClosePolicy},
			{"unknown cmd", true, `{"cmd":"teleport"}`, false, wire.ClosePolicy},
			{"array", false, `[]`, false, wire.ClosePolicy},
			{"login without password", false, `{"cmd":"login","user":"1"}`, false, wire.ClosePolicy},
			{"message to a number", true, `{"cmd":"message","to":57}`, false, wire.ClosePolicy},
			{"binary frame", false, `{"cmd":"register"}`, true, wire.CloseUnsupported},
			{"too big", true, `{"cmd":"message","to":"1","msg":"` + strings.Repeat("x", 2000) + `"}`, false, wire.CloseTooBig},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var c *client
				if tt.login {
					c = register(t, n.url)
				} else {
					c = dial(t, n.url)
				}
				if tt.binary {
					c.c.Write(t.Context(), websocket.MessageBinary, []byte(tt.frame))
				} else {
					c.send(tt.frame)
				}
				if tt.code != wire.CloseTooBig {
					m := c.expect("error")
					if m.str("result") != "fail" || m.str("reason") != wire.BadRequest || m.str("detail") == "" {
						t.Fatalf("error frame %v", m)
					}
				}
				if code := c.closed(); code != tt.code {
					t.Fatalf("close code %d, want %d", code, tt.code)
				}
			})
		}
		// The node still serves after all of that.
		register(t, n.url)
	})
}

func TestAnonymousAndLoginTimeout(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options, func(c *roles.Config) { c.LoginTimeout = 200 * time.Millisecond })
		c := dial(t, n.url)
		c.send(`{"cmd":"subscribe","channels":[[],[]]}`)
		m := c.expect("subscribe_ack")
		if m.str("result") != "fail" || m.str("reason") != wire.NotLoggedIn {
			t.Fatalf("got %v, want not_logged_in", m)
		}
		c.send(`{"cmd":"message","to":"1","id":5}`)
		m = c.expect("message")
		if m.str("type") != "server_ack" || m.str("result") != "fail" || m.str("reason") != wire.NotLoggedIn || m.num("ack_id") != 5 {
			t.Fatalf("got %v", m)
		}
		if code := c.closed(); code != wire.CloseLoginTimeout {
			t.Fatalf("close code %d, want login timeout %d", code, wire.CloseLoginTimeout)
		}
		// A logged-in connection outlives the login timeout.
		a := register(t, n.url)
		if _, err := a.tryRecv(500 * time.Millisecond); err == nil || websocket.CloseStatus(err) != -1 {
			t.Fatalf("logged-in connection was closed: %v", err)
		}
	})
}

func TestMetricsCountWhatHappened(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n := startNode(t, b.Options)
		a := register(t, n.url)
		u := register(t, n.url)
		a.chat(u.id, "hi", 1)
		a.expectServerAck(1, u.id)
		u.expectChat(a.id, "hi")
		a.send(`{"cmd":"message","to":"99999","id":2}`)
		a.expect("message")
		wants := []string{
			`occase_frames_in_total{cmd="message"} 2`,
			`occase_frames_in_total{cmd="register"} 2`,
			`occase_request_errors_total{cmd="message",reason="not_found"} 1`,
			`occase_chat_stored_total 1`,
			`occase_chat_delivered_total 1`,
			`occase_connections{state="logged_in"} 2`,
			`occase_redis_subscriber_up 1`,
			// Scripts by name (counts vary: a first EVALSHA meets NOSCRIPT
			// and is sent again as EVAL); plain commands exactly.
			`occase_redis_command_duration_seconds_count{cmd="chat_store"}`,
			`occase_redis_command_duration_seconds_count{cmd="chat_fetch"}`,
			`occase_redis_command_duration_seconds_count{cmd="incr"} 2`,
			`process_resident_memory_bytes`,
		}
		// The delivered counter moves when the writer learns its write
		// succeeded, which can be just after the peer read the frame: poll.
		var missing []string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			body := httpGet(t, n.base+"/metrics")
			missing = missing[:0]
			for _, want := range wants {
				if !strings.Contains(body, want) {
					missing = append(missing, want)
				}
			}
			if len(missing) == 0 || time.Now().After(deadline) {
				break
			}
		}
		for _, want := range missing {
			t.Errorf("metrics lack %q", want)
		}
	})
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(b)
}
