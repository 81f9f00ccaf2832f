package roles

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The admin listener's count under -race, on a real listener: 200
// connections at once, half of them authenticating (kept open), half
// anonymous (closed after their answer); every connection is either
// served or refused, the count never passes its bounds, and it is back
// to zero once all are closed.
func TestAdminConnsCount(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := newAdminConns(l, 16, prometheus.NewRegistry())
	var peak int
	var pmu sync.Mutex
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "ok" {
			adminAuthenticated(r)
		}
		a.mu.Lock()
		if a.open > a.max || a.anon > a.anonMax {
			t.Errorf("open %d anon %d past %d/%d", a.open, a.anon, a.max, a.anonMax)
		}
		pmu.Lock()
		peak = max(peak, a.open)
		pmu.Unlock()
		a.mu.Unlock()
		w.Write([]byte("ok"))
	})
	srv := &http.Server{Handler: closeAnonymous(h), ConnContext: adminConnContext}
	go srv.Serve(a)
	defer srv.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	served, refused := 0, 0
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(auth bool) {
			defer wg.Done()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			req := "GET / HTTP/1.1\r\nHost: a\r\n"
			if auth {
				req += "Authorization: ok\r\n"
			}
			c.Write([]byte(req + "\r\n"))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil || resp.StatusCode == 503:
				refused++
			case resp.StatusCode == 200 && resp.Close == !auth:
				served++
			default:
				t.Errorf("auth %v: %d close %v", auth, resp.StatusCode, resp.Close)
			}
		}(i%2 == 0)
	}
	wg.Wait()
	if served+refused != 200 || served == 0 {
		t.Fatalf("served %d, refused %d", served, refused)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		a.mu.Lock()
		open, anon := a.open, a.anon
		a.mu.Unlock()
		if open == 0 && anon == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("open %d, anonymous %d after every client left", open, anon)
		}
		time.Sleep(10 * time.Millisecond)
	}
	n := testutil.ToFloat64(a.refused.WithLabelValues(reasonAdminConns)) + testutil.ToFloat64(a.refused.WithLabelValues(reasonAdminAnonConns)) +
		testutil.ToFloat64(a.refused.WithLabelValues(reasonAdminUnanswered))
	if int(n) != refused {
		t.Fatalf("refusals counted %v, the clients saw %d", n, refused)
	}
	t.Logf("served %d, refused %d, peak %d open", served, refused, peak)
}
