package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/wire"
)

// attackStats is what one kind of hostile client saw: how many requests
// (or frames, or uploads) it made, the server's answers counted by result
// or reason, how its connections ended and how long each lived.
type attackStats struct {
	kind    string
	clients int

	ops   atomic.Uint64 // requests, frames or uploads started
	bytes atomic.Uint64 // bytes written
	recv  atomic.Uint64 // bytes read

	mu      sync.Mutex
	results map[string]uint64
	closes  map[string]uint64

	lifetime Histogram // connection (or upload) opened to closed by the server
	latency  Histogram // request to its reply
}

func newAttackStats(kind string, clients int) *attackStats {
	return &attackStats{kind: kind, clients: clients, results: map[string]uint64{}, closes: map[string]uint64{}}
}

func (s *attackStats) result(k string) {
	s.mu.Lock()
	s.results[k]++
	s.mu.Unlock()
}

// reply counts a WebSocket reply by its result: "ok", or the fail reason;
// an error frame counts as "error_<reason>".
func (s *attackStats) reply(req *wire.Request) {
	s.result(replyKey(req))
}

func replyKey(req *wire.Request) string {
	res, _ := wire.String(req.Get("result"))
	reason, _ := wire.String(req.Get("reason"))
	switch {
	case req.Cmd == "error":
		return "error_" + orUnknown(reason)
	case res == "ok":
		return "ok"
	}
	return orUnknown(reason)
}

func orUnknown(s string) string {
	if s == "" {
		return "no_reason"
	}
	return s
}

// closed counts how a connection the attacker held ended, unless the
// attack itself was over (ctx done): then the server did not close it.
func (s *attackStats) closed(ctx context.Context, err error, lived time.Duration) {
	if ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	s.closes[closeKey(err)]++
	s.mu.Unlock()
	s.lifetime.Record(lived)
}

// closeKey names how a connection ended: the WebSocket close code the
// server sent, or what the transport said.
func closeKey(err error) string {
	if code := websocket.CloseStatus(err); code != -1 {
		return strconv.Itoa(int(code))
	}
	switch {
	case err == nil:
		return "none"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case strings.Contains(err.Error(), "connection reset"):
		return "reset"
	}
	return "connection_error"
}

// AttackReport is one kind of hostile client in the report.
type AttackReport struct {
	Kind    string            `json:"kind"`
	Clients int               `json:"clients"`
	Ops     uint64            `json:"ops"` // requests, frames or uploads started
	PerSec  float64           `json:"ops_per_s"`
	BytesMB float64           `json:"sent_mb"`
	RecvMB  float64           `json:"received_mb"`
	Results map[string]uint64 `json:"results"` // by result or reason; HTTP as "http_<status>[_<reason>]"
	Closes  map[string]uint64 `json:"closes,omitempty"`
	// TimeToClose is how long the connections the server closed had lived.
	TimeToClose *Latency `json:"time_to_close_ms,omitempty"`
	Latency     *Latency `json:"reply_latency_ms,omitempty"`
}

func (s *attackStats) report(took time.Duration) *AttackReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := &AttackReport{Kind: s.kind, Clients: s.clients, Ops: s.ops.Load(),
		BytesMB: float64(s.bytes.Load()) / 1e6, RecvMB: float64(s.recv.Load()) / 1e6,
		Results: copyCounts(s.results), Closes: copyCounts(s.closes),
		TimeToClose: latencyOf(&s.lifetime), Latency: latencyOf(&s.latency)}
	if took > 0 {
		a.PerSec = float64(a.Ops) / took.Seconds()
	}
	if len(a.Closes) == 0 {
		a.Closes = nil
	}
	return a
}

func copyCounts(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// redisUsedMemory asks a Redis server for INFO memory over plain RESP and
// returns used_memory in bytes. A handful of lines instead of a client:
// the bench only needs this one figure, from a server it does not own.
func redisUsedMemory(ctx context.Context, addr string) (float64, error) {
	info, err := redisInfo(ctx, addr, "memory")
	if err != nil {
		return 0, err
	}
	return usedMemory(info)
}

// redisInfo returns Redis' INFO section at addr.
func redisInfo(ctx context.Context, addr, section string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(c, "*2\r\n$4\r\nINFO\r\n$%d\r\n%s\r\n", len(section), section); err != nil {
		return "", err
	}
	info, err := readBulk(bufio.NewReader(c))
	if err != nil {
		return "", fmt.Errorf("INFO %s from %s: %w", section, addr, err)
	}
	return info, nil
}

// commandCalls parses INFO commandstats into calls and microseconds per
// command ("evalsha", "hget", ...).
func commandCalls(info string) map[string][2]float64 {
	out := map[string][2]float64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var calls, usec float64
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "calls":
				calls, _ = strconv.ParseFloat(v, 64)
			case "usec":
				usec, _ = strconv.ParseFloat(v, 64)
			}
		}
		out[strings.TrimPrefix(name, "cmdstat_")] = [2]float64{calls, usec}
	}
	return out
}

// readBulk reads one RESP bulk string (an error reply is an error).
func readBulk(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "-"):
		return "", errors.New(line[1:])
	case !strings.HasPrefix(line, "$"):
		return "", fmt.Errorf("unexpected reply %q", line)
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 0 || n > 1<<20 {
		return "", fmt.Errorf("bad bulk length %q", line)
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

func usedMemory(info string) (float64, error) {
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "used_memory:"); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, errors.New("no used_memory in INFO memory")
}
