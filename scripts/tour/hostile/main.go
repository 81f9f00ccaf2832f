// Command hostile is the client side of scripts/tour/tour.sh: it plays an
// honest chatting pair or one of the attacks of the tour against a node on
// loopback and prints one summary line of what it saw (reason codes, close
// codes, counts). Loopback only.
//
//	go run ./scripts/tour/hostile -mode honest -url ws://127.0.0.1:8080/ws -d 20s
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/jpeg"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

var (
	wsURL  = flag.String("url", "ws://127.0.0.1:8080/ws", "node WebSocket URL (loopback)")
	mode   = flag.String("mode", "honest", "honest, flood, fields, substorm, regstorm, kicked, chat, filenames, heads, reports, banme, noticeme, banstorm")
	dur    = flag.Duration("d", 10*time.Second, "how long the attack (or honest chat) lasts")
	src    = flag.String("src", "127.0.0.1", "source address(es), comma-separated (loopback)")
	n      = flag.Int("n", 50, "regstorm: registrations per source address")
	rate   = flag.Float64("rate", 5, "honest, chat: messages per second (per pair)")
	size   = flag.Int("size", 60000, "fields: bytes of each many-field frame")
	pairs  = flag.Int("pairs", 10, "chat: pairs of users, each reconnecting when closed")
	conns  = flag.Int("conns", 1000, "heads: connections per source address")
	head   = flag.Int("head", 12<<10, "heads: bytes of request head each connection sends, a chunk a second, never finishing it")
	admin  = flag.String("admin", "http://127.0.0.1:9100", "banstorm: the node's admin listener (loopback)")
	tokf   = flag.String("token-file", "", "banstorm: the file of the node's --admin-token-file")
	imgURL = flag.String("img", "", "evidence: the origin that takes and serves photos (default: -url's, as behind the balancer)")
)

func main() {
	flag.Parse()
	u, err := url.Parse(*wsURL)
	if err != nil || !loopback(u.Hostname()) {
		fmt.Fprintln(os.Stderr, "hostile: only loopback URLs")
		os.Exit(2)
	}
	if *imgURL != "" {
		if iu, err := url.Parse(*imgURL); err != nil || !loopback(iu.Hostname()) {
			fmt.Fprintln(os.Stderr, "hostile: only loopback URLs")
			os.Exit(2)
		}
	}
	for _, s := range strings.Split(*src, ",") {
		if !loopback(s) {
			fmt.Fprintln(os.Stderr, "hostile: only loopback sources")
			os.Exit(2)
		}
	}
	var res string
	switch *mode {
	case "honest":
		res = honest()
	case "flood":
		res = flood(false)
	case "fields":
		res = flood(true)
	case "substorm":
		res = substorm()
	case "regstorm":
		res = regstorm()
	case "kicked":
		res = kicked()
	case "chat":
		res = chat()
	case "filenames":
		res = filenames()
	case "heads":
		res = heads()
	case "reports":
		res = reports()
	case "noticeme":
		res = noticeme()
	case "banme":
		res = banme()
	case "banstorm":
		res = banstorm()
	case "evidence":
		res = evidence()
	default:
		fmt.Fprintln(os.Stderr, "hostile: unknown mode", *mode)
		os.Exit(2)
	}
	fmt.Println(*mode + ": " + res)
}

func loopback(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// counts is a thread-safe tally printed sorted.
type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) add(k string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[k]++
	c.mu.Unlock()
}

func (c *counts) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.m {
		n += v
	}
	return n
}

func (c *counts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ks []string
	for k := range c.m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var b strings.Builder
	for _, k := range ks {
		fmt.Fprintf(&b, "%s=%d ", k, c.m[k])
	}
	return strings.TrimSpace(b.String())
}

func dial(ctx context.Context, from string) (*websocket.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	c, _, err := websocket.Dial(ctx, *wsURL, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	return c, nil
}

type frame map[string]any

func send(ctx context.Context, c *websocket.Conn, f any) error {
	b, _ := json.Marshal(f)
	return c.Write(ctx, websocket.MessageText, b)
}

func read(ctx context.Context, c *websocket.Conn) (frame, error) {
	_, b, err := c.Read(ctx)
	if err != nil {
		return nil, err
	}
	var f frame
	_ = json.Unmarshal(b, &f)
	return f, nil
}

func closeCode(err error) string {
	if s := websocket.CloseStatus(err); s != -1 {
		var ce websocket.CloseError
		errors.As(err, &ce)
		return fmt.Sprintf("close_%d(%s)", s, ce.Reason)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return "open_at_end"
	}
	return "conn_error"
}

// register opens a connection from src and registers a user on it.
func register(ctx context.Context, from string) (*websocket.Conn, string, string, error) {
	c, err := dial(ctx, from)
	if err != nil {
		return nil, "", "", err
	}
	if err := send(ctx, c, frame{"cmd": "register"}); err != nil {
		return nil, "", "", err
	}
	for {
		f, err := read(ctx, c)
		if err != nil {
			return nil, "", "", fmt.Errorf("register: %s", closeCode(err))
		}
		if f["cmd"] == "register_ack" {
			if f["result"] != "ok" {
				c.CloseNow()
				return nil, "", "", fmt.Errorf("register_%v", f["reason"])
			}
			return c, fmt.Sprint(f["id"]), fmt.Sprint(f["password"]), nil
		}
	}
}

func login(ctx context.Context, from, id, pw string) (*websocket.Conn, error) {
	c, err := dial(ctx, from)
	if err != nil {
		return nil, err
	}
	if err := send(ctx, c, frame{"cmd": "login", "user": id, "password": pw}); err != nil {
		return nil, err
	}
	for {
		f, err := read(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("login: %s", closeCode(err))
		}
		if f["cmd"] == "login_ack" {
			if f["result"] != "ok" {
				return nil, fmt.Errorf("login_%v", f["reason"])
			}
			return c, nil
		}
	}
}

// honest: two users chat A->B at -rate for -d; counts what was acked,
// refused, delivered, lost, and the worst delivery latency.
func honest() string {
	from := strings.Split(*src, ",")[0]
	ctx, cancel := context.WithTimeout(context.Background(), *dur+15*time.Second)
	defer cancel()
	a, _, _, err := register(ctx, from)
	if err != nil {
		return "setup failed: " + err.Error()
	}
	b, bid, _, err := register(ctx, from)
	if err != nil {
		return "setup failed: " + err.Error()
	}
	var (
		mu      sync.Mutex
		sentAt  = map[int]time.Time{}
		got     = map[int]bool{}
		worst   time.Duration
		dup     int
		cs      counts
		acked   int
		refused counts
	)
	go func() { // receiver
		for {
			f, err := read(ctx, b)
			if err != nil {
				cs.add("recv_" + closeCode(err))
				return
			}
			if f["cmd"] == "message" && f["type"] == "chat" {
				k := int(f["seq"].(float64))
				mu.Lock()
				if got[k] {
					dup++
				}
				got[k] = true
				if d := time.Since(sentAt[k]); d > worst {
					worst = d
				}
				mu.Unlock()
			}
		}
	}()
	go func() { // sender acks
		for {
			f, err := read(ctx, a)
			if err != nil {
				cs.add("send_" + closeCode(err))
				return
			}
			if f["type"] == "server_ack" {
				mu.Lock()
				if f["result"] == "ok" {
					acked++
				} else {
					refused.add(fmt.Sprint(f["reason"]))
				}
				mu.Unlock()
			}
		}
	}()
	tick := time.NewTicker(time.Duration(float64(time.Second) / *rate))
	end := time.Now().Add(*dur)
	seq := 0
	for time.Now().Before(end) {
		<-tick.C
		seq++
		mu.Lock()
		sentAt[seq] = time.Now()
		mu.Unlock()
		if err := send(ctx, a, frame{"cmd": "message", "type": "chat", "to": bid, "msg": "hello", "seq": seq, "id": seq}); err != nil {
			cs.add("write_error")
			break
		}
	}
	time.Sleep(3 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	lost := 0
	for k := 1; k <= seq; k++ {
		if !got[k] {
			lost++
		}
	}
	return fmt.Sprintf("sent=%d acked=%d refused=[%s] delivered=%d lost=%d dup=%d worst_latency=%s events=[%s]",
		seq, acked, refused.String(), len(got), lost, dup, worst.Round(time.Millisecond), cs.String())
}

// flood: one logged-in connection writes frames as fast as it can for -d.
// fields: each frame is a chat message to itself with ~60 KB of small fields.
func flood(fields bool) string {
	from := strings.Split(*src, ",")[0]
	ctx, cancel := context.WithTimeout(context.Background(), *dur+10*time.Second)
	defer cancel()
	c, id, _, err := register(ctx, from)
	if err != nil {
		return "setup failed: " + err.Error()
	}
	var msg []byte
	if fields {
		var b strings.Builder
		fmt.Fprintf(&b, `{"cmd":"message","type":"chat","to":%q`, id)
		for i := 0; b.Len() < *size-12; i++ {
			fmt.Fprintf(&b, `,"f%d":0`, i)
		}
		b.WriteString("}")
		msg = []byte(b.String())
	} else {
		msg = []byte(fmt.Sprintf(`{"cmd":"presence","to":%q,"type":"writing"}`, id))
	}
	var cs counts
	done := tally(ctx, c, &cs, "", "type")
	wctx, wcancel := context.WithTimeout(ctx, *dur)
	defer wcancel()
	sent := 0
	start := time.Now()
	for {
		if err := c.Write(wctx, websocket.MessageText, msg); err != nil {
			break
		}
		sent++
	}
	el := time.Since(start)
	c.CloseNow()
	<-done
	return fmt.Sprintf("frames_written=%d in %s (%.0f/s) frame_bytes=%d seen=[%s]", sent, el.Round(time.Millisecond), float64(sent)/el.Seconds(), len(msg), cs.String())
}

// substorm: one connection subscribes with the largest lists, back to back.
func substorm() string {
	from := strings.Split(*src, ",")[0]
	ctx, cancel := context.WithTimeout(context.Background(), *dur+10*time.Second)
	defer cancel()
	c, _, _, err := register(ctx, from)
	if err != nil {
		return "setup failed: " + err.Error()
	}
	locs := make([]int64, 256)
	prods := make([]int64, 1024)
	for i := range locs {
		locs[i] = int64(i+1) << 21
	}
	for i := range prods {
		prods[i] = int64(i + 1)
	}
	var cs counts
	done := tally(ctx, c, &cs, "", "result")
	wctx, wcancel := context.WithTimeout(ctx, *dur)
	defer wcancel()
	sent := 0
	for {
		if err := send(wctx, c, frame{"cmd": "subscribe", "channels": []any{locs, prods}, "last_post_id": 0}); err != nil {
			break
		}
		sent++
	}
	c.CloseNow()
	<-done
	return fmt.Sprintf("subscribes_written=%d seen=[%s]", sent, cs.String())
}

// regstorm: -n registrations from each -src address, 16 at once.
func regstorm() string {
	ctx, cancel := context.WithTimeout(context.Background(), *dur+10*time.Second)
	defer cancel()
	var cs counts
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, s := range strings.Split(*src, ",") {
		for i := 0; i < *n; i++ {
			wg.Add(1)
			sem <- struct{}{}
			go func(s string) {
				defer wg.Done()
				defer func() { <-sem }()
				c, _, _, err := register(ctx, s)
				if err != nil {
					cs.add(err.Error())
					return
				}
				cs.add("ok")
				c.Close(websocket.StatusNormalClosure, "")
			}(s)
		}
	}
	wg.Wait()
	return cs.String()
}

// kicked: a user logs in twice; the older connection keeps sending.
func kicked() string {
	from := strings.Split(*src, ",")[0]
	ctx, cancel := context.WithTimeout(context.Background(), *dur+10*time.Second)
	defer cancel()
	old, id, pw, err := register(ctx, from)
	if err != nil {
		return "setup failed: " + err.Error()
	}
	peer, pid, _, err := register(ctx, from)
	if err != nil {
		return "setup failed: " + err.Error()
	}
	var cs counts
	done := tally(ctx, old, &cs, "old_", "type")
	newc, err := login(ctx, from, id, pw)
	if err != nil {
		return "second login failed: " + err.Error()
	}
	defer newc.CloseNow()
	wrote := 0
	wctx, wcancel := context.WithTimeout(ctx, *dur)
	defer wcancel()
	for {
		if err := send(wctx, old, frame{"cmd": "message", "type": "chat", "to": pid, "msg": "from the kicked one", "id": wrote}); err != nil {
			cs.add("old_write_error")
			break
		}
		wrote++
		time.Sleep(time.Millisecond)
	}
	<-done
	// Did the peer get anything from the kicked connection?
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	defer pcancel()
	got := 0
	for {
		f, err := read(pctx, peer)
		if err != nil {
			break
		}
		if f["cmd"] == "message" && f["type"] == "chat" {
			got++
		}
	}
	return fmt.Sprintf("old_frames_written_after_displacement=%d peer_received=%d seen=[%s]", wrote, got, cs.String())
}

// filenames: register and print one upload name (for the slow upload).
func filenames() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, _, err := register(ctx, strings.Split(*src, ",")[0])
	if err != nil {
		return "setup failed: " + err.Error()
	}
	defer c.CloseNow()
	if err := send(ctx, c, frame{"cmd": "filenames"}); err != nil {
		return err.Error()
	}
	for {
		f, err := read(ctx, c)
		if err != nil {
			return closeCode(err)
		}
		if f["cmd"] == "filenames_ack" {
			if names, ok := f["names"].([]any); ok && len(names) > 0 {
				return fmt.Sprint(names[0])
			}
			return fmt.Sprint(f["reason"])
		}
	}
}

// chat: -pairs pairs chat A->B at -rate each for -d; both ends log in
// again whenever their connection closes (a rolling restart), so the
// counts are exact across restarts: lost = acknowledged ok but never
// delivered; dup = delivered more than once (same seq).
func chat() string {
	from := strings.Split(*src, ",")[0]
	ctx, cancel := context.WithTimeout(context.Background(), *dur+40*time.Second)
	defer cancel()
	var (
		mu              sync.Mutex
		acked, sent     int
		lost, dup, dlv  int
		refused, closes counts
		reconnects      []time.Duration
	)
	type user struct{ id, pw string }
	// conn keeps one user logged in: it calls onFrame for every frame and
	// logs in again after a close, until stop.
	keep := func(u user, first *websocket.Conn, stop <-chan struct{}, cur chan<- *websocket.Conn, onFrame func(frame)) {
		c := first
		for {
			cur <- c
			for {
				f, err := read(ctx, c)
				if err != nil {
					closes.add(closeCode(err))
					break
				}
				onFrame(f)
			}
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			for {
				nc, err := login(ctx, from, u.id, u.pw)
				if err == nil {
					c = nc
					break
				}
				if ctx.Err() != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			mu.Lock()
			reconnects = append(reconnects, time.Since(t0))
			mu.Unlock()
		}
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for p := 0; p < *pairs; p++ {
		a, aid, apw, err := register(ctx, from)
		if err != nil {
			return "setup failed: " + err.Error()
		}
		b, bid, bpw, err := register(ctx, from)
		if err != nil {
			return "setup failed: " + err.Error()
		}
		got := map[float64]int{}
		ok := map[float64]bool{}
		acur, bcur := make(chan *websocket.Conn, 100), make(chan *websocket.Conn, 100)
		go keep(user{bid, bpw}, b, stop, bcur, func(f frame) {
			if f["cmd"] == "message" && f["type"] == "chat" {
				mu.Lock()
				got[f["seq"].(float64)]++
				mu.Unlock()
			}
		})
		go keep(user{aid, apw}, a, stop, acur, func(f frame) {
			if f["type"] == "server_ack" {
				mu.Lock()
				if f["result"] == "ok" {
					acked++
					ok[f["ack_id"].(float64)] = true
				} else {
					refused.add(fmt.Sprint(f["reason"]))
				}
				mu.Unlock()
			}
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := <-acur
			tick := time.NewTicker(time.Duration(float64(time.Second) / *rate))
			defer tick.Stop()
			end := time.Now().Add(*dur)
			for seq := 1; time.Now().Before(end); seq++ {
				<-tick.C
				select {
				case c = <-acur:
				default:
				}
				mu.Lock()
				sent++
				mu.Unlock()
				_ = send(ctx, c, frame{"cmd": "message", "type": "chat", "to": bid, "msg": "hi", "seq": seq, "id": seq})
			}
			time.Sleep(5 * time.Second) // let the last deliveries arrive
			mu.Lock()
			for k := range ok {
				switch {
				case got[k] == 0:
					lost++
				case got[k] > 1:
					dup++
				}
			}
			for _, n := range got {
				dlv += n
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(stop)
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(reconnects, func(i, j int) bool { return reconnects[i] < reconnects[j] })
	med, worst := time.Duration(0), time.Duration(0)
	if n := len(reconnects); n > 0 {
		med, worst = reconnects[n/2], reconnects[n-1]
	}
	return fmt.Sprintf("pairs=%d sent=%d acked_ok=%d refused=[%s] delivered=%d lost_acked=%d duplicated=%d closes=[%s] reconnects=%d median=%s max=%s",
		*pairs, sent, acked, refused.String(), dlv, lost, dup, closes.String(), len(reconnects), med.Round(time.Millisecond), worst.Round(time.Millisecond))
}

// heads opens -conns connections per source address, each sending an
// upgrade request head that never ends (-head bytes in ten chunks, one a
// second, the last without the blank line), and reports when the node
// closed them (it must, at --read-header-timeout) and whether it ever
// answered one.
func heads() string {
	host := mustHost()
	var c counts
	var wg sync.WaitGroup
	start := time.Now()
	var mu sync.Mutex
	var last time.Duration
	for _, from := range strings.Split(*src, ",") {
		for i := 0; i < *conns; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
				nc, err := d.Dial("tcp", host)
				if err != nil {
					c.add("dial_error")
					return
				}
				defer nc.Close()
				line := "GET /ws HTTP/1.1\r\nHost: " + host + "\r\n" + "Upgrade: websocket\r\nConnection: Upgrade\r\n"
				chunk := max((*head-len(line))/10, 1)
				filler := "X-Pad: " + strings.Repeat("p", chunk) + "\r\n"
				nc.Write([]byte(line))
				closed := make(chan struct{})
				go func() {
					defer close(closed)
					b := make([]byte, 512)
					nc.SetReadDeadline(time.Now().Add(*dur + 30*time.Second))
					n, err := nc.Read(b)
					switch {
					case n > 0:
						c.add("answered_" + strings.Fields(string(b[:n]) + " x x")[1])
					case errors.Is(err, os.ErrDeadlineExceeded):
						c.add("never_closed")
					default:
						c.add("closed")
					}
					mu.Lock()
					last = max(last, time.Since(start))
					mu.Unlock()
				}()
				for k := 0; k < 10; k++ {
					select {
					case <-closed:
						return
					case <-time.After(time.Second):
					}
					nc.Write([]byte(filler))
				}
				<-closed
			}()
		}
	}
	wg.Wait()
	return fmt.Sprintf("connections=%d seen=[%s] last_closed_after=%.1fs", *conns*len(strings.Split(*src, ",")), c.String(), last.Seconds())
}

func mustHost() string {
	u, _ := url.Parse(*wsURL)
	return u.Host
}

// reports: an author publishes one post; a reporter then writes report
// frames for -d as fast as it can, the same post again and again, posts
// that do not exist, oversized texts and unknown reasons; then every
// address of -src registers a user that reports the post once. It prints
// what the acks said and how the connections ended.
func reports() string {
	srcs := strings.Split(*src, ",")
	ctx, cancel := context.WithTimeout(context.Background(), *dur+60*time.Second)
	defer cancel()
	a, _, _, err := register(ctx, srcs[0])
	if err != nil {
		return "setup failed: " + err.Error()
	}
	defer a.CloseNow()
	post, err := publishOne(ctx, a, "reported bike")
	if err != nil {
		return "setup failed: " + err.Error()
	}
	c, _, _, err := register(ctx, srcs[0])
	if err != nil {
		return "setup failed: " + err.Error()
	}
	var cs counts
	done := tally(ctx, c, &cs, "", "result")
	big := strings.Repeat("x", 10000)
	frames := []frame{
		{"cmd": "report", "id": post, "reason": "spam", "text": "same post again"},
		{"cmd": "report", "id": 987654321, "reason": "scam"},
		{"cmd": "report", "id": post, "reason": "spam", "text": big},
		{"cmd": "report", "id": post, "reason": "because"},
	}
	wctx, wcancel := context.WithTimeout(ctx, *dur)
	sent := 0
	for ; send(wctx, c, frames[sent%len(frames)]) == nil; sent++ {
	}
	wcancel()
	c.CloseNow()
	<-done
	// Many reporters, one report each.
	var many counts
	var wg sync.WaitGroup
	for _, s := range srcs {
		wg.Add(1)
		go func(s string) {
			defer wg.Done()
			r, _, _, err := register(ctx, s)
			if err != nil {
				many.add(err.Error())
				return
			}
			defer r.CloseNow()
			if err := send(ctx, r, frame{"cmd": "report", "id": post, "reason": "scam"}); err != nil {
				many.add("write_error")
				return
			}
			for {
				f, err := read(ctx, r)
				if err != nil {
					many.add(closeCode(err))
					return
				}
				if f["cmd"] == "report_ack" {
					many.add(fmt.Sprintf("%v/%v", f["result"], f["reason"]))
					return
				}
			}
		}(s)
	}
	wg.Wait()
	return fmt.Sprintf("post=%v flood: frames_written=%d seen=[%s]; one report from each of %d addresses: [%s]",
		post, sent, cs.String(), len(srcs), many.String())
}

// publishOne publishes one post titled title on c and returns its id.
func publishOne(ctx context.Context, c *websocket.Conn, title string, photos ...string) (any, error) {
	m := map[string]any{"title": title}
	if len(photos) > 0 {
		m["images"] = photos
	}
	body, _ := json.Marshal(m)
	if err := send(ctx, c, frame{"cmd": "publish", "items": []any{frame{"body": string(body),
		"to": []any{[]any{[]any{0, 0, 0}}, []any{[]any{0, 0, 0}}}, "features": 0, "range_values": []any{}}}}); err != nil {
		return nil, err
	}
	for {
		f, err := read(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("publish: %s", closeCode(err))
		}
		if f["cmd"] != "publish_ack" {
			continue
		}
		if f["result"] != "ok" {
			return nil, fmt.Errorf("publish_%v", f["reason"])
		}
		if items, ok := f["items"].([]any); ok && len(items) > 0 {
			if it, ok := items[0].(map[string]any); ok && it["id"] != nil {
				return it["id"], nil
			}
		}
		if f["id"] != nil {
			return f["id"], nil
		}
		return nil, fmt.Errorf("no post id in %v", f)
	}
}

// noticeme: registers a user that takes notices ("notices":true),
// publishes a post and says its id on stderr ("posted ID"), then reads
// for -d: the tour removes the post with a reason meanwhile (occase
// moderate remove --reason) and reads what the author was told.
func noticeme() string {
	from := strings.Split(*src, ",")[0]
	ctx, cancel := context.WithTimeout(context.Background(), *dur+15*time.Second)
	defer cancel()
	c, err := dial(ctx, from)
	if err != nil {
		return "setup failed: " + err.Error()
	}
	defer c.CloseNow()
	if err := send(ctx, c, frame{"cmd": "register", "notices": true}); err != nil {
		return "setup failed: " + err.Error()
	}
	for {
		f, err := read(ctx, c)
		if err != nil {
			return "setup failed: register: " + closeCode(err)
		}
		if f["cmd"] == "register_ack" {
			if f["result"] != "ok" {
				return fmt.Sprintf("setup failed: register_%v", f["reason"])
			}
			break
		}
	}
	post, err := publishOne(ctx, c, "a listing the moderators remove")
	if err != nil {
		return "setup failed: " + err.Error()
	}
	fmt.Fprintln(os.Stderr, "posted", post)
	hctx, hcancel := context.WithTimeout(ctx, *dur)
	defer hcancel()
	for {
		f, err := read(hctx, c)
		if err != nil {
			return fmt.Sprintf("post=%v no notice before %s", post, closeCode(err))
		}
		if f["cmd"] == "notice" {
			return fmt.Sprintf("post=%v notice: kind=%v post=%v reason=%v note=%q title=%q", post, f["kind"], f["post"], f["reason"], f["note"], f["title"])
		}
	}
}

// banme: registers a user, says its id on stderr at once ("registered
// ID"), holds the connection for -d or until the server closes it, then
// logs in again with the same credentials: the tour bans the user
// meanwhile (occase moderate ban) and reads how both ended.
func banme() string {
	from := strings.Split(*src, ",")[0]
	ctx, cancel := context.WithTimeout(context.Background(), *dur+15*time.Second)
	defer cancel()
	c, id, pw, err := register(ctx, from)
	if err != nil {
		return "setup failed: " + err.Error()
	}
	fmt.Fprintln(os.Stderr, "registered", id)
	hctx, hcancel := context.WithTimeout(ctx, *dur)
	var held string
	for {
		if _, err := read(hctx, c); err != nil {
			held = closeCode(err)
			break
		}
	}
	hcancel()
	c.CloseNow()
	again := "login_ok"
	if c2, err := login(ctx, from, id, pw); err != nil {
		again = err.Error()
	} else {
		rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := read(rctx, c2)
		rcancel()
		again += ", then " + closeCode(err)
		c2.CloseNow()
	}
	return fmt.Sprintf("user=%s live_session=%s login_again=%s", id, held, again)
}

// tally reads c until it fails, adding to cs each frame as
// "<prefix><cmd>/<field>/<reason>" and, prefixed too, the way the
// connection ended; the channel closes when it stops.
func tally(ctx context.Context, c *websocket.Conn, cs *counts, prefix, field string) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			f, err := read(ctx, c)
			if err != nil {
				cs.add(prefix + closeCode(err))
				return
			}
			cs.add(fmt.Sprintf("%s%v/%v/%v", prefix, f["cmd"], f[field], f["reason"]))
		}
	}()
	return done
}

// banstorm: -n users registered per -src address are banned, one after
// the other, through the moderation API, then the list of bans read from
// its end, then all unbanned; the times per call tell whether a ban's work
// on the list stays bounded as the list grows.
func banstorm() string {
	au, err := url.Parse(*admin)
	if err != nil || !loopback(au.Hostname()) {
		return "setup failed: -admin must be a loopback URL"
	}
	tok, err := os.ReadFile(*tokf)
	if err != nil {
		return "setup failed: " + err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dur+10*time.Minute)
	defer cancel()
	var ids []string
	for _, s := range strings.Split(*src, ",") {
		for range *n {
			c, id, _, err := register(ctx, s)
			if err != nil {
				return "setup failed: " + err.Error()
			}
			c.CloseNow()
			ids = append(ids, id)
		}
	}
	call := func(method, path string) (int, []byte, time.Duration) {
		req, _ := http.NewRequestWithContext(ctx, method, *admin+path, nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		t0 := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, time.Since(t0)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			k, err := resp.Body.Read(buf)
			b.Write(buf[:k])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, []byte(b.String()), time.Since(t0)
	}
	// stats: the median and the slowest of the first and last tenth.
	stats := func(ds []time.Duration) string {
		k := max(len(ds)/10, 1)
		med := func(x []time.Duration) time.Duration {
			y := append([]time.Duration(nil), x...)
			sort.Slice(y, func(i, j int) bool { return y[i] < y[j] })
			return y[len(y)/2]
		}
		return fmt.Sprintf("first %d median %v, last %d median %v", k, med(ds[:k]).Round(time.Microsecond), k, med(ds[len(ds)-k:]).Round(time.Microsecond))
	}
	var cs counts
	var bans, unbans []time.Duration
	for _, id := range ids {
		code, _, d := call("POST", "/admin/v1/users/"+id+"/ban")
		cs.add(fmt.Sprintf("ban_%d", code))
		bans = append(bans, d)
	}
	code, page, d := call("GET", fmt.Sprintf("/admin/v1/bans?offset=%d&limit=1000", max(len(ids)-1000, 0)))
	var p struct{ Total, Cleaned int }
	json.Unmarshal(page, &p)
	listing := fmt.Sprintf("list_%d total=%d cleaned=%d in %v", code, p.Total, p.Cleaned, d.Round(time.Microsecond))
	for _, id := range ids {
		code, _, d := call("POST", "/admin/v1/users/"+id+"/unban")
		cs.add(fmt.Sprintf("unban_%d", code))
		unbans = append(unbans, d)
	}
	_, page, _ = call("GET", "/admin/v1/bans?limit=1")
	json.Unmarshal(page, &p)
	return fmt.Sprintf("users=%d %s; bans: %s; %s; unbans: %s; total after=%d", len(ids), cs.String(), stats(bans), listing, stats(unbans), p.Total)
}

// evidence: a seller publishes a listing that five users report (the
// tour's nodes hide it at five counted reporters); the seller deletes it
// and publishes again at once, then says "deleted ID" on stderr and
// tries to publish once a second for -d: the tour looks at the review
// queue and dismisses the entry meanwhile. It reports the five report
// acks, the delete's ack, the publishes refused and the one accepted.
func evidence() string {
	srcs := strings.Split(*src, ",")
	ctx, cancel := context.WithTimeout(context.Background(), *dur+30*time.Second)
	defer cancel()
	s, _, _, err := register(ctx, srcs[0])
	if err != nil {
		return "setup failed: " + err.Error()
	}
	defer s.CloseNow()
	photo, err := uploadPhoto(ctx, s)
	if err != nil {
		return "setup failed: " + err.Error()
	}
	post, err := publishOne(ctx, s, "a listing its seller deletes while reported", photo)
	if err != nil {
		return "setup failed: " + err.Error()
	}
	photos := []string{"published " + getPhoto(ctx, photo)}
	var acks counts
	for i := range 5 {
		r, _, _, err := register(ctx, srcs[(i+1)%len(srcs)])
		if err != nil {
			acks.add(err.Error())
			continue
		}
		if err := send(ctx, r, frame{"cmd": "report", "id": post, "reason": "scam"}); err != nil {
			acks.add("write_error")
		}
		for {
			f, err := read(ctx, r)
			if err != nil {
				acks.add(closeCode(err))
				break
			}
			if f["cmd"] == "report_ack" {
				acks.add(fmt.Sprintf("%v/%v", f["result"], f["reason"]))
				break
			}
		}
		r.CloseNow()
	}
	if err := send(ctx, s, frame{"cmd": "delete", "id": post}); err != nil {
		return "delete failed: " + err.Error()
	}
	del := ""
	for del == "" {
		f, err := read(ctx, s)
		if err != nil {
			return "delete failed: " + closeCode(err)
		}
		if f["cmd"] == "delete_ack" {
			del = fmt.Sprintf("%v/%v", f["result"], f["reason"])
		}
	}
	// The img node learns of the hide through Redis, a moment after the
	// ack: wait for the refusal (at most 5 s).
	photos = append(photos, "deleted "+awaitPhoto(ctx, photo, "404 hidden"))
	fmt.Fprintln(os.Stderr, "deleted", post)
	var refused counts
	accepted := "none before -d"
	wctx, wcancel := context.WithTimeout(ctx, *dur)
	defer wcancel()
	for wctx.Err() == nil {
		id, err := publishOne(wctx, s, "the same listing again")
		if err == nil {
			accepted = fmt.Sprintf("post %v after %d refusals", id, refused.total())
			break
		}
		refused.add(err.Error())
		select {
		case <-wctx.Done():
		case <-time.After(time.Second):
		}
	}
	photos = append(photos, "reviewed "+awaitPhoto(ctx, photo, "404 not_found"))
	return fmt.Sprintf("post=%v reports=[%s] delete=%s publishes refused=[%s] accepted=%s; its photo: %s", post, acks.String(), del,
		refused.String(), accepted, strings.Join(photos, ", "))
}

// uploadPhoto asks c's node for a file name and uploads a small JPEG
// under it through the same front (the balancer routes image paths to
// the img nodes); it returns the photo's path as a post links it.
func uploadPhoto(ctx context.Context, c *websocket.Conn) (string, error) {
	if err := send(ctx, c, frame{"cmd": "filenames"}); err != nil {
		return "", err
	}
	var name string
	for name == "" {
		f, err := read(ctx, c)
		if err != nil {
			return "", fmt.Errorf("filenames: %s", closeCode(err))
		}
		if f["cmd"] != "filenames_ack" {
			continue
		}
		names, ok := f["names"].([]any)
		if !ok || len(names) == 0 {
			return "", fmt.Errorf("filenames_%v", f["reason"])
		}
		name = fmt.Sprint(names[0])
	}
	img := image.NewRGBA(image.Rect(0, 0, 32, 24))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7)
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		return "", err
	}
	path := name + ".jpg"
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, httpBase()+"/"+path, &buf)
	req.Header.Set("Content-Type", "image/jpeg")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("upload: %s", res.Status)
	}
	return path, nil
}

// getPhoto fetches a photo through the front and says how it was
// answered: the status and, for a refusal, its reason.
func getPhoto(ctx context.Context, path string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, httpBase()+"/"+path, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusOK {
		return "200"
	}
	b := make([]byte, 64)
	k, _ := res.Body.Read(b)
	return fmt.Sprintf("%d %s", res.StatusCode, strings.TrimSpace(string(b[:k])))
}

// httpBase is the origin of the photos: -img, or the http origin of -url.
func httpBase() string {
	if *imgURL != "" {
		return strings.TrimSuffix(*imgURL, "/")
	}
	u, _ := url.Parse(*wsURL)
	return "http://" + u.Host
}

// awaitPhoto polls getPhoto for at most 5 s until it answers want, and
// says what it answered last.
func awaitPhoto(ctx context.Context, path, want string) string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := getPhoto(ctx, path)
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}
