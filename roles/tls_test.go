package roles_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/roles"
	"go.uber.org/zap/zaptest"
)

// selfSigned writes a certificate and key for 127.0.0.1 into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "occase test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// A WebSocket over TLS outlives every server-side read deadline: it idles
// well past the header timeout and still works (the original cut TLS
// sessions about 30 s after connecting).
func TestWebSocketOverTLSOutlivesDeadlines(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		cfg := roles.DefaultConfig()
		cfg.Role, cfg.Redis, cfg.RegisterRate = "db", b.Options, 0
		cfg.TLSCert, cfg.TLSKey = selfSigned(t, t.TempDir())
		cfg.ReadHeaderTimeout = 200 * time.Millisecond
		srv, err := roles.New(context.Background(), cfg, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx, l) }()
		t.Cleanup(func() { cancel(); <-done })

		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		dial := func() *client {
			c, _, err := websocket.Dial(context.Background(), "wss://"+l.Addr().String()+"/ws", &websocket.DialOptions{HTTPClient: hc})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.CloseNow() })
			return &client{t: t, c: c, seen: map[int64]bool{}}
		}
		a, u := dial(), dial()
		for _, c := range []*client{a, u} {
			c.send(`{"cmd":"register"}`)
			m := c.expect("register_ack")
			c.id = m.str("id")
		}
		// Idle for five header timeouts (the scenario, not a
		// synchronisation: a read with a deadline would close the client's
		// own connection), then talk.
		time.Sleep(time.Second)
		a.chat(u.id, "over tls", 1)
		a.expectServerAck(1, u.id)
		u.expectChat(a.id, "over tls")
	})
}
