package bench

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/wire"
)

// attacker runs the clients of one kind of attack. Every client stops when
// ctx ends (the attack phase is over), and every loop is paced by Rate or
// by the server's answers, so that the bench never becomes unbounded
// itself.
type attacker struct {
	r    *run
	cfg  Config
	st   *attackStats
	pool *addrPool
	next atomic.Uint64 // rotating index into pool
}

// maxAttackOps bounds what one hostile client does in a run.
const maxAttackOps = 10_000_000

func (a *attacker) addr() net.Addr { return a.pool.tcp(int(a.next.Add(1))) }

func (a *attacker) url(i int) string { return a.cfg.URLs[i%len(a.cfg.URLs)] }

// rate is the kind's operations per second per client (0: unpaced).
func (a *attacker) rate() float64 {
	if r, ok := a.cfg.Abuse.Rates[a.st.kind]; ok {
		return r
	}
	if a.st.kind == AttackFlood || a.st.kind == AttackFields {
		return 0 // a flood writes as fast as it can unless given its own rate
	}
	return a.cfg.Abuse.Rate
}

// pace waits until the next operation is due under the kind's rate (none:
// at once); false when ctx ended.
func (a *attacker) pace(ctx context.Context, next *time.Time) bool {
	if ctx.Err() != nil {
		return false
	}
	rate := a.rate()
	if rate <= 0 {
		return true
	}
	*next = next.Add(time.Duration(float64(time.Second) / rate))
	if d := time.Until(*next); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// backoff waits a little before a closed client comes back.
func backoff(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (a *attacker) run(ctx context.Context, c int) {
	switch a.st.kind {
	case AttackFlood, AttackFields:
		a.flood(ctx, c)
	case AttackSubscribe:
		a.subscribe(ctx, c)
	case AttackRegister:
		a.register(ctx, c)
	case AttackPublish:
		a.publish(ctx, c)
	case AttackUpload:
		a.upload(ctx, c)
	case AttackScan:
		a.scan(ctx, c)
	}
}

// session is one logged-in hostile connection: registered once from the
// client's own address, then logged in again after each close.
type session struct {
	a      *attacker
	c      int
	acct   account
	ws     *websocket.Conn
	opened time.Time
}

// connect registers (first time) or logs in again; false when ctx ended.
func (s *session) connect(ctx context.Context) bool {
	for ctx.Err() == nil {
		var ws *websocket.Conn
		var err error
		if s.acct.id == "" {
			ws, s.acct, err = registerFrom(ctx, s.a.url(s.c), s.a.pool.tcp(s.c))
		} else {
			ws, err = loginFrom(ctx, s.a.url(s.c), s.acct, s.a.pool.tcp(s.c))
		}
		if err == nil {
			ws.SetReadLimit(64 << 20)
			s.ws, s.opened = ws, time.Now()
			return true
		}
		s.a.st.result("login_" + reasonOf(err))
		if !backoff(ctx, 200*time.Millisecond) {
			return false
		}
	}
	return false
}

// readAll reads what the server sends on s.ws, counting replies whose cmd
// is in replies, until the connection ends; it records how it ended.
func (s *session) readAll(ctx context.Context, onReply func(*wire.Request)) {
	for {
		_, b, err := s.ws.Read(ctx)
		if err != nil {
			s.a.st.closed(ctx, err, time.Since(s.opened))
			return
		}
		s.a.st.recv.Add(uint64(len(b)))
		req, err := wire.ParseRequest(b)
		if err != nil {
			s.a.st.result("unreadable_frame")
			continue
		}
		onReply(req)
	}
}

// manyFields is a chat message of about 16 KB with about 2,000 members,
// the frame whose members cost the server quadratic time to process.
func manyFields(to string) []byte {
	f := []byte(`{"cmd":"message","type":"chat","to":`)
	f = wire.AppendString(f, to)
	f = append(f, `,"id":1,"post_id":1,"is_sender_post":false`...)
	for i := 0; len(f) < 16_000; i++ {
		// "f" first, so that no name is one the protocol knows ("to",
		// "id") and the frame stays well formed.
		f = append(f, `,"f`...)
		f = strconv.AppendInt(f, int64(i), 36)
		f = append(f, `":0`...)
	}
	return append(f, '}')
}

// flood writes chat frames to itself as fast as the connection takes them,
// and reads every reply (ok, rate_limited, ...) and message.
func (a *attacker) flood(ctx context.Context, c int) {
	s := &session{a: a, c: c}
	for s.connect(ctx) {
		var frame []byte
		if a.st.kind == AttackFields {
			frame = manyFields(s.acct.id)
		} else {
			frame = []byte(`{"cmd":"message","type":"chat","to":` + strconv.Quote(s.acct.id) + `,"id":1,"post_id":1,"is_sender_post":false,"msg":"flood"}`)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.readAll(ctx, func(req *wire.Request) {
				if typ, _ := wire.String(req.Get("type")); req.Cmd == "message" && typ != "server_ack" {
					a.st.result("delivered_to_self")
					return
				}
				a.st.reply(req)
			})
		}()
		next := time.Now()
		for ops := 0; ops < maxAttackOps && a.pace(ctx, &next); ops++ {
			if err := s.ws.Write(ctx, websocket.MessageText, frame); err != nil {
				break
			}
			a.st.ops.Add(1)
			a.st.bytes.Add(uint64(len(frame)))
		}
		s.ws.CloseNow()
		<-done
		if !backoff(ctx, 100*time.Millisecond) {
			return
		}
	}
}

// subscribe asks for the stored posts over and over, one subscribe after
// each subscribe_ack: every other one for everything (the catch-up is as
// large as --max-catchup allows), the others with a feature no post has
// (nothing to send, the whole index to walk).
func (a *attacker) subscribe(ctx context.Context, c int) {
	s := &session{a: a, c: c}
	frames := [][]byte{
		[]byte(`{"cmd":"subscribe","channels":[[],[]],"any_of_features":0,"last_post_id":0}`),
		[]byte(`{"cmd":"subscribe","channels":[[],[]],"any_of_features":4611686018427387904,"last_post_id":0}`),
	}
	for s.connect(ctx) {
		acks := make(chan struct{}, 1)
		done := make(chan struct{})
		var sentAt atomic.Int64
		go func() {
			defer close(done)
			s.readAll(ctx, func(req *wire.Request) {
				switch req.Cmd {
				case "post":
					a.st.result("post_frames")
				case "subscribe_ack":
					a.st.latency.Record(time.Duration(time.Now().UnixNano() - sentAt.Load()))
					a.st.reply(req)
					select {
					case acks <- struct{}{}:
					default:
					}
				default:
					a.st.reply(req)
				}
			})
		}()
		next := time.Now()
	loop:
		for ops := 0; ops < maxAttackOps && a.pace(ctx, &next); ops++ {
			f := frames[ops%2]
			sentAt.Store(time.Now().UnixNano())
			if err := s.ws.Write(ctx, websocket.MessageText, f); err != nil {
				break
			}
			a.st.ops.Add(1)
			a.st.bytes.Add(uint64(len(f)))
			select {
			case <-acks:
			case <-done:
				break loop
			case <-ctx.Done():
				break loop
			}
		}
		s.ws.CloseNow()
		<-done
		if !backoff(ctx, 100*time.Millisecond) {
			return
		}
	}
}

// register opens a connection from the next address of the pool, sends
// register, counts the answer and closes: accounts created from many
// addresses.
func (a *attacker) register(ctx context.Context, c int) {
	next := time.Now()
	for ops := 0; ops < maxAttackOps && a.pace(ctx, &next); ops++ {
		t0 := time.Now()
		ws, _, err := registerFrom(ctx, a.url(c+ops), a.addr())
		a.st.ops.Add(1)
		if ctx.Err() != nil {
			if ws != nil {
				ws.CloseNow()
			}
			return
		}
		a.st.latency.Record(time.Since(t0))
		if err != nil {
			a.st.result(reasonOf(err))
			continue
		}
		a.st.result("ok")
		ws.CloseNow()
	}
}

// publish registers an account from the next address, publishes until
// the account's quota is spent, then takes another: posts from many
// accounts and addresses.
func (a *attacker) publish(ctx context.Context, c int) {
	body := padding(2000)
	next := time.Now()
	ops := 0
	for ctx.Err() == nil && ops < maxAttackOps {
		ws, _, err := registerFrom(ctx, a.url(c+ops), a.addr())
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.st.result("register_" + reasonOf(err))
			if !backoff(ctx, 50*time.Millisecond) {
				return
			}
			continue
		}
		opened := time.Now()
		for ; ops < maxAttackOps && a.pace(ctx, &next); ops++ {
			f := []byte(`{"cmd":"publish","items":[{"body":"` + body + `","to":[[[0,0,0]],[[0,0,0]]],"features":1,"range_values":[]}]}`)
			t0 := time.Now()
			_, err := request(ctx, ws, f, "publish_ack")
			a.st.ops.Add(1)
			a.st.bytes.Add(uint64(len(f)))
			if ctx.Err() != nil {
				break
			}
			a.st.latency.Record(time.Since(t0))
			if err == nil {
				a.st.result("ok")
				continue
			}
			if websocket.CloseStatus(err) != -1 {
				a.st.closed(ctx, err, time.Since(opened))
			} else {
				a.st.result(reasonOf(err))
			}
			break // quota spent, refused or closed: another account
		}
		ws.CloseNow()
	}
}

// scan sends GET /api/posts with filters that match no post (the whole
// index is walked for an empty answer) and GETs of random paths, each
// from the next address of the pool.
func (a *attacker) scan(ctx context.Context, c int) {
	client := a.httpClient()
	base := a.cfg.Abuse.HTTPURL
	next := time.Now()
	for ops := 0; ops < maxAttackOps && a.pace(ctx, &next); ops++ {
		var path string
		switch ops % 4 {
		case 0:
			path = "/api/posts?features=4611686018427387904"
		case 1:
			path = "/api/posts?count=1&product=" + strconv.FormatUint(rand.Uint64()>>20, 10)
		case 2:
			path = "/api/posts?location=" + strconv.FormatUint(rand.Uint64()>>20, 10) + "&limit=100"
		default:
			path = fmt.Sprintf("/%x/%x", rand.Uint64(), rand.Uint64())
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return
		}
		t0 := time.Now()
		resp, err := client.Do(req)
		a.st.ops.Add(1)
		if ctx.Err() != nil {
			if err == nil {
				resp.Body.Close()
			}
			return
		}
		if err != nil {
			a.st.result("http_" + closeKey(err))
			continue
		}
		n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, 16<<20))
		resp.Body.Close()
		a.st.recv.Add(uint64(n))
		a.st.latency.Record(time.Since(t0))
		a.st.result("http_" + strconv.Itoa(resp.StatusCode))
	}
}

// httpClient dials each connection from the next address of the pool.
func (a *attacker) httpClient() *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: a.addr(), Timeout: dialTimeout}
		return d.DialContext(ctx, network, addr)
	}
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil, DialContext: dial}}
}

// upload holds a logged-in connection to ask for upload names, then
// POSTs to the img node, one upload at a time, a body that declares 1 MB
// and sends one byte every Trickle: the slow upload that holds a slot.
func (a *attacker) upload(ctx context.Context, c int) {
	s := &session{a: a, c: c}
	if !s.connect(ctx) {
		return
	}
	defer s.ws.CloseNow()
	from := a.pool.tcp(c)
	if a.cfg.Abuse.UploadNetworks {
		from = newAddrPool(a.pool.block, maxPoolAddrs).tcp(c%256*254 + c/256)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil,
		DialContext: (&net.Dialer{LocalAddr: from, Timeout: dialTimeout}).DialContext}}
	var names []string
	next := time.Now()
	for ops := 0; ops < maxAttackOps && a.pace(ctx, &next); ops++ {
		for len(names) == 0 {
			req, err := request(ctx, s.ws, []byte(`{"cmd":"filenames"}`), "filenames_ack")
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				a.st.result("filenames_" + reasonOf(err))
				if websocket.CloseStatus(err) != -1 || strings.Contains(err.Error(), "closed") {
					s.ws.CloseNow()
					if !s.connect(ctx) {
						return
					}
				}
				if !backoff(ctx, time.Second) {
					return
				}
				continue
			}
			a.st.result("filenames_ok")
			wire.EachElement(req.Get("names"), func(v []byte) bool {
				if n, ok := wire.String(v); ok {
					names = append(names, n)
				}
				return true
			})
		}
		name := names[0]
		names = names[1:]
		a.st.ops.Add(1)
		a.slowPost(ctx, client, a.cfg.Abuse.ImgURL+"/"+name+".jpg")
	}
}

// slowPost sends the trickling body and counts the answer: its HTTP status
// and reason, or that the attack ended first.
func (a *attacker) slowPost(ctx context.Context, client *http.Client, url string) {
	const declared = 1_000_000
	pr, pw := io.Pipe()
	go func() {
		// A JPEG's first bytes, then zeros, one byte per Trickle.
		head := []byte{0xff, 0xd8, 0xff}
		t := time.NewTicker(a.cfg.Abuse.Trickle)
		defer t.Stop()
		for i := 0; i < declared; i++ {
			b := byte(0)
			if i < len(head) {
				b = head[i]
			}
			if _, err := pw.Write([]byte{b}); err != nil {
				return
			}
			a.st.bytes.Add(1)
			select {
			case <-ctx.Done():
				pw.CloseWithError(ctx.Err())
				return
			case <-t.C:
			}
		}
		pw.Close()
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, pr)
	if err != nil {
		pr.Close()
		return
	}
	req.ContentLength = declared
	req.Header.Set("Content-Type", "image/jpeg")
	t0 := time.Now()
	resp, err := client.Do(req)
	pr.Close()
	if ctx.Err() != nil {
		if err == nil {
			resp.Body.Close()
		}
		a.st.result("held_until_attack_end")
		return
	}
	if err != nil {
		a.st.result("http_" + closeKey(err))
		a.st.lifetime.Record(time.Since(t0))
		return
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	resp.Body.Close()
	a.st.lifetime.Record(time.Since(t0))
	key := "http_" + strconv.Itoa(resp.StatusCode)
	if r := strings.TrimSpace(string(b)); r != "" && len(r) < 40 && !strings.ContainsAny(r, " {<") {
		key += "_" + r
	}
	a.st.result(key)
}

// seedPosts publishes n posts from accounts registered each from its own
// address (so that neither the per-address registration limit nor the
// per-account quota stops it), per posts each; it returns how many were
// stored. Subscribe storms and scans then have an index to walk.
func seedPosts(ctx context.Context, r *run, n, per int) int {
	cfg := r.cfg
	pool := newAddrPool(blockSeed, maxPoolAddrs)
	accounts := (n + per - 1) / per
	var stored atomic.Int64
	body := padding(200)
	parallel(ctx, accounts, cfg.Concurrency, func(i int) {
		ws, _, err := registerFrom(ctx, cfg.URLs[i%len(cfg.URLs)], pool.tcp(i))
		if err != nil {
			r.fail("seed_register_" + reasonOf(err))
			return
		}
		defer ws.CloseNow()
		for k := 0; k < per && i*per+k < n; k++ {
			// Spread over a few channels and features, as real posts are.
			f := fmt.Sprintf(`{"cmd":"publish","items":[{"body":"seed %d %s","to":[[[0,0,%d]],[[0,0,%d]]],"features":%d,"range_values":[%d]}]}`,
				i*per+k, body, k%4, i%4, 1<<(k%8), i)
			if _, err := request(ctx, ws, []byte(f), "publish_ack"); err != nil {
				r.fail("seed_publish_" + reasonOf(err))
				return
			}
			stored.Add(1)
		}
	})
	return int(stored.Load())
}

// tinyJPEG is a valid 8x8 JPEG: what a well-behaved app uploads.
func tinyJPEG() []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, image.NewGray(image.Rect(0, 0, 8, 8)), nil); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// uploadProbe is a legitimate app that uploads a small image every second
// (asking for names as it needs them) from its own address, until ctx
// ends: its answers and latency show whether uploads still get through.
func uploadProbe(ctx context.Context, cfg Config, st *attackStats) {
	pool := newAddrPool(blockSeed+1, 1)
	ws, _, err := registerFrom(ctx, cfg.URLs[0], pool.tcp(0))
	if err != nil {
		st.result("register_" + reasonOf(err))
		return
	}
	defer ws.CloseNow()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil,
		DialContext: (&net.Dialer{LocalAddr: pool.tcp(0), Timeout: dialTimeout}).DialContext}}
	img := tinyJPEG()
	var names []string
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for ctx.Err() == nil {
		if len(names) == 0 {
			req, err := request(ctx, ws, []byte(`{"cmd":"filenames"}`), "filenames_ack")
			if err != nil {
				if ctx.Err() == nil {
					st.result("filenames_" + reasonOf(err))
				}
				return
			}
			wire.EachElement(req.Get("names"), func(v []byte) bool {
				if n, ok := wire.String(v); ok {
					names = append(names, n)
				}
				return true
			})
			if len(names) == 0 {
				return
			}
		}
		name := names[0]
		names = names[1:]
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.Abuse.ImgURL+"/"+name+".jpg", bytes.NewReader(img))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "image/jpeg")
		t0 := time.Now()
		st.ops.Add(1)
		resp, err := client.Do(req)
		if ctx.Err() != nil {
			if err == nil {
				resp.Body.Close()
			}
			st.result("unanswered_at_end")
			return
		}
		st.latency.Record(time.Since(t0))
		if err != nil {
			st.result("http_" + closeKey(err))
		} else {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
			resp.Body.Close()
			st.result("http_" + strconv.Itoa(resp.StatusCode))
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}
