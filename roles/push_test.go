package roles_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/roles"
)

// TestPushEndToEnd: over real WebSockets, a device registered with
// push_subscribe gets one notification for messages its user did not
// receive live, and none for a message received live.
func TestPushEndToEnd(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, be brokertest.Backend) {
		var mu sync.Mutex
		var topics []string
		got := make(chan struct{}, 10)
		fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			topics = append(topics, r.Header.Get("Topic"))
			mu.Unlock()
			got <- struct{}{}
			w.WriteHeader(http.StatusCreated)
		}))
		t.Cleanup(fake.Close)
		n := startNode(t, be.Options, func(c *roles.Config) {
			c.Push.AllowInsecureEndpoints = true
			c.Push.Delay = 300 * time.Millisecond
			c.Push.Poll = 20 * time.Millisecond
		})
		a := register(t, n.url)
		b := register(t, n.url)
		k, _ := ecdh.P256().GenerateKey(rand.Reader)
		enc := base64.RawURLEncoding.EncodeToString
		b.send(`{"cmd":"push_subscribe","webpush":{"endpoint":"` + fake.URL + `/b","keys":{"p256dh":"` +
			enc(k.PublicKey().Bytes()) + `","auth":"` + enc(make([]byte, 16)) + `"}}}`)
		if m := b.expect("push_subscribe_ack"); m.str("result") != "ok" {
			t.Fatalf("push_subscribe: %v", m)
		}
		a.chat(b.id, "live", 1)
		a.expect("message")
		b.expectChat(a.id, "live")

		b.c.Close(websocket.StatusNormalClosure, "")
		waitOffline(t, n, b.id)
		a.chat(b.id, "offline 1", 2)
		a.expect("message")
		a.chat(b.id, "offline 2", 3)
		a.expect("message")
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("no notification")
		}
		mu.Lock()
		defer mu.Unlock()
		if len(topics) != 1 || topics[0] != "chat-"+a.id {
			t.Fatalf("notifications %v, want one with Topic chat-%s", topics, a.id)
		}
	})
}
