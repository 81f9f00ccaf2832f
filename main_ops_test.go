package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker/brokertest"
)

func run(t *testing.T, bin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.Env = append(os.Environ(), "OCCASE_LOG_FORMAT=") // the test's own environment must not leak in
	err = cmd.Run()
	return o.String(), e.String(), err
}

// There was no way to ask a binary what it is.
func TestVersion(t *testing.T) {
	bin := binary(t)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, _, err := run(t, bin, args...)
		if err != nil || !strings.HasPrefix(out, "occase ") || !strings.Contains(out, runtime.Version()) {
			t.Fatalf("occase %v = %q, %v", args, out, err)
		}
	}
	// The Dockerfile's -ldflags -X main.version=... names the build.
	dir := t.TempDir()
	named := filepath.Join(dir, "occase")
	if out, err := exec.Command("go", "build", "-ldflags", "-X main.version=v9.8.7-test", "-o", named, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if out, _, err := run(t, named, "version"); err != nil || !strings.HasPrefix(out, "occase v9.8.7-test (revision ") {
		t.Fatalf("version = %q, %v", out, err)
	}
}

// In JSON mode every line on the node's output must be JSON, the fatal
// startup error included; it was plain text.
func TestFatalErrorIsJSON(t *testing.T) {
	bin := binary(t)
	for name, args := range map[string][]string{
		"config error":  {"serve", "--log-format", "json", "--secret", "zz"},
		"startup error": {"serve", "--log-format", "json", "--role", "img", "--addr", "127.0.0.1:0"},
	} {
		t.Run(name, func(t *testing.T) {
			out, errOut, err := run(t, bin, args...)
			if err == nil {
				t.Fatal("exit 0")
			}
			lines := strings.Split(strings.TrimSpace(out+errOut), "\n")
			last := lines[len(lines)-1]
			var m map[string]any
			if err := json.Unmarshal([]byte(last), &m); err != nil {
				t.Fatalf("last line is not JSON: %q\nall output:\n%s%s", last, out, errOut)
			}
			if msg, _ := m["msg"].(string); !strings.HasPrefix(msg, "occase: ") {
				t.Fatalf("msg = %q", m["msg"])
			}
			for _, l := range lines {
				if !json.Valid([]byte(l)) {
					t.Fatalf("non-JSON line %q", l)
				}
			}
		})
	}
	// Console mode keeps the short plain line.
	_, errOut, _ := run(t, bin, "serve", "--secret", "zz")
	if !strings.HasPrefix(errOut, "occase: --secret") {
		t.Fatalf("console: %q", errOut)
	}
}

func scrape(t *testing.T, url string) string {
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

// img nodes exported occase_redis_subscriber_up 0 for ever, so the first
// suggested alert always fired there; /metrics on --admin-addr only.
func TestMetricsByRole(t *testing.T) {
	r := brokertest.StartRedis(t)
	admin := freeAddr(t)
	img := startProc(t, "--role", "img", "--image-dir", t.TempDir(), "--image-key", testSecret, "--admin-addr", admin)
	m := scrape(t, "http://"+admin+"/metrics")
	for _, want := range []string{"occase_build_info{", "occase_log_dropped_total{level=\"warn\"} 0"} {
		if !strings.Contains(m, want) {
			t.Errorf("img /metrics lacks %s", want)
		}
	}
	if strings.Contains(m, "occase_redis_") {
		t.Errorf("img /metrics exports Redis series:\n%s", grepLines(m, "occase_redis_"))
	}
	if resp, err := http.Get("http://" + img.addr + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("/metrics served on the public listener despite --admin-addr")
		}
	}

	admin = freeAddr(t)
	startProc(t, "--role", "db", "--redis", r.Addr, "--secret", testSecret, "--admin-addr", admin)
	m = scrape(t, "http://"+admin+"/metrics")
	for _, want := range []string{"occase_redis_subscriber_up 1", "occase_redis_memory_used_bytes{addr=\"" + r.Addr + "\"}",
		"occase_redis_memory_max_bytes{addr=\"" + r.Addr + "\"} 0", "occase_redis_oom_errors_total 0", "occase_build_info{"} {
		if !strings.Contains(m, want) {
			t.Errorf("db /metrics lacks %s", want)
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The startup line names the version, so a rollout can be followed in the
// logs.
func TestStartupLineNamesVersion(t *testing.T) {
	p := &proc{addr: freeAddr(t)}
	out := &syncBuf{}
	p.cmd = exec.Command(binary(t), "serve", "--addr", p.addr, "--log-format", "json")
	// Only Write: syncBuf's promoted ReadFrom would bypass its lock.
	w := struct{ io.Writer }{out}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	brokertest.Poll(t, 15*time.Second, "the startup line", func() bool {
		out.mu.Lock()
		defer out.mu.Unlock()
		return strings.Contains(out.String(), `"msg":"starting"`)
	})
	out.mu.Lock()
	defer out.mu.Unlock()
	for _, l := range strings.Split(out.String(), "\n") {
		if !strings.Contains(l, `"msg":"starting"`) {
			continue
		}
		var m map[string]any
		json.Unmarshal([]byte(l), &m)
		if m["version"] == nil || m["version"] == "" || m["go"] != runtime.Version() || m["revision"] == nil {
			t.Fatalf("startup line %s", l)
		}
	}
}

// Every series the shipped alerts and dashboard, and the pages an
// operator reads, name must exist on a node: a renamed metric would
// otherwise leave an alert that never fires, or a page that sends the
// operator after a series that is not there.
func TestMonitoringNamesExist(t *testing.T) {
	r := brokertest.StartRedis(t)
	admin := freeAddr(t)
	// With the moderation API, whose series the alerts and the dashboard
	// name too (deploy/ turns it on for the db nodes).
	token := strings.Repeat("t", 40)
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	os.WriteFile(tokenFile, []byte(token), 0o600)
	// One registration per address, and a connection may send two frames
	// at once: the second connection below meets both limits.
	p := startProc(t, "--role", "all", "--redis", r.Addr, "--secret", testSecret, "--image-dir", t.TempDir(), "--admin-addr", admin,
		"--admin-token-file", tokenFile, "--register-rate", "0.001", "--register-burst", "1",
		"--read-rate-frames", "1", "--read-burst-frames", "2")
	// Vectors are exported once they have a child: make a request, a
	// failed one, an HTTP request and a moderation action first.
	c := wsDial(t, p.addr)
	c.register()
	c.send(`{"cmd":"login","user":"` + c.id + `","password":"wrong"}`)
	c.recv(5 * time.Second)
	scrape(t, "http://"+p.addr+"/readyz")
	req, _ := http.NewRequest("POST", "http://"+admin+"/admin/v1/users/"+c.id+"/unban", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("unban through the moderation API: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// The series docs/operations.md and security.md name: a registration
	// refused by its rate, a reader paused by its frame budget (the third
	// frame), a closed connection and a request head over 64 KiB.
	c2 := wsDial(t, p.addr)
	for range 3 {
		c2.send(`{"cmd":"register"}`)
	}
	for range 3 {
		if m, err := c2.recv(5 * time.Second); err != nil || m["reason"] != "rate_limited" {
			t.Fatalf("register past the address's rate: %v %v", m, err)
		}
	}
	c2.c.Close(websocket.StatusNormalClosure, "")
	if nc, err := net.Dial("tcp", p.addr); err == nil {
		fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n", strings.Repeat("a", 70<<10))
		io.Copy(io.Discard, nc)
		nc.Close()
	}
	names := func() map[string]bool {
		have := map[string]bool{}
		for _, l := range strings.Split(scrape(t, "http://"+admin+"/metrics"), "\n") {
			if l == "" || l[0] == '#' {
				continue
			}
			name, _, _ := strings.Cut(l, "{")
			name, _, _ = strings.Cut(name, " ")
			have[name] = true
		}
		return have
	}
	var have map[string]bool
	brokertest.Poll(t, 5*time.Second, "the closed connection's series", func() bool {
		have = names()
		return have["occase_connection_closes_total"]
	})
	// The push counters have a child once a notification went out or
	// failed, which takes a push service (push/push_test.go).
	// occase_admin_token is a secret's name in docs/operations.md.
	later := map[string]bool{"occase_push_sent_total": true, "occase_push_failed_total": true, "occase_admin_token": true}
	re := regexp.MustCompile(`\b(occase_[a-z_]+|process_[a-z_]+|go_[a-z_]+)\b`)
	for _, f := range []string{"deploy/monitoring/alerts.yml", "deploy/monitoring/grafana-dashboard.json",
		"README.md", "docs/operations.md", "docs/security.md", "docs/http-api.md", "docs/push.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, name := range re.FindAllString(string(b), -1) {
			// occase_redis_* and the like; not series names.
			if strings.HasSuffix(name, "_") || seen[name] || later[name] && strings.HasPrefix(f, "docs/") {
				continue
			}
			if !have[name] && !have[name+"_bucket"] && !have[strings.TrimSuffix(name, "_bucket")+"_bucket"] {
				t.Errorf("%s names %s, which the node does not export", f, name)
			}
			seen[name] = true
		}
	}
}

// promtool (Debian package prometheus) checks the rules and runs their
// unit tests; haproxy checks the compose balancer's configuration.
func TestMonitoringAndBalancerFiles(t *testing.T) {
	t.Run("promtool", func(t *testing.T) {
		if _, err := exec.LookPath("promtool"); err != nil {
			t.Skip("promtool not installed (apt-get install prometheus)")
		}
		for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
			cmd := exec.Command("promtool", args...)
			cmd.Dir = "deploy/monitoring"
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("promtool %v: %v\n%s", args, err, out)
			}
		}
	})
	t.Run("haproxy", func(t *testing.T) {
		if _, err := exec.LookPath("haproxy"); err != nil {
			t.Skip("haproxy not installed")
		}
		// The service names resolve only inside compose: haproxy warns and
		// disables those servers, and still checks the rest.
		if out, err := exec.Command("haproxy", "-c", "-f", "deploy/compose/haproxy.cfg").CombinedOutput(); err != nil {
			t.Errorf("haproxy -c: %v\n%s", err, out)
		}
	})
	t.Run("dashboard", func(t *testing.T) {
		b, err := os.ReadFile("deploy/monitoring/grafana-dashboard.json")
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				ID      int
				Type    string
				Title   string
				Targets []struct{ Expr string }
			}
		}
		if err := json.Unmarshal(b, &d); err != nil || len(d.Panels) == 0 {
			t.Fatalf("dashboard: %v, %d panels", err, len(d.Panels))
		}
		ids := map[int]bool{}
		rows := map[string]bool{}
		for _, p := range d.Panels {
			if ids[p.ID] {
				t.Errorf("panel id %d twice", p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" { // a heading, no query
				rows[p.Title] = true
				continue
			}
			if len(p.Targets) == 0 || p.Targets[0].Expr == "" {
				t.Errorf("panel %q has no query", p.Title)
			}
		}
		// The moderation row shows what an operator watches: reports,
		// the queue, actions, refusals, bans.
		if !rows["Moderation"] {
			t.Error("dashboard: no Moderation row")
		}
		for _, name := range []string{"occase_reports_total", "occase_reports_queued", "occase_reports_queue_max",
			"occase_moderation_actions_total", "occase_admin_refusals_total", "occase_logins_banned_total", "occase_sessions_banned_total"} {
			if !strings.Contains(string(b), name) {
				t.Errorf("dashboard does not show %s", name)
			}
		}
	})
}

func writeCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

// The Redis flags reach the connection: a node talks to a Redis that
// speaks only TLS, wants a client certificate and a password read from a
// file; a bad CA file stops the node with a line naming the flag.
func TestRedisTLSAndPasswordFileFlags(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", nil, nil)
	writeCert(t, dir, "server", ca, caKey)
	writeCert(t, dir, "client", ca, caKey)
	pw := filepath.Join(dir, "redis-password")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	tlsAddr := freeAddr(t)
	_, port, _ := net.SplitHostPort(tlsAddr)
	brokertest.StartRedis(t, "--port", "0", "--tls-port", port,
		"--tls-cert-file", filepath.Join(dir, "server.crt"), "--tls-key-file", filepath.Join(dir, "server.key"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.crt"), "--tls-auth-clients", "yes", "--requirepass", "s3cret")
	p := startProc(t, "--role", "db", "--redis", tlsAddr, "--secret", testSecret,
		"--redis-tls-ca", filepath.Join(dir, "ca.crt"), "--redis-tls-cert", filepath.Join(dir, "client.crt"),
		"--redis-tls-key", filepath.Join(dir, "client.key"), "--redis-password-file", pw)
	c := wsDial(t, p.addr)
	c.register()

	for name, args := range map[string][]string{
		"bad CA":        {"--redis-tls-ca", filepath.Join(dir, "client.key")},
		"cert, no key":  {"--redis-tls-cert", filepath.Join(dir, "client.crt")},
		"both password": {"--redis-password", "x", "--redis-password-file", pw},
	} {
		_, errOut, err := run(t, binary(t), append([]string{"serve", "--role", "db", "--redis", tlsAddr, "--addr", "127.0.0.1:0"}, args...)...)
		if err == nil || !strings.Contains(errOut, "--redis-") {
			t.Errorf("%s: %v %q, want an error naming the flag", name, err, errOut)
		}
	}
}

// A mistyped flag fails with one line naming it, not the whole help (the
// operator's tour found the error as the first of 131 lines).
func TestUnknownFlagIsOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"occase", "serve", "--redis-adress", "x"},
		{"occase", "--nope"},
		{"occase", "push", "keygen", "--nope"},
	} {
		a := app()
		var out, errOut bytes.Buffer
		a.Writer, a.ErrWriter = &out, &errOut
		err := a.Run(args)
		if err == nil || !strings.Contains(err.Error(), "nope") && !strings.Contains(err.Error(), "redis-adress") {
			t.Fatalf("%v: error %v", args, err)
		}
		if strings.Contains(err.Error(), "\n") || out.Len() != 0 || errOut.Len() != 0 {
			t.Fatalf("%v: error %q, printed %q and %q", args, err, out.String(), errOut.String())
		}
	}
}
