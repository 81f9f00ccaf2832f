package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/wire"
)

func TestAddrPool(t *testing.T) {
	p := newAddrPool(10, 300)
	tests := []struct {
		i    int
		want string
	}{
		{0, "127.10.0.1"},
		{253, "127.10.0.254"},
		{254, "127.10.1.1"},
		{299, "127.10.1.46"},
		{300, "127.10.0.1"}, // cycles over n
		{-1, "127.10.0.2"},
	}
	for _, tt := range tests {
		if got := p.at(tt.i).String(); got != tt.want {
			t.Errorf("at(%d) = %s, want %s", tt.i, got, tt.want)
		}
	}
	// A full block never yields .0 or .255 in the last octet, nor repeats.
	full := newAddrPool(3, 1<<30)
	seen := map[string]bool{}
	for i := range maxPoolAddrs {
		a := full.at(i).As4()
		if a[0] != 127 || a[1] != 3 || a[3] == 0 || a[3] == 255 {
			t.Fatalf("at(%d) = %v", i, a)
		}
		s := full.at(i).String()
		if seen[s] {
			t.Fatalf("at(%d) = %s again", i, s)
		}
		seen[s] = true
	}
	if full.at(maxPoolAddrs) != full.at(0) {
		t.Fatal("a full pool does not cycle")
	}
	if (*addrPool)(nil).tcp(1) != nil {
		t.Fatal("a nil pool must leave the address to the kernel")
	}
}

func TestAddrPoolDialsFromItsAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		got <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		c.Close()
	}()
	d := net.Dialer{LocalAddr: newAddrPool(42, 10).tcp(3)}
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if s := <-got; s != "127.42.0.4" {
		t.Fatalf("server saw %s", s)
	}
}

func TestCloseKey(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"close frame", websocket.CloseError{Code: 4004, Reason: "send queue full"}, "4004"},
		{"wrapped close", fmt.Errorf("read: %w", websocket.CloseError{Code: 1008}), "1008"},
		{"eof", io.EOF, "eof"},
		{"unexpected eof", fmt.Errorf("x: %w", io.ErrUnexpectedEOF), "eof"},
		{"deadline", context.DeadlineExceeded, "timeout"},
		{"reset", errors.New("read tcp: connection reset by peer"), "reset"},
		{"other", errors.New("boom"), "connection_error"},
		{"nil", nil, "none"},
	}
	for _, tt := range tests {
		if got := closeKey(tt.err); got != tt.want {
			t.Errorf("%s: closeKey = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestAttackStatsCountsRepliesAndCloses(t *testing.T) {
	s := newAttackStats("flood", 2)
	for _, f := range []string{
		`{"cmd":"message","type":"server_ack","result":"ok","ack_id":1}`,
		`{"cmd":"message","type":"server_ack","result":"fail","reason":"rate_limited"}`,
		`{"cmd":"message","type":"server_ack","result":"fail","reason":"rate_limited"}`,
		`{"cmd":"publish_ack","result":"fail","reason":"quota_exceeded"}`,
		`{"cmd":"publish_ack","result":"fail"}`,
		`{"cmd":"error","result":"fail","reason":"bad_request"}`,
	} {
		req, err := wire.ParseRequest([]byte(f))
		if err != nil {
			t.Fatal(err)
		}
		s.reply(req)
	}
	ctx := context.Background()
	s.closed(ctx, websocket.CloseError{Code: 4004}, 3*time.Second)
	s.closed(ctx, websocket.CloseError{Code: 4004}, time.Second)
	s.closed(ctx, io.EOF, time.Second)
	ended, cancel := context.WithCancel(ctx)
	cancel()
	s.closed(ended, io.EOF, time.Second) // the attack was over: not the server's doing
	s.ops.Add(10)
	rep := s.report(2 * time.Second)
	want := map[string]uint64{"ok": 1, "rate_limited": 2, "quota_exceeded": 1, "no_reason": 1, "error_bad_request": 1}
	if fmt.Sprint(rep.Results) != fmt.Sprint(want) {
		t.Errorf("results %v, want %v", rep.Results, want)
	}
	if fmt.Sprint(rep.Closes) != fmt.Sprint(map[string]uint64{"4004": 2, "eof": 1}) {
		t.Errorf("closes %v", rep.Closes)
	}
	if rep.TimeToClose == nil || rep.TimeToClose.Count != 3 || rep.PerSec != 5 || rep.Clients != 2 {
		t.Errorf("report %+v", rep)
	}
}

func TestParseAttacks(t *testing.T) {
	tests := []struct {
		in    []string
		want  map[string]int
		ok    bool
		rates map[string]float64
	}{
		{[]string{"flood=1@5000", "scan=3@2.5", "register"}, map[string]int{"flood": 1, "scan": 3, "register": 4}, true, map[string]float64{"flood": 5000, "scan": 2.5}},
		{[]string{"flood=1@x"}, nil, false, nil},
		{[]string{"flood=1@-1"}, nil, false, nil},
		{[]string{"all"}, DefaultAttacks(), true, nil},
		{[]string{"flood", "scan=7"}, map[string]int{"flood": 1, "scan": 7}, true, nil},
		{[]string{"all", "upload=0"}, func() map[string]int { m := DefaultAttacks(); delete(m, "upload"); return m }(), true, nil},
		{[]string{"none"}, map[string]int{}, true, nil},
		{[]string{"nuke"}, nil, false, nil},
		{[]string{"flood=-1"}, nil, false, nil},
		{[]string{"flood=x"}, nil, false, nil},
	}
	for _, tt := range tests {
		got, rates, err := ParseAttacks(tt.in)
		if tt.want == nil {
			if err == nil {
				t.Errorf("%v: accepted", tt.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tt.in, err)
			continue
		}
		if tt.ok && fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%v = %v, want %v", tt.in, got, tt.want)
		}
		if tt.rates != nil && fmt.Sprint(rates) != fmt.Sprint(tt.rates) {
			t.Errorf("%v: rates %v, want %v", tt.in, rates, tt.rates)
		}
	}
}

func TestManyFieldsFrame(t *testing.T) {
	f := manyFields("12")
	req, err := wire.ParseRequest(f)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := wire.Scan(f, func(wire.Field) { n++ }); err != nil {
		t.Fatal(err)
	}
	if len(f) < 15_000 || len(f) > 16_384 || n < 1900 || req.Cmd != "message" {
		t.Fatalf("%d bytes, %d fields, cmd %q", len(f), n, req.Cmd)
	}
}

func TestRedisUsedMemory(t *testing.T) {
	info := "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n"
	if v, err := usedMemory(info); err != nil || v != 1048576 {
		t.Fatalf("usedMemory = %v, %v", v, err)
	}
	// Over a socket, as a Redis answers INFO memory.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for range 5 { // *2, $4, INFO, $6, memory
			r.ReadString('\n')
		}
		fmt.Fprintf(c, "$%d\r\n%s\r\n", len(info), info)
	}()
	if v, err := redisUsedMemory(context.Background(), l.Addr().String()); err != nil || v != 1048576 {
		t.Fatalf("redisUsedMemory = %v, %v", v, err)
	}
	for _, bad := range []string{"-NOAUTH Authentication required.\r\n", "+OK\r\n", "$-1\r\n", "$5\r\nab"} {
		if _, err := readBulk(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("readBulk(%q) accepted", bad)
		}
	}
}

func TestProcCPU(t *testing.T) {
	// Burn a little CPU so the figure is above zero at 10 ms resolution.
	x := 0
	for t0 := time.Now(); time.Since(t0) < 30*time.Millisecond; {
		x++
	}
	if v := procCPU(os.Getpid()); v <= 0 || x == 0 {
		t.Fatalf("procCPU = %v", v)
	}
	if v := procCPU(-1); v != -1 {
		t.Fatalf("procCPU(-1) = %v", v)
	}
}
