package push

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
)

// node is one push service, as a db node runs it.
type node struct {
	s     *Service
	reg   *prometheus.Registry
	waits []time.Duration // what Sleep was asked to wait
	mu    sync.Mutex
}

func newNode(t *testing.T, b *broker.Client, clk *clock, mod ...func(*Config)) *node {
	t.Helper()
	n := &node{reg: prometheus.NewRegistry()}
	cfg := DefaultConfig()
	cfg.AllowInsecureEndpoints = true
	cfg.Clock = clk.Now
	cfg.Sleep = func(ctx context.Context, d time.Duration) error {
		n.mu.Lock()
		n.waits = append(n.waits, d)
		n.mu.Unlock()
		return nil
	}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := New(context.Background(), cfg, b, n.reg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	n.s = s
	return n
}

// round claims and sends what is due now, and waits for the sends.
func (n *node) round() {
	sem := make(chan struct{}, n.s.cfg.Concurrency)
	var wg sync.WaitGroup
	n.s.tick(context.Background(), sem, &wg)
	wg.Wait()
}

func (n *node) subscribe(t *testing.T, user, frame string) {
	t.Helper()
	req, err := wire.ParseRequest([]byte(frame))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.s.Subscribe(context.Background(), user, req); err != nil {
		t.Fatalf("subscribe %s: %v", frame, err)
	}
}

// schedule does for a stored chat message what the server does: the store
// script counts it for its sender when to has a push device (pc:{to}
// c:<from>, see broker/chat.go), and chat's OnStored hook, Due, makes its
// notification due. TestChatCountsInStore runs that path through chat
// itself; here the count is planted so that tests of sending need no
// users and queues.
func (n *node) schedule(t *testing.T, to, from string, frame []byte) {
	t.Helper()
	ctx := context.Background()
	if devs, err := n.s.b.PushDevices(ctx, to); err != nil || len(devs) == 0 {
		return
	}
	if err := n.s.b.RawHIncr(ctx, "pc", to, "c:"+from, 1); err != nil {
		t.Fatal(err)
	}
	count, _, err := n.s.b.LoadPush(ctx, to, from)
	if err != nil {
		t.Fatal(err)
	}
	n.s.Due(ctx, to, from, frame, count)
}

// stored is a chat frame as the store script keeps it.
func stored(id int64, from, msg string) []byte {
	return []byte(fmt.Sprintf(`{"msg_id":%d,"from":%q,"cmd":"message","type":"chat","to":"7","msg":%q,"nick":"Ana","id":1}`, id, from, msg))
}

func start() *clock { return &clock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)} }

// TestWebPush: a message not written live gets one notification after
// the delay, which the browser's side decrypts; messages from one sender
// collapse into it with their count.
func TestWebPush(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		ctx := context.Background()
		clk := start()
		n := newNode(t, brokertest.Open(t, be.Options), clk)
		wp := startWebPush(t, n.s.VAPIDPublicKey)
		sub := wp.subscribe("u7")
		n.subscribe(t, "7", sub.request("push_subscribe"))

		n.schedule(t, "7", "5", stored(1000, "5", "Is it still available?"))
		clk.Add(time.Second)
		n.schedule(t, "7", "5", stored(1001, "5", strings.Repeat("é", 150)))
		n.round()
		if got := wp.received(); len(got) != 0 {
			t.Fatalf("sent before the delay: %v", got)
		}
		clk.Add(4 * time.Second) // 5 s after the first message
		n.round()
		n.round()
		got := wp.received()
		if len(got) != 1 {
			t.Fatalf("got %d notifications, want 1", len(got))
		}
		p := got[0].Payload
		preview := strings.Repeat("é", 99) + "…"
		if p["type"] != "chat" || p["from"] != "5" || p["count"] != 2.0 || p["nick"] != "Ana" || p["preview"] != preview {
			t.Fatalf("payload %v", p)
		}
		if got[0].Header.Get("Topic") != "chat-5" {
			t.Fatalf("Topic %q", got[0].Header.Get("Topic"))
		}
		if v := testutil.ToFloat64(n.s.m.sent.WithLabelValues("webpush")); v != 1 {
			t.Fatalf("occase_push_sent_total{webpush} = %v", v)
		}
		// Unsubscribed: nothing more.
		req, _ := wire.ParseRequest([]byte(fmt.Sprintf(`{"cmd":"push_unsubscribe","webpush":{"endpoint":%q}}`, sub.endpoint)))
		if err := n.s.Unsubscribe(ctx, "7", req); err != nil {
			t.Fatal(err)
		}
		n.schedule(t, "7", "5", stored(1002, "5", "hello?"))
		clk.Add(time.Minute)
		n.round()
		if got := wp.received(); len(got) != 1 {
			t.Fatalf("sent to an unsubscribed device: %d", len(got))
		}
	})
}

// TestTwoNodesOnce: two nodes sharing one Redis each claim concurrently;
// every notification is sent exactly once.
func TestTwoNodesOnce(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		clk := start()
		a := newNode(t, brokertest.Open(t, be.Options), clk)
		b := newNode(t, brokertest.Open(t, be.Options), clk)
		if a.s.VAPIDPublicKey() != b.s.VAPIDPublicKey() {
			t.Fatal("the nodes sign with different generated VAPID keys")
		}
		wp := startWebPush(t, a.s.VAPIDPublicKey)
		const users = 40
		for i := 1; i <= users; i++ {
			u := fmt.Sprint(100 + i)
			a.subscribe(t, u, wp.subscribe(u).request("push_subscribe"))
			// Half stored through each node.
			[]*node{a, b}[i%2].schedule(t, u, "5", stored(int64(i), "5", "hi"))
		}
		clk.Add(5 * time.Second)
		var wg sync.WaitGroup
		for _, n := range []*node{a, b} {
			wg.Add(1)
			go func() { defer wg.Done(); n.round(); n.round() }()
		}
		wg.Wait()
		got := wp.received()
		seen := map[string]int{}
		for _, r := range got {
			seen[r.Device]++
		}
		if len(got) != users || len(seen) != users {
			t.Fatalf("%d notifications to %d devices, want %d each once", len(got), len(seen), users)
		}
		sent := testutil.ToFloat64(a.s.m.sent.WithLabelValues("webpush")) + testutil.ToFloat64(b.s.m.sent.WithLabelValues("webpush"))
		if sent != users {
			t.Fatalf("sent counters add up to %v", sent)
		}
	})
}

// TestNodeKilled: a node that claimed a notification and died before
// sending it leaves it leased; another node sends it once the lease ran
// out, not before.
func TestNodeKilled(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		ctx := context.Background()
		clk := start()
		a := newNode(t, brokertest.Open(t, be.Options), clk)
		b := newNode(t, brokertest.Open(t, be.Options), clk)
		wp := startWebPush(t, a.s.VAPIDPublicKey)
		a.subscribe(t, "7", wp.subscribe("u7").request("push_subscribe"))
		a.schedule(t, "7", "5", stored(1, "5", "hi"))
		clk.Add(5 * time.Second)
		// Node a claims, then dies: its Run ends before the send.
		if ps, err := a.s.claim(ctx, 10); err != nil || len(ps) != 1 {
			t.Fatalf("claim: %v %v", ps, err)
		}
		b.round()
		if got := wp.received(); len(got) != 0 {
			t.Fatalf("sent while a's lease holds: %v", got)
		}
		if v := testutil.ToFloat64(b.s.m.due); v != 1 {
			t.Fatalf("occase_push_due = %v, want 1", v)
		}
		clk.Add(a.s.cfg.Lease)
		b.round()
		b.round()
		if got := wp.received(); len(got) != 1 {
			t.Fatalf("after the lease: %d notifications, want 1", len(got))
		}
		b.round()
		if v := testutil.ToFloat64(b.s.m.due); v != 0 {
			t.Fatalf("occase_push_due = %v after sending", v)
		}
	})
}

// TestGoneAndRetry: a push service's 410 removes the device; a 503 with
// Retry-After is tried again after that long.
func TestGoneAndRetry(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		ctx := context.Background()
		clk := start()
		b := brokertest.Open(t, be.Options)
		n := newNode(t, b, clk)
		wp := startWebPush(t, n.s.VAPIDPublicKey)
		wp.status = func(dev string, k int) (int, http.Header, string) {
			switch {
			case dev == "/push/gone":
				return http.StatusGone, nil, ""
			case dev == "/push/busy" && k == 1:
				return http.StatusServiceUnavailable, http.Header{"Retry-After": {"2"}}, ""
			}
			return 201, nil, ""
		}
		n.subscribe(t, "7", wp.subscribe("gone").request("push_subscribe"))
		n.subscribe(t, "7", wp.subscribe("busy").request("push_subscribe"))
		n.schedule(t, "7", "5", stored(1, "5", "hi"))
		clk.Add(5 * time.Second)
		n.round()
		got := wp.received()
		if len(got) != 1 || got[0].Device != "/push/busy" {
			t.Fatalf("got %v, want one to busy", got)
		}
		if len(n.waits) != 1 || n.waits[0] != 2*time.Second {
			t.Fatalf("waits %v, want [2s]", n.waits)
		}
		devs, _ := b.PushDevices(ctx, "7")
		if len(devs) != 1 {
			t.Fatalf("devices after a 410: %v", devs)
		}
		if v := testutil.ToFloat64(n.s.m.failed.WithLabelValues("webpush", "gone")); v != 1 {
			t.Fatalf("failed{gone} = %v", v)
		}
	})
}

func tlsRoots(srv *httptest.Server) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(srv.Certificate())
	return p
}

// TestFCM sends through a fake FCM HTTP v1 with its OAuth token endpoint;
// an UNREGISTERED token is removed; the original's register/login token
// adds and (empty) removes FCM devices.
func TestFCM(t *testing.T) {
	ctx := context.Background()
	m, err := broker.StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	b := brokertest.Open(t, broker.Options{Addrs: []string{m.Addr()}, Prefix: brokertest.Prefix()})
	clk := start()
	fcm := startFCM(t)
	fcm.status = func(dev string, _ int) (int, http.Header, string) {
		if dev == "dead-token" {
			return http.StatusNotFound, nil, fcmUnregisteredAnswer
		}
		return 200, nil, ""
	}
	n := newNode(t, b, clk, func(c *Config) {
		c.FCMCredentials = fcm.creds
		c.FCMEndpoint = fcm.srv.URL
		c.RootCAs = tlsRoots(fcm.srv)
	})
	if err := n.s.SetFCMToken(ctx, "7", "good:token_1-a"); err != nil {
		t.Fatal(err)
	}
	n.subscribe(t, "7", `{"cmd":"push_subscribe","fcm":"dead-token"}`)
	n.schedule(t, "7", "5", stored(1, "5", "hi"))
	clk.Add(5 * time.Second)
	n.round()
	got := fcm.received()
	if len(got) != 1 || got[0].Device != "good:token_1-a" {
		t.Fatalf("got %v", got)
	}
	msg := got[0].Payload
	data, _ := msg["data"].(map[string]any)
	android, _ := msg["android"].(map[string]any)
	if data["type"] != "chat" || data["from"] != "5" || data["count"] != "1" || data["nick"] != "Ana" || data["preview"] != "hi" ||
		android["collapse_key"] != "chat-5" {
		t.Fatalf("message %v", msg)
	}
	devs, _ := b.PushDevices(ctx, "7")
	if len(devs) != 1 {
		t.Fatalf("UNREGISTERED token not removed: %v", devs)
	}
	if err := n.s.SetFCMToken(ctx, "7", ""); err != nil {
		t.Fatal(err)
	}
	if devs, _ := b.PushDevices(ctx, "7"); len(devs) != 0 {
		t.Fatalf("empty token left FCM devices: %v", devs)
	}
	if fcm.tokens != 1 {
		t.Fatalf("%d access tokens fetched, want 1 (cached)", fcm.tokens)
	}
}

// TestAPNs sends over HTTP/2 and TLS to a fake APNs; a 410 removes the
// device.
func TestAPNs(t *testing.T) {
	ctx := context.Background()
	m, err := broker.StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	b := brokertest.Open(t, broker.Options{Addrs: []string{m.Addr()}, Prefix: brokertest.Prefix()})
	clk := start()
	ap := startAPNs(t)
	dead := strings.Repeat("dd", 32)
	ap.status = func(dev string, _ int) (int, http.Header, string) {
		if dev == dead {
			return http.StatusGone, nil, `{"reason":"Unregistered","timestamp":1}`
		}
		return 200, nil, ""
	}
	n := newNode(t, b, clk, func(c *Config) {
		c.APNsKey, c.APNsKeyID, c.APNsTeamID, c.Topic = ap.p8, "KEY1234567", "TEAM123456", "com.example.occase"
		c.APNsEndpoint = ap.srv.URL
		c.RootCAs = tlsRoots(ap.srv)
		c.NoPreviews = true
	})
	good := strings.Repeat("AB", 32)
	n.subscribe(t, "7", `{"cmd":"push_subscribe","apns":"`+good+`"}`)
	n.subscribe(t, "7", `{"cmd":"push_subscribe","apns":"`+dead+`"}`)
	n.schedule(t, "7", "5", stored(1, "5", "secret words"))
	clk.Add(5 * time.Second)
	n.round()
	got := ap.received()
	if len(got) != 1 || got[0].Device != strings.ToLower(good) {
		t.Fatalf("got %v", got)
	}
	if got[0].Header.Get("apns-collapse-id") != "chat-5" || got[0].Payload["from"] != "5" || got[0].Payload["count"] != 1.0 {
		t.Fatalf("request %v %v", got[0].Header, got[0].Payload)
	}
	if s := fmt.Sprint(got[0].Payload); strings.Contains(s, "secret") || strings.Contains(s, "Ana") {
		t.Fatalf("a preview went out with previews off: %s", s)
	}
	if devs, _ := b.PushDevices(ctx, "7"); len(devs) != 1 {
		t.Fatalf("410 device not removed: %v", devs)
	}
}

// TestSubscribeValidation: every field is checked, and the device limit
// answers too_many.
func TestSubscribeValidation(t *testing.T) {
	m, err := broker.StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	b := brokertest.Open(t, broker.Options{Addrs: []string{m.Addr()}, Prefix: brokertest.Prefix()})
	n := newNode(t, b, start(), func(c *Config) { c.AllowInsecureEndpoints = false; c.MaxDevices = 2 })
	keys := `"keys":{"p256dh":"BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4","auth":"BTBZMqHH6r4Tts7J_aSIgg"}`
	long := "https://push.example/" + strings.Repeat("x", 1100)
	for _, tc := range []struct {
		name, frame, want string
	}{
		{"webpush ok", `{"cmd":"push_subscribe","webpush":{"endpoint":"https://push.example/a",` + keys + `}}`, ""},
		{"fcm ok", `{"cmd":"push_subscribe","fcm":"abc:DEF-1_2"}`, ""},
		{"limit", `{"cmd":"push_subscribe","apns":"` + strings.Repeat("0f", 32) + `"}`, TooMany},
		{"same device again", `{"cmd":"push_subscribe","fcm":"abc:DEF-1_2"}`, ""},
		{"no device", `{"cmd":"push_subscribe"}`, wire.BadRequest},
		{"two devices", `{"cmd":"push_subscribe","fcm":"a","apns":"` + strings.Repeat("0f", 32) + `"}`, wire.BadRequest},
		{"http endpoint", `{"cmd":"push_subscribe","webpush":{"endpoint":"http://push.example/a",` + keys + `}}`, wire.BadRequest},
		{"loopback endpoint", `{"cmd":"push_subscribe","webpush":{"endpoint":"https://127.0.0.1/a",` + keys + `}}`, wire.BadRequest},
		{"private endpoint", `{"cmd":"push_subscribe","webpush":{"endpoint":"https://[fd00::1]/a",` + keys + `}}`, wire.BadRequest},
		{"long endpoint", `{"cmd":"push_subscribe","webpush":{"endpoint":"` + long + `",` + keys + `}}`, wire.BadRequest},
		{"userinfo", `{"cmd":"push_subscribe","webpush":{"endpoint":"https://u:p@push.example/a",` + keys + `}}`, wire.BadRequest},
		{"no keys", `{"cmd":"push_subscribe","webpush":{"endpoint":"https://push.example/a"}}`, wire.BadRequest},
		{"bad point", `{"cmd":"push_subscribe","webpush":{"endpoint":"https://push.example/a","keys":{"p256dh":"BAAA","auth":"BTBZMqHH6r4Tts7J_aSIgg"}}}`, wire.BadRequest},
		{"short auth", `{"cmd":"push_subscribe","webpush":{"endpoint":"https://push.example/a","keys":{"p256dh":"BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4","auth":"AAAA"}}}`, wire.BadRequest},
		{"webpush not object", `{"cmd":"push_subscribe","webpush":"x"}`, wire.BadRequest},
		{"fcm charset", `{"cmd":"push_subscribe","fcm":"a b"}`, wire.BadRequest},
		{"fcm long", `{"cmd":"push_subscribe","fcm":"` + strings.Repeat("a", 1025) + `"}`, wire.BadRequest},
		{"fcm number", `{"cmd":"push_subscribe","fcm":5}`, wire.BadRequest},
		{"apns not hex", `{"cmd":"push_subscribe","apns":"` + strings.Repeat("zz", 32) + `"}`, wire.BadRequest},
		{"apns short", `{"cmd":"push_subscribe","apns":"abcd"}`, wire.BadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := wire.ParseRequest([]byte(tc.frame))
			if err != nil {
				t.Fatal(err)
			}
			err = n.s.Subscribe(context.Background(), "9", req)
			got := ""
			if err != nil {
				we := wire.AsError(err)
				got = we.Reason
				if we.Malformed {
					t.Errorf("a refused device closes the connection")
				}
			}
			if got != tc.want {
				t.Fatalf("reason %q, want %q (%v)", got, tc.want, err)
			}
		})
	}
	if v := testutil.ToFloat64(n.s.m.refused); v != 1 {
		t.Fatalf("refused counter %v", v)
	}
	if string(Ack("push_subscribe")) != `{"cmd":"push_subscribe_ack","result":"ok"}` {
		t.Fatalf("ack %s", Ack("push_subscribe"))
	}
}

// TestRun: the loop a node runs sends when due and returns when stopped.
func TestRun(t *testing.T) {
	m, err := broker.StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	b := brokertest.Open(t, broker.Options{Addrs: []string{m.Addr()}, Prefix: brokertest.Prefix()})
	clk := start()
	n := newNode(t, b, clk, func(c *Config) { c.Poll = 10 * time.Millisecond })
	wp := startWebPush(t, n.s.VAPIDPublicKey)
	n.subscribe(t, "7", wp.subscribe("u7").request("push_subscribe"))
	clk.Add(-5 * time.Second) // the message was stored 5 s ago
	n.schedule(t, "7", "5", stored(1, "5", "hi"))
	clk.Add(5 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- n.s.Run(ctx) }()
	select {
	case <-wp.notify:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing sent")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := wp.received(); len(got) != 1 {
		t.Fatalf("%d sent", len(got))
	}
}

// TestVAPID: configured keys are used as given (and a mismatched pair is
// refused); the handler publishes the public key.
func TestVAPID(t *testing.T) {
	m, err := broker.StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	b := brokertest.Open(t, broker.Options{Addrs: []string{m.Addr()}, Prefix: brokertest.Prefix()})
	pub, priv, err := GenerateVAPID()
	if err != nil {
		t.Fatal(err)
	}
	n := newNode(t, b, start(), func(c *Config) { c.VAPIDPublicKey, c.VAPIDPrivateKey = pub, priv })
	if n.s.VAPIDPublicKey() != pub {
		t.Fatal("configured key not used")
	}
	other, _, _ := GenerateVAPID()
	cfg := DefaultConfig()
	cfg.VAPIDPublicKey, cfg.VAPIDPrivateKey = other, priv
	if _, err := New(context.Background(), cfg, b, nil, zaptest.NewLogger(t)); err == nil {
		t.Fatal("a mismatched VAPID pair was accepted")
	}
	rec := httptest.NewRecorder()
	n.s.VAPIDKeyHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/push/vapid-public-key", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != 200 || string(body) != pub {
		t.Fatalf("handler: %d %q", rec.Code, body)
	}
	rec = httptest.NewRecorder()
	n.s.VAPIDKeyHandler().ServeHTTP(rec, httptest.NewRequest("POST", "/api/push/vapid-public-key", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", rec.Code)
	}
}

// TestPrivateAddressRefused: an endpoint whose name resolves to a loopback
// address is never connected to (the server must not be pointed at its
// own network) and is removed as gone.
func TestPrivateAddressRefused(t *testing.T) {
	ctx := context.Background()
	m, err := broker.StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	b := brokertest.Open(t, broker.Options{Addrs: []string{m.Addr()}, Prefix: brokertest.Prefix()})
	clk := start()
	n := newNode(t, b, clk, func(c *Config) { c.AllowInsecureEndpoints = false })
	hit := make(chan struct{}, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit <- struct{}{} }))
	t.Cleanup(srv.Close)
	port := srv.URL[strings.LastIndexByte(srv.URL, ':'):]
	sub := &subscription{endpoint: "https://localhost" + port + "/push/x"}
	sub.key, sub.auth = newSubKeys()
	n.subscribe(t, "7", sub.request("push_subscribe"))
	n.schedule(t, "7", "5", stored(1, "5", "hi"))
	clk.Add(5 * time.Second)
	n.round()
	select {
	case <-hit:
		t.Fatal("the server connected to a loopback endpoint")
	default:
	}
	if devs, _ := b.PushDevices(ctx, "7"); len(devs) != 0 {
		t.Fatalf("device kept: %v", devs)
	}
	if v := testutil.ToFloat64(n.s.m.failed.WithLabelValues("webpush", "gone")); v != 1 {
		t.Fatalf("failed{gone} = %v", v)
	}
}

func TestHandle(t *testing.T) {
	var nilService *Service
	req, _ := wire.ParseRequest([]byte(`{"cmd":"push_subscribe","fcm":"a"}`))
	if _, err := nilService.Handle(context.Background(), "1", req); wire.AsError(err).Reason != wire.Unavailable {
		t.Fatalf("nil service: %v", err)
	}
	nilService.Due(context.Background(), "1", "2", nil, 1)
	m, err := broker.StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	b := brokertest.Open(t, broker.Options{Addrs: []string{m.Addr()}, Prefix: brokertest.Prefix()})
	n := newNode(t, b, start())
	for _, cmd := range []string{"push_subscribe", "push_unsubscribe"} {
		req, _ := wire.ParseRequest([]byte(`{"cmd":"` + cmd + `","fcm":"a"}`))
		ack, err := n.s.Handle(context.Background(), "1", req)
		if err != nil || string(ack) != `{"cmd":"`+cmd+`_ack","result":"ok"}` {
			t.Fatalf("%s: %s %v", cmd, ack, err)
		}
	}
}
