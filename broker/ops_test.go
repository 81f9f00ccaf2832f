package broker_test

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
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
)

func gather(t *testing.T, reg *prometheus.Registry, name string) []*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	return nil
}

// A Redis at maxmemory with noeviction refuses every write; before, the
// node said nothing but occase_redis_command_errors_total, which also
// counts timeouts and lost connections.
func TestOOMRepliesAreCounted(t *testing.T) {
	r := brokertest.StartRedis(t, "--maxmemory-policy", "noeviction")
	reg := prometheus.NewRegistry()
	c := brokertest.Open(t, broker.Options{Addrs: []string{r.Addr}, Prefix: brokertest.Prefix(), Metrics: reg})
	ctx := context.Background()
	if _, err := c.CreateUser(ctx, "d", 1000); err != nil {
		t.Fatal(err)
	}
	r.CLI(t, "CONFIG", "SET", "maxmemory", "1")
	_, err := c.CreateUser(ctx, "d", 1000)
	if err == nil || !broker.IsOOM(err) {
		t.Fatalf("CreateUser at maxmemory: %v, want an OOM reply", err)
	}
	ms := gather(t, reg, "occase_redis_oom_errors_total")
	if len(ms) != 1 || ms[0].GetCounter().GetValue() != 1 {
		t.Fatalf("occase_redis_oom_errors_total = %v, want 1", ms)
	}
	mem := c.Memory(ctx)
	if len(mem) != 1 || mem[0].Max != 1 || mem[0].Used <= 1 || mem[0].Addr != r.Addr {
		t.Fatalf("Memory() = %+v, want used above maxmemory 1 at %s", mem, r.Addr)
	}
	r.CLI(t, "CONFIG", "SET", "maxmemory", "0")
	if _, err := c.CreateUser(ctx, "d", 1000); err != nil {
		t.Fatal(err)
	}
	if m := c.Memory(ctx); len(m) != 1 || m[0].Max != 0 {
		t.Fatalf("unbounded: %+v", m)
	}
}

func TestIsOOM(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want bool
	}{
		{"OOM command not allowed when used memory > 'maxmemory'.", true},
		{"ERR Error running script (call to f_x): @user_script:1: OOM command not allowed when used memory > 'maxmemory'.", true},
		{"ERR unknown command", false},
		{"NOSCRIPT No matching script", false},
	} {
		if got := broker.IsOOM(errString(tc.msg)); got != tc.want {
			t.Errorf("IsOOM(%q) = %v", tc.msg, got)
		}
	}
	if broker.IsOOM(nil) {
		t.Error("IsOOM(nil)")
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// writePEM writes a certificate (and its key) signed by parent, or
// self-signed when parent is nil.
func newCert(t *testing.T, dir, name string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost", "redis.test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return cert, key
}

func freeTCPPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// A Redis that speaks only TLS and requires a client certificate, with a
// password: --redis-tls-ca, --redis-tls-cert/-key and the password reach
// every connection, pub/sub included.
func TestRedisOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCert(t, dir, "ca", true, nil, nil)
	newCert(t, dir, "server", false, ca, caKey)
	newCert(t, dir, "client", false, ca, caKey)
	port := freeTCPPort(t)
	r := brokertest.StartRedis(t, "--port", "0", "--tls-port", strconv.Itoa(port),
		"--tls-cert-file", filepath.Join(dir, "server.crt"), "--tls-key-file", filepath.Join(dir, "server.key"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.crt"), "--tls-auth-clients", "yes",
		"--requirepass", "s3cret")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	_ = r

	tc, err := broker.TLSConfig(broker.TLSFiles{CA: filepath.Join(dir, "ca.crt"),
		Cert: filepath.Join(dir, "client.crt"), Key: filepath.Join(dir, "client.key")})
	if err != nil {
		t.Fatal(err)
	}
	opt := broker.Options{Addrs: []string{addr}, Prefix: brokertest.Prefix(), Password: "s3cret", TLS: tc, Timeout: 2 * time.Second}
	c := brokertest.Open(t, opt)
	ctx := context.Background()
	id, err := c.CreateUser(ctx, "d", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok, err := c.PasswordDigest(ctx, id); err != nil || !ok || d != "d" {
		t.Fatalf("digest over TLS: %q %v %v", d, ok, err)
	}
	brokertest.Poll(t, 5*time.Second, "pub/sub over TLS", c.SubscribeReady)

	// Without TLS, or without the client certificate, Open fails.
	for name, o := range map[string]broker.Options{
		"plain":   {Addrs: []string{addr}, Password: "s3cret", Timeout: time.Second},
		"no cert": {Addrs: []string{addr}, Password: "s3cret", Timeout: time.Second, TLS: mustTLS(t, broker.TLSFiles{CA: filepath.Join(dir, "ca.crt")})},
		"wrong CA": {Addrs: []string{addr}, Password: "s3cret", Timeout: time.Second, TLS: mustTLS(t, broker.TLSFiles{
			CA: filepath.Join(dir, "client.crt"), Cert: filepath.Join(dir, "client.crt"), Key: filepath.Join(dir, "client.key")})},
	} {
		if c, err := broker.Open(ctx, o, zap.NewNop()); err == nil {
			if err := c.Ping(ctx); err == nil {
				t.Errorf("%s: connected to a TLS-only Redis", name)
			}
			c.Close()
		}
	}
}

func mustTLS(t *testing.T, f broker.TLSFiles) *tls.Config {
	t.Helper()
	tc, err := broker.TLSConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

func TestTLSConfigChecksFiles(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o600)
	for name, f := range map[string]broker.TLSFiles{
		"missing CA":   {CA: filepath.Join(dir, "none.pem")},
		"CA not PEM":   {CA: bad},
		"cert, no key": {Cert: bad},
		"bad key pair": {Cert: bad, Key: bad},
	} {
		if _, err := broker.TLSConfig(f); err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.Contains(err.Error(), "redis") && !strings.Contains(err.Error(), "Redis") {
			t.Errorf("%s: %v does not name the option", name, err)
		}
	}
	if tc, err := broker.TLSConfig(broker.TLSFiles{ServerName: "redis.test"}); err != nil || tc.ServerName != "redis.test" || tc.RootCAs != nil {
		t.Fatalf("system roots with a server name: %+v %v", tc, err)
	}
}
