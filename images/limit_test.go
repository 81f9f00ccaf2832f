package images

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// pending is an upload begun on its own connection from a chosen loopback
// address, with "Expect: 100-continue": net/http sends the 100 on the
// handler's first read of the body, which comes after the upload got its
// slot, so a test knows the slot is held without polling.
type pending struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

// begin starts a POST of target declaring length bytes from the loopback
// address from. It returns the upload once the server asked for the body,
// or the final response if the server answered without reading it.
func (h *harness) begin(from, target string, length int) (*pending, *http.Response, string) {
	h.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	conn, err := d.Dial("tcp", h.srv.Listener.Addr().String())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { conn.Close() })
	// Only a guard against a hung test; no test depends on it.
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", target, length)
	p := &pending{t: h.t, conn: conn, br: bufio.NewReader(conn)}
	resp, body := p.response()
	if resp.StatusCode == http.StatusContinue {
		return p, nil, ""
	}
	return nil, resp, body
}

// response reads the next response on the connection.
func (p *pending) response() (*http.Response, string) {
	p.t.Helper()
	resp, err := http.ReadResponse(p.br, &http.Request{Method: http.MethodPost})
	if err != nil {
		p.t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		p.t.Fatal(err)
	}
	return resp, string(b)
}

// finish sends body and returns the final answer.
func (p *pending) finish(body []byte) (*http.Response, string) {
	p.t.Helper()
	go p.conn.Write(body)
	return p.response()
}

func refusals(s *Server, reason string) float64 {
	var m dto.Metric
	if err := s.refused.WithLabelValues(reason).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// A name is uploadable for the TTL after the day it was issued on; then
// 410, before any of the body is read. What was stored stays readable.
func TestUploadExpiredName(t *testing.T) {
	c := newClock(time.Date(2026, 12, 4, 10, 30, 0, 0, time.UTC))
	s, err := NewSigner([]byte(testKey), WithClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	h := newHarnessSigner(t, Config{NameTTL: 2 * time.Hour, Metrics: reg}, s)
	jpg := encodeJPEG(t, 16, 16)
	stored, late := h.name(), h.name()
	if code := h.upload("/"+stored+".jpg", jpg); code != http.StatusCreated {
		t.Fatalf("fresh name: %d", code)
	}

	c.Set(time.Date(2026, 12, 5, 1, 59, 59, 0, time.UTC))
	if resp, body := h.do(http.MethodPost, "/"+late+".jpg", nil, []byte{}); resp.StatusCode == http.StatusGone {
		t.Fatalf("refused before its TTL: %d %q", resp.StatusCode, body)
	}
	c.Set(time.Date(2026, 12, 5, 2, 0, 0, 0, time.UTC))
	resp, body := h.do(http.MethodPost, "/"+late+".jpg", nil, jpg)
	if resp.StatusCode != http.StatusGone || string(body) != "name_expired\n" {
		t.Fatalf("expired name: %d %q, want 410 name_expired", resp.StatusCode, body)
	}
	if resp, _ := h.do(http.MethodGet, "/"+stored+".jpg", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET after the name expired: %d", resp.StatusCode)
	}
	if n := refusals(h.img, "name_expired"); n != 1 {
		t.Fatalf("name_expired counted %v times", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if want := []string{"occase_image_disk_free_bytes", "occase_image_refusals_total", "occase_image_uploads_in_progress"}; !slices.Equal(names, want) {
		t.Fatalf("series registered: %v, want %v", names, want)
	}
	h.checkRoot(stored[:DigestLen])
}

// The buffer follows the bytes that arrived, not the declared length.
func TestReadBodyAllocatesAsBytesArrive(t *testing.T) {
	const limit = 10_000_000
	tests := []struct {
		name     string
		body     int
		declared int64
		maxCap   int
	}{
		{"tiny body, huge declared", 10, limit, firstChunk},
		{"tiny body, declared", 10, 10, 11},
		{"tiny body, chunked", 10, -1, firstChunk},
		{"500 KB", 500_000, limit, 2 * 500_000},
		{"at the limit", limit, limit, limit + 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := bytes.Repeat([]byte{7}, tc.body)
			got, err := readBody(http.MaxBytesReader(nil, io.NopCloser(bytes.NewReader(in)), limit), tc.declared, limit)
			if err != nil || !bytes.Equal(got, in) {
				t.Fatalf("read %d bytes, %v", len(got), err)
			}
			if cap(got) > tc.maxCap {
				t.Fatalf("buffer of %d bytes for a %d-byte body", cap(got), tc.body)
			}
		})
	}
	over := bytes.Repeat([]byte{7}, limit+1)
	if _, err := readBody(http.MaxBytesReader(nil, io.NopCloser(bytes.NewReader(over)), limit), -1, limit); err == nil {
		t.Fatal("a body over the limit was read")
	}
}

// Over HTTP: a request that declares 9 MB and sends 10 bytes costs the
// server kilobytes, not 9 MB.
func TestDeclaredLengthAllocatesNothing(t *testing.T) {
	h := newHarness(t, Config{})
	const declared = 9_000_000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	p, resp, body := h.begin("127.0.0.1", "/"+h.name()+".jpg", declared)
	if resp != nil {
		t.Fatalf("refused before the body: %d %q", resp.StatusCode, body)
	}
	p.conn.Write([]byte("0123456789"))
	p.conn.(*net.TCPConn).CloseWrite()
	resp, body = p.response()
	runtime.ReadMemStats(&after)
	if resp.StatusCode != http.StatusBadRequest || body != "bad_body\n" {
		t.Fatalf("cut body: %d %q", resp.StatusCode, body)
	}
	// Everything this process allocated meanwhile, client side included;
	// the old server alone took the declared 9 MB at once.
	if got := after.TotalAlloc - before.TotalAlloc; got > declared/4 {
		t.Fatalf("allocated %d bytes for a 10-byte body declared as %d", got, declared)
	}
	// A declared length over the limit is still refused before the body.
	if _, resp, body := h.begin("127.0.0.1", "/"+h.name()+".jpg", 10_000_001); resp == nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("declared over the limit: %v %q", resp, body)
	}
}

// Slow uploads from one address take its share of slots, not the node's:
// the next one from that address is refused quickly with 503 and
// Retry-After, while another address still uploads. A name is uploaded
// by one request at a time.
func TestUploadsPerAddress(t *testing.T) {
	h := newHarness(t, Config{UploadsPerAddress: 2, QueueWait: 50 * time.Millisecond, MinRate: -1})
	jpg := encodeJPEG(t, 16, 16)
	var held []*pending
	var names []string
	for range 2 {
		n := h.name()
		p, resp, body := h.begin("127.0.0.1", "/"+n+".jpg", len(jpg))
		if resp != nil {
			t.Fatalf("upload %d refused: %d %q", len(held), resp.StatusCode, body)
		}
		held, names = append(held, p), append(names, n)
	}

	_, resp, body := h.begin("127.0.0.1", "/"+h.name()+".jpg", len(jpg))
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable || body != "address_busy\n" {
		t.Fatalf("third upload from one address: %v %q, want 503 address_busy", resp, body)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "1" {
		t.Fatalf("Retry-After %q, want 1", ra)
	}

	// The name being uploaded from 127.0.0.1 cannot be uploaded twice at once.
	_, resp, body = h.begin("127.0.0.3", "/"+names[0]+".jpg", len(jpg))
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable || body != "name_busy\n" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("same name twice at once: %v %q, want 503 name_busy", resp, body)
	}

	p, resp, body := h.begin("127.0.0.2", "/"+h.name()+".jpg", len(jpg))
	if resp != nil {
		t.Fatalf("another address refused: %d %q", resp.StatusCode, body)
	}
	if resp, body := p.finish(jpg); resp.StatusCode != http.StatusCreated {
		t.Fatalf("another address: %d %q", resp.StatusCode, body)
	}

	for i, p := range held {
		if resp, body := p.finish(jpg); resp.StatusCode != http.StatusCreated {
			t.Fatalf("held upload %d: %d %q", i, resp.StatusCode, body)
		}
	}
	// The address's slots are free again.
	if code := h.upload("/"+h.name()+".jpg", jpg); code != http.StatusCreated {
		t.Fatalf("after the slow uploads: %d", code)
	}
	if refusals(h.img, "address_busy") != 1 || refusals(h.img, "name_busy") != 1 {
		t.Fatal("refusals not counted")
	}
	if n := h.img.gate.inFlight(); n != 0 {
		t.Fatalf("%d slots still taken", n)
	}
}

// When the node is full, an upload waits at most QueueWait: it gets a slot
// freed meanwhile, and 503 busy when none is.
func TestUploadQueueWait(t *testing.T) {
	jpg := encodeJPEG(t, 16, 16)
	t.Run("refused", func(t *testing.T) {
		h := newHarness(t, Config{MaxUploads: 1, QueueWait: 20 * time.Millisecond, MinRate: -1})
		p, resp, _ := h.begin("127.0.0.1", "/"+h.name()+".jpg", len(jpg))
		if resp != nil {
			t.Fatalf("first upload: %d", resp.StatusCode)
		}
		_, resp, body := h.begin("127.0.0.2", "/"+h.name()+".jpg", len(jpg))
		if resp == nil || resp.StatusCode != http.StatusServiceUnavailable || body != "busy\n" || resp.Header.Get("Retry-After") != "1" {
			t.Fatalf("node full: %v %q, want 503 busy", resp, body)
		}
		if resp, _ := p.finish(jpg); resp.StatusCode != http.StatusCreated {
			t.Fatalf("first upload: %d", resp.StatusCode)
		}
	})
	t.Run("served", func(t *testing.T) {
		h := newHarness(t, Config{MaxUploads: 1, QueueWait: time.Minute, MinRate: -1})
		p, resp, _ := h.begin("127.0.0.1", "/"+h.name()+".jpg", len(jpg))
		if resp != nil {
			t.Fatalf("first upload: %d", resp.StatusCode)
		}
		second := make(chan int, 1)
		url := h.srv.URL + "/" + h.name() + ".jpg"
		go func() {
			resp, err := h.srv.Client().Post(url, "image/jpeg", bytes.NewReader(jpg))
			if err != nil {
				second <- 0
				return
			}
			resp.Body.Close()
			second <- resp.StatusCode
		}()
		if resp, _ := p.finish(jpg); resp.StatusCode != http.StatusCreated {
			t.Fatalf("first upload: %d", resp.StatusCode)
		}
		if code := <-second; code != http.StatusCreated {
			t.Fatalf("waiting upload: %d", code)
		}
	})
}

// A body that trickles below the minimum rate is cut with 408 after the
// grace period, long before the upload timeout, and the slot is freed.
func TestTrickleCut(t *testing.T) {
	h := newHarness(t, Config{MinRate: 64 << 10, UploadGrace: 100 * time.Millisecond, UploadTimeout: time.Hour})
	jpg := encodeJPEG(t, 16, 16)
	p, resp, body := h.begin("127.0.0.1", "/"+h.name()+".jpg", 100_000)
	if resp != nil {
		t.Fatalf("refused before the body: %d %q", resp.StatusCode, body)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if _, err := p.conn.Write([]byte{0xff}); err != nil {
					return
				}
			}
		}
	}()
	resp, body = p.response()
	if resp.StatusCode != http.StatusRequestTimeout || body != "too_slow\n" || !resp.Close {
		t.Fatalf("trickle: %d %q close=%v, want 408 too_slow and close", resp.StatusCode, body, resp.Close)
	}
	if n := h.img.gate.inFlight(); n != 0 {
		t.Fatalf("%d slots still taken", n)
	}
	if code := h.upload("/"+h.name()+".jpg", jpg); code != http.StatusCreated {
		t.Fatalf("a fast upload after: %d", code)
	}
	if refusals(h.img, "too_slow") != 1 {
		t.Fatal("too_slow not counted")
	}
}

func TestRemoteHost(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:5000": "127.0.0.1",
		"[::1]:5000":     "::1",
		"unix":           "unix",
	} {
		if got := remoteHost(&http.Request{RemoteAddr: in}); got != want {
			t.Errorf("remoteHost(%q) = %q, want %q", in, got, want)
		}
	}
}
