package broker

import (
	"context"
	"crypto/tls"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// A Redis whose certificate this node refuses stops Open at once: the
// operator's tour saw such nodes start "retrying in the background" for
// ever, although no retry can fix a certificate.
func TestOpenRefusesBadRedisCertificate(t *testing.T) {
	srv := httptest.NewTLSServer(nil) // a certificate no system root signs
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "https://")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Open(ctx, Options{Addrs: []string{addr}, Timeout: 2 * time.Second, TLS: &tls.Config{MinVersion: tls.VersionTLS12}}, zap.NewNop())
	if err == nil {
		c.Close()
		t.Fatal("Open started with a refused certificate")
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("error %v", err)
	}
}

// --redis-tls against a Redis without TLS times out in the handshake; the
// log says what to check instead of only "context deadline exceeded".
func TestOpenTLSAgainstPlainServerHints(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts and never answers, as a plain Redis does
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	core, logs := observer.New(zapcore.WarnLevel)
	c, err := Open(context.Background(), Options{Addrs: []string{ln.Addr().String()}, Timeout: 300 * time.Millisecond, TLS: &tls.Config{MinVersion: tls.VersionTLS12}}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, e := range logs.FilterMessageSnippet("unreachable").All() {
		if h, _ := e.ContextMap()["hint"].(string); strings.Contains(h, "TLS") {
			return
		}
	}
	t.Fatalf("no hint in %v", logs.All())
}

// A node that cannot reach Redis keeps saying so while the cause stays the
// same (it said it once, then nothing for good).
func TestStillUnreachableRepeats(t *testing.T) {
	old := stillUnreachableEvery
	stillUnreachableEvery = 200 * time.Millisecond
	defer func() { stillUnreachableEvery = old }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connection refused from now on
	core, logs := observer.New(zapcore.WarnLevel)
	c, err := Open(context.Background(), Options{Addrs: []string{addr}, Timeout: 300 * time.Millisecond}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for logs.FilterMessage("redis still unreachable; retrying").Len() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("said %d times", logs.FilterMessage("redis still unreachable; retrying").Len())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
