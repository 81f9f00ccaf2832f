package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/occase/occase/broker/brokertest"
)

// adminConn is one real TCP connection to the admin listener, speaking
// HTTP/1.1 by hand so that the test decides when it opens and closes.
type adminConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialAdmin(t *testing.T, addr string) *adminConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &adminConn{c: c, r: bufio.NewReader(c)}
}

// get sends GET path with token (none when "") and reads the answer.
func (a *adminConn) get(path, token string) (*http.Response, map[string]any, error) {
	a.c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: admin\r\n"
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	if _, err := a.c.Write([]byte(req + "\r\n")); err != nil {
		return nil, nil, err
	}
	return a.answer()
}

func (a *adminConn) answer() (*http.Response, map[string]any, error) {
	a.c.SetDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(a.r, nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(b, &m)
	return resp, m, nil
}

// closed says the node closed the connection (EOF or reset within 5 s).
func (a *adminConn) closed() bool {
	a.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := a.r.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// The admin listener bounds its connections at accept (--admin-max-conns
// 8: 8 open, 4 of them without a valid token yet), with the real binary
// and real TCP connections: past either bound a new connection gets a
// 503 with its reason and is closed; an answer to a request without a
// valid token closes its connection; a storm of 2,000 connections
// leaves the node at 8 and the operators' open connections working;
// when connections go, new ones are let in again.
func TestAdminListenerConnectionBound(t *testing.T) {
	dir := t.TempDir()
	tf := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tf, []byte("ana "+testAdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	aa := freeAddr(t)
	n := startProc(t, "--role=db", "--redis", brokertest.StartRedis(t).Addr, "--secret", testSecret,
		"--admin-addr", aa, "--admin-token-file", tf, "--admin-max-conns", "8")

	// Five operators' connections: each request with the token keeps its
	// connection open.
	var ops []*adminConn
	for i := 0; i < 5; i++ {
		c := dialAdmin(t, aa)
		resp, m, err := c.get("/admin/v1/whoami", testAdminToken)
		if err != nil || resp.StatusCode != 200 || m["name"] != "ana" || resp.Close {
			t.Fatalf("operator connection %d: %v %v %v", i, resp, m, err)
		}
		ops = append(ops, c)
	}
	// An answer without a valid token closes its connection: /healthz,
	// a wrong token, the page.
	for _, c := range []struct{ path, tok string }{{"/healthz", ""}, {"/admin/v1/whoami", "wrong-" + testAdminToken}, {"/admin/", ""}} {
		a := dialAdmin(t, aa)
		resp, _, err := a.get(c.path, c.tok)
		if err != nil || !resp.Close || !a.closed() {
			t.Fatalf("GET %s without a valid token: %v %v, want an answer and the connection closed", c.path, resp, err)
		}
	}
	// Three anonymous connections that send nothing fill the 8.
	var anon []*adminConn
	for i := 0; i < 3; i++ {
		anon = append(anon, dialAdmin(t, aa))
	}
	refusedWith := func(what, reason string) {
		t.Helper()
		brokertest.Poll(t, 5*time.Second, what, func() bool {
			a := dialAdmin(t, aa)
			resp, m, err := a.answer() // answered before it sends anything
			if err != nil {
				return false // not refused: taken (the count lags a close)
			}
			if resp.StatusCode != 503 || m["reason"] != reason || resp.Header.Get("Retry-After") == "" || !a.closed() {
				t.Fatalf("%s: %d %v %v", what, resp.StatusCode, m, resp.Header)
			}
			return true
		})
	}
	refusedWith("the ninth connection", "too_many_connections")
	// Two operators leave: room for one more anonymous, then the
	// anonymous bound (4) refuses, though the total (7) has room.
	ops[3].c.Close()
	ops[4].c.Close()
	ops = ops[:3]
	brokertest.Poll(t, 5*time.Second, "the operators' slots freed", func() bool {
		_, m := metricsOn(t, ops[0])
		return m["occase_admin_conns"] == 6
	})
	anon = append(anon, dialAdmin(t, aa))
	refusedWith("a fifth anonymous connection", "too_many_anonymous_connections")

	// A storm: 2,000 connections, 50 at a time, each reading what it gets.
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 50; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				c, err := net.DialTimeout("tcp", aa, 5*time.Second)
				if err != nil {
					mu.Lock()
					got["dial error"]++
					mu.Unlock()
					continue
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				k := "no answer"
				if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
					var m map[string]any
					json.NewDecoder(resp.Body).Decode(&m)
					k = fmt.Sprint(resp.StatusCode, " ", m["reason"])
				}
				c.Close()
				mu.Lock()
				got[k]++
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	for i := 0; i < 2000; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	took := time.Since(start)
	if got["503 too_many_anonymous_connections"] == 0 || got["503 too_many_anonymous_connections"]+got["no answer"] != 2000 {
		t.Fatalf("the storm's 2,000 connections: %v, want each refused (503 or closed unanswered)", got)
	}
	// The operators' connections still answer; the node holds 7.
	for i, c := range ops {
		if resp, m, err := c.get("/admin/v1/whoami", testAdminToken); err != nil || resp.StatusCode != 200 {
			t.Fatalf("operator connection %d after the storm: %v %v %v", i, resp, m, err)
		}
	}
	raw, m := metricsOn(t, ops[0])
	if m["occase_admin_conns"] != 7 || m["occase_admin_conns_anonymous"] != 4 {
		t.Fatalf("after the storm: %v open, %v anonymous, want 7 and 4", m["occase_admin_conns"], m["occase_admin_conns_anonymous"])
	}
	refused := m[`occase_admin_conns_refused_total{reason="too_many_anonymous_connections"}`] + m[`occase_admin_conns_refused_total{reason="closed_unanswered"}`]
	if refused < 2001 {
		t.Fatalf("refusals counted: %v\n%s", refused, grepLines(raw, "occase_admin_conns"))
	}
	t.Logf("2,000 connections in %v: %v; node RSS %s", took.Round(time.Millisecond), got, rss(n.cmd.Process.Pid))

	// The anonymous go: new connections are let in again.
	for _, a := range anon {
		a.c.Close()
	}
	brokertest.Poll(t, 5*time.Second, "a connection let in again", func() bool {
		a := dialAdmin(t, aa)
		resp, _, err := a.get("/healthz", "")
		return err == nil && resp.StatusCode == 200
	})
}

var metricLine = regexp.MustCompile(`(?m)^(occase_admin_conns\S*) (\S+)$`)

// metricsOn reads /metrics over c, an operator's connection (kept open).
func metricsOn(t *testing.T, c *adminConn) (string, map[string]float64) {
	t.Helper()
	c.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.c.Write([]byte("GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := map[string]float64{}
	for _, l := range metricLine.FindAllStringSubmatch(string(b), -1) {
		m[l[1]], _ = strconv.ParseFloat(l[2], 64)
	}
	return string(b), m
}

// rss is a process's resident memory, from /proc ("?" elsewhere).
func rss(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:"))
		}
	}
	return "?"
}
