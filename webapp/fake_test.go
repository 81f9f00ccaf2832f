package webapp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/occase/occase/wire"
)

// fakeServer is a small in-memory implementation of PROTOCOL.md (db and img
// roles, one node) used to drive the app in a browser independently of the
// real server's progress. Its state outlives Stop/Start, as Redis does for
// the real one. It is deliberately simple: no quotas, no rate limits.
type fakeServer struct {
	t    *testing.T
	addr string

	mu       sync.Mutex
	srv      *http.Server
	users    map[string]string
	queues   map[string][][]byte
	online   map[string]*fakeConn
	conns    map[*fakeConn]bool
	seq      map[string]int64
	posts    []map[string]any
	images   map[string][]byte
	nextUser int64
	nextPost int64
	wg       sync.WaitGroup

	// Failure injection for the error-path test.
	uploadStatus int    // answer every upload with this status, when not 0
	publishFail  string // fail every publish with this reason, when not ""

	// Issue 15: more failures, and counts to check what the app did.
	publishDetail string   // the detail of publishFail
	uploadBody    string   // the body of uploadStatus's answers
	uploadSeq     []string // answer the next uploads with these, in turn: "410 name_expired", "503 busy 1" (Retry-After), "408 too_slow"
	uploads       int      // upload requests received
	filenames     int      // filenames requests received
	chatFail      string   // fail every chat line (type "chat") with this reason, when not ""
	chatDetail    string
	signupToken   string        // register only with this signup_token, when not ""
	slow          time.Duration // answer /api/menu and /api/posts this late (a slow link)

	// chatLate: the next chatLate chat lines are stored and delivered as
	// usual but answered fail unavailable, as by a node whose store call
	// timed out after Redis ran it (docs/protocol.md "Safe chat resends").
	chatLate int
	// chatDrop: the next chatDrop chat lines are stored and delivered, and
	// then the sender's connection closes before their server_ack.
	chatDrop int

	// PROTOCOL.md 1.1 §2: the data epoch named in register_ack and
	// login_ack ok, when not "" (an older server sends none); epochOnFail
	// names it in a failed login_ack too.
	epoch       string
	epochOnFail bool

	// Issue 15's server API (fake15_test.go).
	maxScan  int      // a price order sorts at most this many matches ("partial"), when not 0
	searches []string // "q|sort|status|before" of each search read
	changes  []string // update/set_status/renew commands received
	renewAt  int64    // refuse every renew as too early, naming this time, when not 0

	// Moderation (docs/protocol.md, report and banned accounts).
	reports    []string        // every report frame received, as sent
	reportFail string          // refuse every report with this reason, when not ""
	banned     map[string]bool // accounts whose login is refused with "banned" and close 4008
	dials      int             // WebSocket connections accepted
	notes      fakeNotices     // notices (notices_test.go)
}

// closeBanned is the close code of a banned account (docs/protocol.md).
const closeBanned websocket.StatusCode = 4008

// reportReasons are the reasons a report may give.
var reportReasons = map[string]bool{"spam": true, "scam": true, "prohibited": true, "offensive": true, "other": true}

type fakeConn struct {
	ws   *websocket.Conn
	user string
	sub  *fakeSub
	wmu  sync.Mutex
}

type fakeSub struct {
	locs, prods map[uint64]bool
	features    uint64
	ranges      []float64
	deletions   bool // PROTOCOL.md 1.1 §4: post_deleted wanted
}

const fakeMenu = `{"locations":{"depth":3,"children":[
 {"name":"Germany","children":[{"name":"Bavaria","children":[{"name":"Munich"},{"name":"Nuremberg"}]},
                               {"name":"Berlin","children":[{"name":"Berlin"}]}]},
 {"name":"Austria","children":[{"name":"Vienna","children":[{"name":"Vienna"}]}]}]},
"products":{"depth":3,"children":[
 {"name":"Bicycles","children":[{"name":"City","children":[{"name":"Dutch"},{"name":"Folding"}]}]},
 {"name":"Cars","children":[{"name":"BMW","children":[{"name":"3 Series"}]}]}]}}`

func newFakeServer(t *testing.T) *fakeServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{
		t: t, addr: ln.Addr().String(),
		users: map[string]string{}, queues: map[string][][]byte{}, online: map[string]*fakeConn{},
		conns: map[*fakeConn]bool{}, seq: map[string]int64{}, images: map[string][]byte{}, banned: map[string]bool{},
		nextUser: 1, nextPost: 1,
	}
	s.serve(ln)
	t.Cleanup(func() { s.Stop(t) })
	return s
}

func (s *fakeServer) URL() string { return "http://" + s.addr }

func (s *fakeServer) serve(ln net.Listener) {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = srv.Serve(ln)
	}()
}

// Stop closes every connection with 1001 and the listener, as a server
// going away does.
func (s *fakeServer) Stop(t *testing.T) {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	conns := s.conns
	s.conns = map[*fakeConn]bool{}
	s.online = map[string]*fakeConn{}
	s.mu.Unlock()
	if srv == nil {
		return
	}
	_ = srv.Close()
	for c := range conns {
		_ = c.ws.Close(websocket.StatusGoingAway, "restart")
	}
	s.wg.Wait()
}

// LoseData models a Redis without persistence restarted under the server:
// every account, queue and post is gone, ids start again at 1, and the
// data epoch becomes epoch. Connections are closed as by a restart.
func (s *fakeServer) LoseData(t *testing.T, epoch string) {
	s.Stop(t)
	s.mu.Lock()
	s.users, s.queues, s.seq = map[string]string{}, map[string][][]byte{}, map[string]int64{}
	s.posts, s.nextUser, s.nextPost = nil, 1, 1
	s.epoch = epoch
	s.mu.Unlock()
	s.Start(t)
}

// Start listens again on the same address.
func (s *fakeServer) Start(t *testing.T) {
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // the port is released asynchronously
	}
	if err != nil {
		t.Fatalf("relisten on %s: %v", s.addr, err)
	}
	s.serve(ln)
}

var imgPath = regexp.MustCompile(`^/[0-9a-f]{32}/[A-Za-z0-9+-]{9}\.(jpg|jpeg|png|webp)$`)

func (s *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		s.mu.Lock()
		d := s.slow
		s.mu.Unlock()
		time.Sleep(d) // a slow link, not synchronisation
	}
	switch {
	case (r.URL.Path == "/" || r.URL.Path == "/ws") && strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
		s.websocket(w, r)
	case r.URL.Path == "/api/posts":
		s.listPosts(w, r)
	case strings.HasPrefix(r.URL.Path, "/api/posts/"):
		s.onePost(w, r)
	case r.URL.Path == "/api/menu":
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(fakeMenu))
	case imgPath.MatchString(r.URL.Path):
		s.image(w, r)
	default:
		Handler().ServeHTTP(w, r)
	}
}

// listPosts is GET /api/posts (docs/http-api.md): matching posts newest
// first, paged with before/next.
func (s *fakeServer) listPosts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sub := &fakeSub{locs: map[uint64]bool{}, prods: map[uint64]bool{}}
	for key, set := range map[string]map[uint64]bool{"location": sub.locs, "product": sub.prods} {
		for _, v := range strings.Split(q.Get(key), ",") {
			if n, err := strconv.ParseUint(v, 10, 64); err == nil {
				set[n] = true
			}
		}
	}
	sub.features, _ = strconv.ParseUint(q.Get("features"), 10, 64)
	for _, v := range strings.Split(q.Get("ranges"), ",") {
		if x, err := strconv.ParseFloat(v, 64); err == nil {
			sub.ranges = append(sub.ranges, x)
		}
	}
	before := uint64(1<<64 - 1)
	if b, err := strconv.ParseUint(q.Get("before"), 10, 64); err == nil {
		before = b
	}
	limit := 20
	if l, err := strconv.Atoi(q.Get("limit")); err == nil && l > 0 && l <= 100 {
		limit = l
	}
	if q.Get("q") != "" || q.Get("sort") != "" || q.Get("status") != "" {
		s.mu.Lock()
		b, _ := json.Marshal(s.searchPosts(q, sub, limit))
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
		return
	}
	s.mu.Lock()
	out := []any{}
	next := ""
	for i := len(s.posts) - 1; i >= 0; i-- {
		p := s.posts[i]
		if u64(p["id"]) >= before || !sub.match(p) {
			continue
		}
		if len(out) == limit {
			next = fmt.Sprint(u64(out[len(out)-1].(map[string]any)["id"]))
			break
		}
		out = append(out, p)
	}
	body := map[string]any{"posts": out}
	if next != "" {
		body["next"] = next
	}
	b, _ := json.Marshal(body)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// onePost is GET /api/posts/{id}: the post, or 404.
func (s *fakeServer) onePost(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(strings.TrimPrefix(r.URL.Path, "/api/posts/"), 10, 64)
	if err != nil {
		http.Error(w, "bad id", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	var b []byte
	for _, p := range s.posts {
		if u64(p["id"]) == id {
			b, _ = json.Marshal(p)
		}
	}
	s.mu.Unlock()
	if b == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// closeAll closes every connection with code (4006, ...).
func (s *fakeServer) closeAll(code websocket.StatusCode, reason string) {
	s.mu.Lock()
	var cs []*fakeConn
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		_ = c.ws.Close(code, reason)
	}
}

func (s *fakeServer) image(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Method {
	case http.MethodPost:
		s.uploads++
		if len(s.uploadSeq) > 0 {
			f := strings.Fields(s.uploadSeq[0])
			s.uploadSeq = s.uploadSeq[1:]
			code, _ := strconv.Atoi(f[0])
			if len(f) > 2 {
				w.Header().Set("Retry-After", f[2])
			}
			http.Error(w, f[1], code)
			return
		}
		if s.uploadStatus != 0 {
			body := "injected"
			if s.uploadBody != "" {
				body = s.uploadBody
			}
			http.Error(w, body, s.uploadStatus)
			return
		}
		var b bytes.Buffer
		if _, err := b.ReadFrom(http.MaxBytesReader(w, r.Body, 10<<20)); err != nil {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		if !strings.HasPrefix(http.DetectContentType(b.Bytes()), "image/") {
			http.Error(w, "not an image", http.StatusUnsupportedMediaType)
			return
		}
		if _, ok := s.images[r.URL.Path]; ok {
			http.Error(w, "exists", http.StatusConflict)
			return
		}
		s.images[r.URL.Path] = b.Bytes()
		w.WriteHeader(http.StatusCreated)
	case http.MethodGet:
		b, ok := s.images[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", http.DetectContentType(b))
		_, _ = w.Write(b)
	default:
		http.Error(w, "method", http.StatusMethodNotAllowed)
	}
}

func (s *fakeServer) websocket(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	c := &fakeConn{ws: ws}
	s.mu.Lock()
	if s.srv == nil {
		s.mu.Unlock()
		_ = ws.Close(websocket.StatusGoingAway, "stopping")
		return
	}
	s.conns[c] = true
	s.dials++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		if s.online[c.user] == c {
			delete(s.online, c.user)
		}
		s.mu.Unlock()
		_ = ws.CloseNow()
	}()
	ctx := context.Background()
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			return
		}
		var f map[string]any
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if d.Decode(&f) != nil {
			s.fail(c, "error", wire.BadRequest)
			_ = ws.Close(websocket.StatusPolicyViolation, "bad request")
			return
		}
		if f["cmd"] == "report" {
			s.mu.Lock()
			s.reports = append(s.reports, string(b))
			s.mu.Unlock()
		}
		if !s.handle(c, f) {
			return
		}
	}
}

func (c *fakeConn) write(v any) {
	b, _ := json.Marshal(v)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.ws.Write(ctx, websocket.MessageText, b)
}

func (s *fakeServer) fail(c *fakeConn, cmd, reason string) {
	c.write(map[string]any{"cmd": cmd, "result": "fail", "reason": reason})
}

func randName(n int) string {
	const abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = abc[int(b[i])%len(abc)]
	}
	return string(b)
}

// handle runs one request; false closes the connection.
func (s *fakeServer) handle(c *fakeConn, f map[string]any) bool {
	cmd, _ := f["cmd"].(string)
	if c.user == "" && cmd != "register" && cmd != "login" {
		s.fail(c, "error", wire.NotLoggedIn)
		_ = c.ws.Close(websocket.StatusPolicyViolation, "not logged in")
		return false
	}
	switch cmd {
	case "register":
		s.mu.Lock()
		if tok, _ := f["signup_token"].(string); s.signupToken != "" && tok != s.signupToken {
			s.mu.Unlock()
			detail := "this server registers only with a signup_token from its sign-up service"
			if tok != "" {
				detail = "not this server's token"
			}
			c.write(map[string]any{"cmd": "register_ack", "result": "fail", "reason": wire.BadToken, "detail": detail})
			return true
		}
		id := strconv.FormatInt(s.nextUser, 10)
		s.nextUser++
		pw := randName(12)
		s.users[id] = pw
		c.user = id
		s.online[id] = c
		s.notes.optIn(c, f)
		ack := map[string]any{"cmd": "register_ack", "result": "ok", "id": id, "password": pw}
		s.withEpoch(ack, true)
		s.mu.Unlock()
		c.write(ack)
	case "login":
		user, _ := f["user"].(string)
		pw, _ := f["password"].(string)
		s.mu.Lock()
		if want, ok := s.users[user]; !ok || want != pw {
			fail := map[string]any{"cmd": "login_ack", "result": "fail", "reason": wire.BadCredentials}
			s.withEpoch(fail, s.epochOnFail)
			s.mu.Unlock()
			c.write(fail)
			_ = c.ws.Close(wire.CloseBadCredentials, "bad credentials")
			return false
		}
		if s.banned[user] {
			s.mu.Unlock()
			c.write(map[string]any{"cmd": "login_ack", "result": "fail", "reason": "banned"})
			_ = c.ws.Close(closeBanned, "banned")
			return false
		}
		old := s.online[user]
		c.user = user
		s.online[user] = c
		q := s.queues[user]
		delete(s.queues, user)
		s.mu.Unlock()
		if old != nil {
			_ = old.ws.Close(wire.CloseReplaced, "replaced")
		}
		ack := map[string]any{"cmd": "login_ack", "result": "ok", "remaining_posts": 5}
		s.mu.Lock()
		s.notes.optIn(c, f)
		if n := len(s.notes.list[user]); n > 0 {
			ack["notices"] = n
		}
		s.withEpoch(ack, true)
		s.mu.Unlock()
		c.write(ack)
		for _, m := range q {
			c.write(json.RawMessage(m))
		}
	case "subscribe":
		sub := &fakeSub{locs: map[uint64]bool{}, prods: map[uint64]bool{}}
		if ch, ok := f["channels"].([]any); ok && len(ch) == 2 {
			for i, set := range []map[uint64]bool{sub.locs, sub.prods} {
				l, _ := ch[i].([]any)
				for _, h := range l {
					set[u64(h)] = true
				}
			}
		}
		sub.features = u64(f["any_of_features"])
		sub.deletions = f["deletions"] == true
		if rs, ok := f["ranges"].([]any); ok {
			for _, v := range rs {
				n, _ := v.(json.Number)
				x, _ := n.Float64()
				sub.ranges = append(sub.ranges, x)
			}
		}
		last := u64(f["last_post_id"])
		s.mu.Lock()
		c.sub = sub
		var items []map[string]any
		for _, p := range s.posts {
			if u64(p["id"]) > last && sub.match(p) && len(items) < 100 {
				items = append(items, p) // the catch-up cap, as --max-catchup
			}
		}
		s.mu.Unlock()
		c.write(map[string]any{"cmd": "subscribe_ack", "result": "ok"})
		if len(items) > 0 {
			c.write(map[string]any{"cmd": "post", "items": items})
		}
	case "publish":
		items, _ := f["items"].([]any)
		if len(items) != 1 {
			s.fail(c, "publish_ack", wire.BadRequest)
			return true
		}
		p, _ := items[0].(map[string]any)
		if p == nil {
			s.fail(c, "publish_ack", wire.BadRequest)
			return true
		}
		s.mu.Lock()
		if s.publishFail != "" {
			fail := map[string]any{"cmd": "publish_ack", "result": "fail", "reason": s.publishFail}
			if s.publishDetail != "" {
				fail["detail"] = s.publishDetail
			}
			s.mu.Unlock()
			c.write(fail)
			return true
		}
		id := s.nextPost
		s.nextPost++
		p["id"], p["from"], p["date"] = id, c.user, time.Now().Unix()
		s.posts = append(s.posts, p)
		var subs []*fakeConn
		for o := range s.conns {
			if o.sub != nil && o.sub.match(p) {
				subs = append(subs, o)
			}
		}
		s.mu.Unlock()
		c.write(map[string]any{"cmd": "publish_ack", "result": "ok", "id": id, "date": p["date"]})
		for _, o := range subs {
			o.write(map[string]any{"cmd": "post", "items": []any{p}})
		}
	case "delete":
		id := u64(f["id"])
		s.mu.Lock()
		reason := wire.NotFound
		var subs []*fakeConn
		for i, p := range s.posts {
			if u64(p["id"]) == id {
				reason = wire.NotOwner
				if p["from"] == c.user {
					s.posts = append(s.posts[:i], s.posts[i+1:]...)
					reason = ""
					for o := range s.conns {
						if o.sub != nil && o.sub.deletions && o.sub.match(p) {
							subs = append(subs, o)
						}
					}
				}
				break
			}
		}
		s.mu.Unlock()
		if reason != "" {
			s.fail(c, "delete_ack", reason)
		} else {
			c.write(map[string]any{"cmd": "delete_ack", "result": "ok", "id": id})
			for _, o := range subs {
				o.write(map[string]any{"cmd": "post_deleted", "id": id})
			}
		}
	case "update", "set_status", "renew":
		return s.change(c, cmd, f)
	case "filenames":
		s.mu.Lock()
		s.filenames++
		s.mu.Unlock()
		var names []string
		for range 9 {
			k := make([]byte, 16)
			_, _ = rand.Read(k)
			names = append(names, hex.EncodeToString(k)+"/"+randName(9))
		}
		c.write(map[string]any{"cmd": "filenames_ack", "result": "ok", "names": names})
	case "message":
		to, _ := f["to"].(string)
		s.mu.Lock()
		if _, ok := s.users[to]; !ok {
			s.mu.Unlock()
			c.write(map[string]any{"cmd": "message", "type": "server_ack", "result": "fail", "reason": wire.NotFound})
			return true
		}
		if s.chatFail != "" && f["type"] == "chat" {
			fail := map[string]any{"cmd": "message", "type": "server_ack", "result": "fail", "reason": s.chatFail, "detail": s.chatDetail, "from": to}
			if id, ok := f["id"]; ok {
				fail["ack_id"] = id
			}
			s.mu.Unlock()
			c.write(fail)
			return true
		}
		s.seq[to]++
		f["from"] = c.user
		f["msg_id"] = s.seq[to]
		b, _ := json.Marshal(f)
		peer := s.online[to]
		if peer == nil {
			s.queues[to] = append(s.queues[to], b)
		}
		s.mu.Unlock()
		ack := map[string]any{"cmd": "message", "type": "server_ack", "result": "ok", "from": to, "msg_id": f["msg_id"]}
		s.mu.Lock()
		if s.chatLate > 0 && f["type"] == "chat" {
			s.chatLate--
			ack = map[string]any{"cmd": "message", "type": "server_ack", "result": "fail", "reason": wire.Unavailable, "from": to}
		}
		drop := s.chatDrop > 0 && f["type"] == "chat"
		if drop {
			s.chatDrop--
		}
		s.mu.Unlock()
		if drop {
			if peer != nil {
				peer.write(json.RawMessage(b))
			}
			_ = c.ws.Close(websocket.StatusGoingAway, "gone")
			return false
		}
		if id, ok := f["id"]; ok {
			ack["ack_id"] = id
		}
		if pid, ok := f["post_id"]; ok {
			ack["post_id"] = pid
		}
		if isp, ok := f["is_sender_post"].(bool); ok {
			ack["is_sender_post"] = !isp
		}
		c.write(ack)
		if peer != nil {
			peer.write(json.RawMessage(b))
		}
	case "blocks":
		// Blocking a user: the fake blocks nobody (the real binary's
		// test, block_test.go, covers what a block does).
		c.write(map[string]any{"cmd": "blocks_ack", "result": "ok", "users": []string{}})
	case "block", "unblock":
		user, _ := f["user"].(string)
		c.write(map[string]any{"cmd": cmd + "_ack", "result": "ok", "user": user, "blocks": 0})
	case "report":
		s.report(c, f)
	case "notices", "notices_seen":
		return s.noticesCmd(c, cmd, f)
	case "presence":
		to, _ := f["to"].(string)
		f["from"] = c.user
		s.mu.Lock()
		peer := s.online[to]
		s.mu.Unlock()
		if peer != nil {
			peer.write(f)
		}
	default:
		s.fail(c, "error", wire.BadRequest)
		_ = c.ws.Close(websocket.StatusPolicyViolation, "unknown command")
		return false
	}
	return true
}

// report answers report as docs/protocol.md says: the listing must exist
// and not be the reporter's own, the reason one of five, the text at most
// 280 characters; reporting again is ok.
func (s *fakeServer) report(c *fakeConn, f map[string]any) {
	n, isNum := f["id"].(json.Number)
	id := u64(f["id"])
	reason, _ := f["reason"].(string)
	text, hasText := f["text"]
	str, isStr := text.(string)
	refuse := ""
	switch {
	case !isNum || id == 0 || n.String() != strconv.FormatUint(id, 10):
		refuse = wire.BadRequest
	case !reportReasons[reason]:
		refuse = wire.BadRequest
	case hasText && (!isStr || utf8.RuneCountInString(str) > 280):
		refuse = wire.BadRequest
	}
	s.mu.Lock()
	if refuse == "" {
		refuse = wire.NotFound
		for _, p := range s.posts {
			if u64(p["id"]) == id {
				refuse = ""
				if p["from"] == c.user {
					refuse = wire.BadRequest
				}
			}
		}
	}
	if refuse == "" && s.reportFail != "" {
		refuse = s.reportFail
	}
	s.mu.Unlock()
	if refuse != "" {
		c.write(map[string]any{"cmd": "report_ack", "result": "fail", "reason": refuse, "id": id})
		return
	}
	c.write(map[string]any{"cmd": "report_ack", "result": "ok", "id": id})
}

// ban bans user: its logins are refused, and its live connection is
// closed with 4008, as an operator's ban does.
func (s *fakeServer) ban(user string) {
	s.mu.Lock()
	s.banned[user] = true
	c := s.online[user]
	s.mu.Unlock()
	if c != nil {
		_ = c.ws.Close(closeBanned, "banned")
	}
}

// withEpoch adds the data epoch to an ack when there is one and on says so.
// s.mu is held.
func (s *fakeServer) withEpoch(ack map[string]any, on bool) {
	if on && s.epoch != "" {
		ack["epoch"] = s.epoch
	}
}

func u64(v any) uint64 {
	switch x := v.(type) {
	case json.Number:
		var n uint64
		_ = json.Unmarshal([]byte(x), &n)
		return n
	case int64:
		return uint64(x)
	}
	return 0
}

func codeOf(v any) []uint64 {
	l, _ := v.([]any)
	out := make([]uint64, 0, len(l))
	for _, x := range l {
		out = append(out, u64(x))
	}
	return out
}

func (s *fakeSub) match(p map[string]any) bool {
	to, _ := p["to"].([]any)
	if len(to) != 2 {
		return false
	}
	for i, set := range []map[uint64]bool{s.locs, s.prods} {
		codes, _ := to[i].([]any)
		if len(codes) == 0 {
			return false
		}
		h, err := wire.ChannelHash(codeOf(codes[0]), 3)
		if err != nil {
			return false
		}
		if len(set) > 0 && !set[h] {
			return false
		}
	}
	if s.features != 0 && s.features&u64(p["features"]) == 0 {
		return false
	}
	rv, _ := p["range_values"].([]any)
	for i := 0; i+1 < len(s.ranges) && i/2 < len(rv); i += 2 {
		n, _ := rv[i/2].(json.Number)
		x, _ := n.Float64()
		if x < s.ranges[i] || x > s.ranges[i+1] {
			return false
		}
	}
	return true
}
