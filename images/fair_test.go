package images

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

// answer is the response a held upload got, read in the background.
type answer struct {
	from string
	code int
	body string
	resp *http.Response
	err  error
}

// await reads p's answer in the background, so that a test can wait for
// whichever of many held uploads is answered first.
func (p *pending) await(from string, out chan<- answer) {
	go func() {
		resp, err := http.ReadResponse(p.br, &http.Request{Method: http.MethodPost})
		if err != nil {
			out <- answer{from: from, err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out <- answer{from: from, code: resp.StatusCode, body: string(b), resp: resp}
	}()
}

// received waits until the server has read n bytes of the body of the
// upload holding a slot for key.
func received(t *testing.T, g *gate, key string, n int64) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; runtime.Gosched() {
		g.mu.Lock()
		var got int64 = -1
		for _, tk := range g.held {
			if tk.key == key && tk.paced != nil {
				got = tk.paced.got.Load()
			}
		}
		g.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d bytes received, want %d", key, got, n)
		}
	}
}

// holdSlow fills slots with uploads that send no byte of their bodies,
// each from its own address in its own /24 (127.0.<i>.1): trickles from
// many networks, as a botnet's.
func holdSlow(t *testing.T, h *harness, from []string, declared int) map[string]*pending {
	t.Helper()
	held := map[string]*pending{}
	for _, a := range from {
		p, resp, body := h.begin(a, "/"+h.name()+".jpg", declared)
		if resp != nil {
			t.Fatalf("slow upload from %s refused: %d %q", a, resp.StatusCode, body)
		}
		held[a] = p
	}
	return held
}

func addrs(format string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf(format, i))
	}
	return out
}

// When every slot is held by uploads that send nothing, an upload from a
// fresh address gets a slot at once and is stored: the slowest upload
// loses its slot and is told so (503 preempted, Retry-After, connection
// closed). An upload that keeps a good pace keeps its slot and is stored.
// On the old gate the newcomer waited its whole QueueWait and got busy.
func TestPreemptSlowestForNewcomer(t *testing.T) {
	h := newHarness(t, Config{MaxUploads: 8, UploadsPerAddress: 1, QueueWait: 10 * time.Second,
		MinRate: -1, UploadTimeout: time.Hour, PreemptAfter: time.Millisecond, PreemptBelow: 1})
	jpg := encodeJPEG(t, 64, 64)

	// One fast honest upload: all its body but the last byte is in at once,
	// far above PreemptBelow (1 byte a second) for hours.
	fast, resp, body := h.begin("127.0.8.1", "/"+h.name()+".jpg", len(jpg))
	if resp != nil {
		t.Fatalf("fast upload refused: %d %q", resp.StatusCode, body)
	}
	if _, err := fast.conn.Write(jpg[:len(jpg)-1]); err != nil {
		t.Fatal(err)
	}
	received(t, h.img.gate, "127.0.8.1", int64(len(jpg)-1))
	// Seven slow ones take the other slots.
	slow := holdSlow(t, h, addrs("127.0.%d.1", 1, 7), 2_000_000)
	if n := h.img.gate.inFlight(); n != 8 {
		t.Fatalf("%d slots taken, want 8", n)
	}
	answers := make(chan answer, len(slow))
	for a, p := range slow {
		p.await(a, answers)
	}

	// A phone photo from a fresh address: a slot at once (the 100 Continue
	// comes only with a slot), and stored.
	honest, resp, body := h.begin("127.0.100.1", "/"+h.name()+".jpg", len(jpg))
	if resp != nil {
		t.Fatalf("honest upload on a node full of trickles: %d %q, want a slot", resp.StatusCode, body)
	}
	if resp, body := honest.finish(jpg); resp.StatusCode != http.StatusCreated {
		t.Fatalf("honest upload: %d %q", resp.StatusCode, body)
	}

	// Exactly one slow upload lost its slot, and was told why.
	a := <-answers
	if a.err != nil || a.code != http.StatusServiceUnavailable || a.body != "preempted\n" ||
		a.resp.Header.Get("Retry-After") != "10" || !a.resp.Close {
		t.Fatalf("preempted upload from %s: %d %q %v, want 503 preempted with Retry-After and close", a.from, a.code, a.body, a.err)
	}
	select {
	case b := <-answers:
		t.Fatalf("a second slow upload answered: %s %d %q %v", b.from, b.code, b.body, b.err)
	default:
	}
	if got := refusals(h.img, reasonPreempted); got != 1 {
		t.Fatalf("%v preemptions counted, want 1", got)
	}

	// The fast upload was never the one to go.
	if resp, body := fast.finish(jpg[len(jpg)-1:]); resp.StatusCode != http.StatusCreated {
		t.Fatalf("fast upload: %d %q", resp.StatusCode, body)
	}
	for _, p := range slow {
		p.conn.Close()
	}
	for range len(slow) - 1 {
		<-answers
	}
	// Every slot and share is given back, the preempted one's included.
	g := h.img.gate
	for deadline := time.Now().Add(20 * time.Second); g.inFlight() != 0; runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatalf("%d slots still taken", g.inFlight())
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.byKey) != 0 || len(g.byName) != 0 || len(g.bySub) != 0 || len(g.held) != 0 {
		t.Fatalf("left over: %v %v %v %d", g.byKey, g.byName, g.bySub, len(g.held))
	}
}

// Uploads at or above PreemptBelow, or younger than PreemptAfter, keep
// their slots: a newcomer waits its QueueWait and gets busy, as before.
func TestPreemptSparesFastAndYoung(t *testing.T) {
	jpg := encodeJPEG(t, 64, 64)
	t.Run("fast", func(t *testing.T) {
		h := newHarness(t, Config{MaxUploads: 4, UploadsPerAddress: 1, QueueWait: 50 * time.Millisecond,
			MinRate: -1, UploadTimeout: time.Hour, PreemptAfter: time.Millisecond, PreemptBelow: 1})
		var held []*pending
		for i, a := range addrs("127.0.%d.1", 1, 4) {
			p, resp, body := h.begin(a, "/"+h.name()+".jpg", len(jpg))
			if resp != nil {
				t.Fatalf("upload %d refused: %d %q", i, resp.StatusCode, body)
			}
			if _, err := p.conn.Write(jpg[:len(jpg)-1]); err != nil {
				t.Fatal(err)
			}
			received(t, h.img.gate, a, int64(len(jpg)-1))
			held = append(held, p)
		}
		if _, resp, body := h.begin("127.0.100.1", "/"+h.name()+".jpg", len(jpg)); resp == nil ||
			resp.StatusCode != http.StatusServiceUnavailable || body != "busy\n" {
			t.Fatalf("newcomer on a node of fast uploads: %v %q, want 503 busy", resp, body)
		}
		for i, p := range held {
			if resp, body := p.finish(jpg[len(jpg)-1:]); resp.StatusCode != http.StatusCreated {
				t.Fatalf("fast upload %d: %d %q", i, resp.StatusCode, body)
			}
		}
		if got := refusals(h.img, reasonPreempted); got != 0 {
			t.Fatalf("%v preempted", got)
		}
	})
	t.Run("young", func(t *testing.T) {
		h := newHarness(t, Config{MaxUploads: 2, UploadsPerAddress: 1, QueueWait: 50 * time.Millisecond,
			MinRate: -1, UploadTimeout: time.Hour, PreemptAfter: time.Hour})
		slow := holdSlow(t, h, addrs("127.0.%d.1", 1, 2), len(jpg))
		if _, resp, body := h.begin("127.0.100.1", "/"+h.name()+".jpg", len(jpg)); resp == nil ||
			resp.StatusCode != http.StatusServiceUnavailable || body != "busy\n" {
			t.Fatalf("newcomer while the slots are young: %v %q, want 503 busy", resp, body)
		}
		for a, p := range slow {
			if resp, body := p.finish(jpg); resp.StatusCode != http.StatusCreated {
				t.Fatalf("slow upload from %s: %d %q", a, resp.StatusCode, body)
			}
		}
	})
}

// One network holding every slot cannot take slots from itself (its own
// newcomers wait and get busy), but a newcomer from another network takes
// one of its slow slots.
func TestPreemptAcrossNetworks(t *testing.T) {
	h := newHarness(t, Config{MaxUploads: 4, UploadsPerAddress: 1, QueueWait: 50 * time.Millisecond,
		MinRate: -1, UploadTimeout: time.Hour, PreemptAfter: time.Millisecond, PreemptBelow: 1})
	jpg := encodeJPEG(t, 64, 64)
	slow := holdSlow(t, h, addrs("127.0.1.%d", 1, 4), 2_000_000)
	answers := make(chan answer, len(slow))
	for a, p := range slow {
		p.await(a, answers)
	}
	if _, resp, body := h.begin("127.0.1.9", "/"+h.name()+".jpg", len(jpg)); resp == nil ||
		resp.StatusCode != http.StatusServiceUnavailable || body != "busy\n" {
		t.Fatalf("newcomer from the network holding every slot: %v %q, want 503 busy", resp, body)
	}
	select {
	case a := <-answers:
		t.Fatalf("a slow upload answered: %s %d %q %v", a.from, a.code, a.body, a.err)
	default:
	}
	honest, resp, body := h.begin("127.0.2.1", "/"+h.name()+".jpg", len(jpg))
	if resp != nil {
		t.Fatalf("newcomer from another network: %d %q, want a slot", resp.StatusCode, body)
	}
	if resp, body := honest.finish(jpg); resp.StatusCode != http.StatusCreated {
		t.Fatalf("newcomer from another network: %d %q", resp.StatusCode, body)
	}
	if a := <-answers; a.code != http.StatusServiceUnavailable || a.body != "preempted\n" {
		t.Fatalf("slow upload from %s: %d %q %v, want 503 preempted", a.from, a.code, a.body, a.err)
	}
}

// A freed slot goes to the waiter whose network holds the fewest slots,
// first come first served among equals.
func TestGateServesEmptiestNetworkFirst(t *testing.T) {
	g := newGate(2, 10)
	r1, _ := g.acquire(context.Background(), "10.0.0.1", "n1", time.Minute)
	r2, _ := g.acquire(context.Background(), "10.0.0.2", "n2", time.Minute)
	same := acquireAsync(g, "10.0.0.3", "n3", time.Minute) // its /24 holds both slots
	settle(t, g, 1)
	other := acquireAsync(g, "10.0.1.1", "n4", time.Minute) // its /24 holds none
	settle(t, g, 2)
	r1()
	a := must(t, other)
	if a.release == nil {
		t.Fatalf("waiter from the other network: %q", a.reason)
	}
	select {
	case <-same:
		t.Fatal("the network holding the slots was served first")
	default:
	}
	r2()
	b := must(t, same)
	if b.release == nil {
		t.Fatalf("waiter from the full network: %q", b.reason)
	}
	a.release()
	b.release()
	if g.inFlight() != 0 || len(g.bySub) != 0 || len(g.held) != 0 {
		t.Fatalf("left over: %d slots, %v", g.inFlight(), g.bySub)
	}
}

func TestSubnetOf(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{"192.0.2.7", "192.0.2.0/24"},
		{"::ffff:192.0.2.7", "192.0.2.0/24"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"2001:db8:1:2::/64", "2001:db8:1:2::/64"}, // roles' IPv6 key
		{"2001:db8:1::/48", "2001:db8:1::/48"},
		{"2001:db8:1:2:3::/80", "2001:db8:1:2::/64"},
		{"192.0.2.7/32", "192.0.2.0/24"},
		{"not an address", "not an address"},
	} {
		if got := subnetOf(tc.key); got != tc.want {
			t.Errorf("subnetOf(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

// aged is a body that got its slot an hour ago and has sent nothing: a
// preemption candidate at once, without the test waiting for it to age.
func aged() *pacedReader {
	rc := http.NewResponseController(httptest.NewRecorder()) // deadlines unsupported: cut only marks it
	return newPacedReader(strings.NewReader(""), rc, time.Now().Add(-time.Hour), 2*time.Hour, time.Second, -1)
}

// An address whose upload was taken back waits behind a fresh one, though
// it came first.
func TestGateLostAddressWaitsBehind(t *testing.T) {
	g := newGate(2, 10)
	g.protectRate, g.preemptAfter = 1, time.Minute
	ctx := context.Background()
	a, _ := g.enter(ctx, "10.0.1.1", "n1", 1000, 0)
	a.attach(aged())
	b, _ := g.enter(ctx, "10.0.2.1", "n2", 1000, 0) // no body yet: never a candidate
	x := must(t, acquireAsync(g, "10.0.3.1", "n3", time.Minute))
	if x.release == nil || !a.preempted() || b.preempted() {
		t.Fatalf("newcomer: %q; preempted a %v, b %v; want a's slot", x.reason, a.preempted(), b.preempted())
	}
	a.release()
	if g.inFlight() != 2 {
		t.Fatalf("%d slots taken, want 2", g.inFlight())
	}

	lost := acquireAsync(g, "10.0.1.1", "n4", time.Minute)
	settle(t, g, 1)
	fresh := acquireAsync(g, "10.0.4.1", "n5", time.Minute)
	settle(t, g, 2)
	x.release()
	if f := must(t, fresh); f.release == nil {
		t.Fatalf("fresh address: %q", f.reason)
	} else {
		defer f.release()
	}
	select {
	case <-lost:
		t.Fatal("the address that lost its upload was served first")
	default:
	}
	b.release()
	if l := must(t, lost); l.release == nil {
		t.Fatalf("address that lost its upload: %q", l.reason)
	} else {
		l.release()
	}
}

// The addresses remembered are bounded: 2*max, the newest kept.
func TestGateRemembersBounded(t *testing.T) {
	g := newGate(2, 10)
	now := time.Now()
	for i := range 10 {
		g.remember(fmt.Sprintf("10.0.0.%d", i), now.Add(time.Duration(i)*time.Millisecond))
	}
	if len(g.lost) != 4 {
		t.Fatalf("%d remembered, want 4", len(g.lost))
	}
	for i := 6; i < 10; i++ {
		if _, ok := g.lost[fmt.Sprintf("10.0.0.%d", i)]; !ok {
			t.Fatalf("10.0.0.%d forgotten: %v", i, g.lost)
		}
	}
	g.remember("late", now.Add(2*lostFor)) // the rest have expired by then
	if len(g.lost) != 1 {
		t.Fatalf("expired entries kept: %v", g.lost)
	}
}

// An address whose upload was taken back takes no slot back itself for a
// while (only freed slots), so slow uploaders cannot take slots from one
// another in a chain; a fresh address still can.
func TestGateLostAddressTakesNoSlotBack(t *testing.T) {
	g := newGate(1, 10)
	g.protectRate, g.preemptAfter = 1, time.Minute
	ctx := context.Background()
	a, _ := g.enter(ctx, "10.0.1.1", "n1", 1000, 0)
	a.attach(aged())
	x, why := g.enter(ctx, "10.0.3.1", "n2", 1000, time.Minute)
	if x == nil || !a.preempted() {
		t.Fatalf("newcomer: %q, a preempted %v", why, a.preempted())
	}
	a.release()
	x.attach(aged())
	if _, why := g.enter(ctx, "10.0.1.1", "n3", 1000, 20*time.Millisecond); why != reasonBusy {
		t.Fatalf("the address that lost its upload: %q, want busy", why)
	}
	if x.preempted() {
		t.Fatal("the address that lost its upload took a slot back")
	}
	y, why := g.enter(ctx, "10.0.5.1", "n4", 1000, time.Minute)
	if y == nil || !x.preempted() {
		t.Fatalf("fresh address: %q, x preempted %v", why, x.preempted())
	}
	x.release()
	y.release()
	if g.inFlight() != 0 || len(g.held) != 0 || len(g.byKey) != 0 {
		t.Fatalf("left over: %d slots, %v", g.inFlight(), g.byKey)
	}
}
