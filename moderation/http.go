package moderation

// The moderation API on a node's admin listener (docs/http-api.md
// "Moderation API"): the Service's actions as JSON over HTTP, behind a
// bearer token, and the operator page (page.go). Everything here is
// bounded before the work it causes: failed tokens per client address
// (then 429), request bodies (4 KiB, from Content-Length before reading),
// requests in progress at once, and each request's time.

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Limits of the API.
const (
	// MaxBody is the largest request body read.
	MaxBody = 4 << 10
	// MinTokenLen is the shortest token accepted.
	MinTokenLen = 32
	// AuthFailures failed tokens from one client address within
	// AuthWindow, and its next requests are refused with 429 until the
	// window ends.
	AuthFailures = 10
	AuthWindow   = time.Minute
	// maxTracked bounds the addresses whose failures are counted; past
	// it the addresses not tracked yet share one count.
	maxTracked = 4096
	// maxTrusted bounds the addresses remembered for having sent the
	// right token: they keep a count of their own when the map is full.
	maxTrusted = 64
	// maxInFlight bounds the authenticated requests served at once.
	maxInFlight = 4
	// requestTimeout bounds one request: its body read and its action.
	requestTimeout = 30 * time.Second
)

// Refusal reasons of the HTTP layer (the Service's are in moderation.go).
const (
	ReasonDisabled     = "moderation_disabled"
	ReasonNotOnRole    = "moderation_not_on_this_role"
	ReasonUnauthorized = "unauthorized"
	ReasonThrottled    = "too_many_failures"
	ReasonTooLarge     = "body_too_large"
	ReasonNotFound     = "not_found"
	ReasonBusy         = "busy"
	// ReasonRole: the token's role may read but not act (a viewer's
	// POST).
	ReasonRole = "forbidden_for_role"
)

// status is the HTTP status of each refusal reason.
var status = map[string]int{
	ReasonBadRequest:   http.StatusBadRequest,
	ReasonPostNotFound: http.StatusNotFound,
	ReasonNoReports:    http.StatusNotFound,
	ReasonUserNotFound: http.StatusNotFound,
	ReasonPostsLeft:    http.StatusServiceUnavailable,
	ReasonUnavailable:  http.StatusServiceUnavailable,
	ReasonBanNotListed: http.StatusServiceUnavailable,
	ReasonNotTold:      http.StatusServiceUnavailable,
	ReasonDisabled:     http.StatusNotFound,
	ReasonNotOnRole:    http.StatusNotFound,
	ReasonUnauthorized: http.StatusUnauthorized,
	ReasonThrottled:    http.StatusTooManyRequests,
	ReasonTooLarge:     http.StatusRequestEntityTooLarge,
	ReasonNotFound:     http.StatusNotFound,
	ReasonBusy:         http.StatusServiceUnavailable,
	ReasonRole:         http.StatusForbidden,
}

// Reasons lists every refusal reason, for the label of the refusals
// metric.
func Reasons() []string {
	out := make([]string, 0, len(status))
	for r := range status {
		out = append(out, r)
	}
	return out
}

// errorBody is every refusal: {"error": sentence, "reason": code}, and
// "result" when part of the action was done.
type errorBody struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
	Result any    `json:"result,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// Off is the admin listener's /admin/ when moderation is not served: a
// 404 whose JSON says why (reason: ReasonDisabled or ReasonNotOnRole).
func Off(reason, msg string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		closeUnread(w, r)
		writeJSON(w, status[reason], errorBody{Error: msg, Reason: reason})
	})
}

// HandlerConfig is what the API needs from the node.
type HandlerConfig struct {
	Service *Service
	// Operators are the named bearer tokens (at least MinTokenLen bytes
	// each); the name is who the moderation log says acted.
	Operators []Operator
	// Token, when Operators is empty, is one token named DefaultOperator.
	Token []byte
	// ClientAddr is the client address failed tokens are counted by (the
	// node's, with its trusted proxies and IPv6 grouping).
	ClientAddr func(*http.Request) string
	// Metrics, when set, gets occase_admin_refusals_total and
	// occase_moderation_actions_total.
	Metrics prometheus.Registerer
	Log     *zap.Logger
	Now     func() time.Time
	// PublicURL, when set, is the address users open (--public-url,
	// checked by ParsePublicURL): the page shows the reported posts'
	// photos from there and links to the listings, and its CSP lets
	// images of that origin in (and nothing else of it).
	PublicURL string
	// Authenticated, when set, is called with each request whose token
	// passed, before its answer (the node's admin listener stops
	// counting its connection among the anonymous).
	Authenticated func(*http.Request)
}

// Handler serves /admin/: the API under /admin/v1/ and the page.
type Handler struct {
	cfg      HandlerConfig
	ops      atomic.Pointer[[]opDigest] // swapped whole by SetOperators
	mux      *http.ServeMux
	fails    *failures
	slots    chan struct{}
	refusals *prometheus.CounterVec
	actions  *prometheus.CounterVec
	public   string // PublicURL without its trailing slash
	csp      string // the page's Content-Security-Policy
}

// NewHandler returns the API and page handler.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	ops := cfg.Operators
	if len(ops) == 0 && cfg.Token != nil {
		ops = []Operator{{Name: DefaultOperator, Token: cfg.Token}}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux(),
		fails: &failures{m: map[string]*failWindow{}, now: cfg.Now},
		slots: make(chan struct{}, maxInFlight)}
	if err := h.SetOperators(ops); err != nil {
		return nil, err
	}
	h.csp = pageCSP("")
	if cfg.PublicURL != "" {
		public, origin, err := ParsePublicURL(cfg.PublicURL)
		if err != nil {
			return nil, err
		}
		h.public, h.csp = public, pageCSP(origin)
	}
	h.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "occase_admin_refusals_total",
		Help: "Requests to the moderation API refused, by reason (unauthorized: a missing or wrong token; too_many_failures: refused with 429 after too many wrong tokens from the address)."},
		[]string{"reason"})
	h.actions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "occase_moderation_actions_total",
		Help: "Moderation actions done through the API, by action."}, []string{"action"})
	for _, r := range Reasons() {
		h.refusals.WithLabelValues(r)
	}
	if cfg.Metrics != nil {
		if err := cfg.Metrics.Register(h.refusals); err != nil {
			return nil, err
		}
		if err := cfg.Metrics.Register(h.actions); err != nil {
			return nil, err
		}
	}
	h.routes()
	return h, nil
}

// routes is the API: one line per action.
func (h *Handler) routes() {
	h.mux.HandleFunc("GET /admin/v1/reports", h.api("reports", h.listReports))
	h.mux.HandleFunc("POST /admin/v1/posts/{id}/dismiss", h.api("dismiss", h.dismiss))
	h.mux.HandleFunc("POST /admin/v1/posts/{id}/remove", h.api("remove", h.remove))
	h.mux.HandleFunc("POST /admin/v1/users/{id}/ban", h.api("ban", h.ban))
	h.mux.HandleFunc("POST /admin/v1/users/{id}/unban", h.api("unban", h.unban))
	h.mux.HandleFunc("GET /admin/v1/bans", h.api("bans", paged(h.cfg.Service.Bans)))
	h.mux.HandleFunc("POST /admin/v1/bans/rebuild", h.api("rebuild_bans", h.rebuildBans))
	h.mux.HandleFunc("GET /admin/v1/log", h.api("log", paged(h.cfg.Service.Log)))
	h.mux.HandleFunc("GET /admin/v1/whoami", h.api("whoami", whoami))
	h.mux.HandleFunc("/admin/v1/", func(w http.ResponseWriter, r *http.Request) {
		closeUnread(w, r)
		h.refuse(w, refuse(ReasonNotFound, "no such moderation endpoint: %s %s (docs/http-api.md \"Moderation API\")", r.Method, r.URL.Path))
	})
	h.mux.Handle("GET /admin/{$}", h.pageHandler("index.html"))
	h.mux.Handle("GET /admin/admin.js", h.pageHandler("admin.js"))
	h.mux.Handle("GET /admin/admin.css", h.pageHandler("admin.css"))
	h.mux.Handle("GET /admin/favicon.svg", h.pageHandler("favicon.svg"))
	h.mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		closeUnread(w, r)
		h.refuse(w, refuse(ReasonNotFound, "not found: %s %s", r.Method, r.URL.Path))
	})
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// closeUnread makes an answer that leaves the request's body unread
// close the connection at once: net/http would otherwise wait to read
// (and discard) the body before answering, and again after, so that a
// client announcing a body it never sends would hold the connection
// without a token.
func closeUnread(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
		http.NewResponseController(w).SetReadDeadline(time.Now())
	}
}

func (h *Handler) refuse(w http.ResponseWriter, e *Error) {
	h.refusals.WithLabelValues(e.Reason).Inc()
	writeJSON(w, status[e.Reason], errorBody{Error: e.Msg, Reason: e.Reason, Result: e.Result})
}

// api wraps an action: the throttle, the token, the body bound, the
// in-flight bound and the time bound, then the action's result as JSON.
func (h *Handler) api(action string, fn func(ctx context.Context, by string, r *http.Request, body []byte) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		addr := h.cfg.ClientAddr(r)
		if wait := h.fails.throttled(addr); wait > 0 {
			closeUnread(w, r)
			w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
			h.refuse(w, refuse(ReasonThrottled, "too many wrong tokens from this address; try again in %d s", int((wait+time.Second-1)/time.Second)))
			return
		}
		by, role, ok := h.authorized(r)
		if !ok {
			h.fails.fail(addr)
			closeUnread(w, r)
			// Closed even on a connection a token passed before (a
			// token revoked by SIGHUP): it keeps no slot of the
			// listener's.
			w.Header().Set("Connection", "close")
			h.cfg.Log.Warn("moderation API: wrong or missing token", zap.String("addr", addr))
			w.Header().Set("WWW-Authenticate", `Bearer realm="occase-admin"`)
			h.refuse(w, refuse(ReasonUnauthorized, "a missing or wrong token: send Authorization: Bearer <the token of --admin-token-file>"))
			return
		}
		h.fails.trust(addr)
		if !CanAct(role) {
			// A viewer's connection stays among the anonymous ones and
			// closes after each answer: a viewer (trusted less than a
			// moderator) can hold no more of the listener than a
			// stranger can, never the moderators' slots; a moderator
			// demoted by SIGHUP loses its keep-alive the same way.
			w.Header().Set("Connection", "close")
		} else if h.cfg.Authenticated != nil {
			h.cfg.Authenticated(r)
		}
		// Every POST acts; a viewer's is refused before its body is
		// read. Not written to the moderation log: a viewer could
		// otherwise push the real entries out of its bound.
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !CanAct(role) {
			closeUnread(w, r)
			h.cfg.Log.Warn("moderation API: an action refused to a viewer", zap.String("action", action),
				zap.String("operator", by), zap.String("addr", addr))
			h.refuse(w, refuse(ReasonRole, "the token of %s is a %s's: it reads the queue, the bans and the log, and may not %s (ask an operator with a moderator's token)", by, role, actionWords[action]))
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), roleKey{}, role))
		if r.ContentLength > MaxBody {
			closeUnread(w, r)
			h.refuse(w, refuse(ReasonTooLarge, "a request body holds at most %d bytes", MaxBody))
			return
		}
		select {
		case h.slots <- struct{}{}:
			defer func() { <-h.slots }()
		default:
			closeUnread(w, r)
			w.Header().Set("Retry-After", "1")
			h.refuse(w, refuse(ReasonBusy, "%d moderation requests are in progress; try again", maxInFlight))
			return
		}
		ctx, cancel := context.WithTimeout(WithClientAddr(r.Context(), addr), requestTimeout)
		defer cancel()
		http.NewResponseController(w).SetReadDeadline(h.cfg.Now().Add(requestTimeout))
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				h.refuse(w, refuse(ReasonTooLarge, "a request body holds at most %d bytes", MaxBody))
				return
			}
			h.refuse(w, refuse(ReasonBadRequest, "the request body could not be read"))
			return
		}
		v, err := fn(ctx, by, r, body)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				h.cfg.Log.Error("moderation API: "+action, zap.String("operator", by), zap.String("addr", addr), zap.Error(err))
				e = refuse(ReasonUnavailable, "the node could not reach its store; try again")
			} else if e.err != nil {
				h.cfg.Log.Warn("moderation API: "+action, zap.String("operator", by), zap.String("addr", addr), zap.Error(e.err))
			}
			h.refuse(w, e)
			return
		}
		if r.Method == http.MethodPost {
			h.actions.WithLabelValues(action).Inc()
		}
		writeJSON(w, http.StatusOK, v)
	}
}

// actionWords says what each action does, for a viewer's refusal.
var actionWords = map[string]string{
	"dismiss":      "dismiss reports",
	"remove":       "remove posts",
	"ban":          "ban users",
	"unban":        "unban users",
	"rebuild_bans": "rebuild the list of bans",
}

// roleKey holds the caller's role in a GET's context, for whoami.
type roleKey struct{}

// WhoAmI is GET /admin/v1/whoami: whose token the request carries and
// what it may do, for the page to show only the actions it can take.
type WhoAmI struct {
	Name   string `json:"name"`
	Role   string `json:"role"`
	CanAct bool   `json:"can_act"`
}

func whoami(ctx context.Context, by string, _ *http.Request, _ []byte) (any, error) {
	role, _ := ctx.Value(roleKey{}).(string)
	return WhoAmI{Name: by, Role: role, CanAct: CanAct(role)}, nil
}

// SetOperators replaces the tokens the API accepts (a reload of the token
// file): requests checked after it see the new set whole. An empty set
// or a short token is refused, and the tokens in use stay.
func (h *Handler) SetOperators(ops []Operator) error {
	if len(ops) == 0 {
		return errors.New("no admin token")
	}
	digests := make([]opDigest, len(ops))
	for i, o := range ops {
		if len(o.Token) < MinTokenLen {
			return errors.New("an admin token must hold at least 32 bytes")
		}
		role := o.RoleOf()
		if role != RoleModerator && role != RoleViewer {
			return errors.New("an operator's role is moderator or viewer")
		}
		digests[i] = opDigest{name: o.Name, role: role, sum: sha256.Sum256(o.Token)}
	}
	h.ops.Store(&digests)
	return nil
}

type opDigest struct {
	name, role string
	sum        [sha256.Size]byte
}

// authorized compares the bearer token with every operator's in
// constant time (as digests, so its length is not told either), all of
// them whatever matched, and returns the name and role of the one it is.
func (h *Handler) authorized(r *http.Request) (name, role string, ok bool) {
	a := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(a, "Bearer ")
	if !ok || tok == "" {
		return "", "", false
	}
	sum := sha256.Sum256([]byte(tok))
	ops := *h.ops.Load()
	match := -1
	for i := range ops {
		eq := subtle.ConstantTimeCompare(sum[:], ops[i].sum[:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return "", "", false
	}
	return ops[match].name, ops[match].role, true
}

func decodeBody(body []byte, v any) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil // an empty body: the defaults
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return refuse(ReasonBadRequest, "the request body is not the JSON object this endpoint takes: %v", err)
	}
	if dec.More() {
		return refuse(ReasonBadRequest, "the request body holds more than one JSON value")
	}
	return nil
}

func intParam(r *http.Request, name string, def int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, refuse(ReasonBadRequest, "%s %q: not a number", name, s)
	}
	return n, nil
}

func (h *Handler) listReports(ctx context.Context, _ string, r *http.Request, _ []byte) (any, error) {
	limit, err := intParam(r, "limit", 50)
	if err != nil {
		return nil, err
	}
	texts, err := intParam(r, "texts", 3)
	if err != nil {
		return nil, err
	}
	q, err := h.cfg.Service.Reports(ctx, limit, texts)
	if err != nil {
		return nil, err
	}
	if h.public == "" {
		// Without --public-url the page could not show them.
		for i := range q.Reports {
			q.Reports[i].Images = nil
		}
	}
	return reportsPage{Queue: q, PublicURL: h.public}, nil
}

// reportsPage is GET /admin/v1/reports: the queue, and the public site's
// address (--public-url) the photos' paths and the listings' links are
// relative to, when the node knows it.
type reportsPage struct {
	Queue
	PublicURL string `json:"public_url,omitempty"`
}

// paged serves a list read by page: ?offset (0) and ?limit (50), each
// checked by the Service.
func paged[T any](list func(ctx context.Context, offset, limit int) (T, error)) func(context.Context, string, *http.Request, []byte) (any, error) {
	return func(ctx context.Context, _ string, r *http.Request, _ []byte) (any, error) {
		limit, err := intParam(r, "limit", 50)
		if err != nil {
			return nil, err
		}
		offset, err := intParam(r, "offset", 0)
		if err != nil {
			return nil, err
		}
		return list(ctx, offset, limit)
	}
}

func (h *Handler) dismiss(ctx context.Context, by string, r *http.Request, body []byte) (any, error) {
	id, err := ParsePostID(r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if err := decodeBody(body, &struct{}{}); err != nil {
		return nil, err
	}
	return h.cfg.Service.Dismiss(ctx, by, id)
}

func (h *Handler) remove(ctx context.Context, by string, r *http.Request, body []byte) (any, error) {
	id, err := ParsePostID(r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	var req RemoveRequest
	if err := decodeBody(body, &req); err != nil {
		return nil, err
	}
	return h.cfg.Service.Remove(ctx, by, id, req)
}

func (h *Handler) ban(ctx context.Context, by string, r *http.Request, body []byte) (any, error) {
	var req BanRequest
	if err := decodeBody(body, &req); err != nil {
		return nil, err
	}
	return h.cfg.Service.Ban(ctx, by, r.PathValue("id"), req)
}

func (h *Handler) unban(ctx context.Context, by string, r *http.Request, body []byte) (any, error) {
	if err := decodeBody(body, &struct{}{}); err != nil {
		return nil, err
	}
	return h.cfg.Service.Unban(ctx, by, r.PathValue("id"))
}

func (h *Handler) rebuildBans(ctx context.Context, by string, r *http.Request, body []byte) (any, error) {
	if err := decodeBody(body, &struct{}{}); err != nil {
		return nil, err
	}
	return h.cfg.Service.RebuildBans(ctx, by)
}

// failures counts wrong tokens per client address in fixed windows of
// AuthWindow. At most maxTracked addresses are kept: expired windows are
// dropped at the first failure of each window and when the map is full,
// and while it stays full the addresses not in it share one window (so
// many addresses cannot grow it, and cannot guess more than AuthFailures
// times a window together). An address that sent the right token once
// (up to maxTrusted of them) never shares that count: else many
// addresses' wrong tokens would lock the operators out with them.
type failures struct {
	mu      sync.Mutex
	m       map[string]*failWindow
	trusted map[string]struct{}
	now     func() time.Time
	swept   time.Time // the last sweep of expired windows
}

func (f *failures) sweep(now time.Time) {
	for k, w := range f.m {
		if now.Sub(w.start) >= AuthWindow {
			delete(f.m, k)
		}
	}
	f.swept = now
}

type failWindow struct {
	start time.Time
	n     int
}

const sharedKey = "*"

func (f *failures) key(addr string) string {
	if _, ok := f.m[addr]; ok || len(f.m) < maxTracked {
		return addr
	}
	if _, ok := f.trusted[addr]; ok {
		return addr // at most maxTrusted entries past maxTracked
	}
	f.sweep(f.now())
	if len(f.m) < maxTracked {
		return addr
	}
	return sharedKey
}

// trust remembers addr as an operator's: it sent the right token.
func (f *failures) trust(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.trusted[addr]; ok || len(f.trusted) >= maxTrusted {
		return
	}
	if f.trusted == nil {
		f.trusted = map[string]struct{}{}
	}
	f.trusted[addr] = struct{}{}
}

// throttled returns how long addr must wait, 0 when it may try.
func (f *failures) throttled(addr string) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.m[f.key(addr)]
	if w == nil {
		return 0
	}
	left := AuthWindow - f.now().Sub(w.start)
	if left <= 0 || w.n < AuthFailures {
		return 0
	}
	return left
}

func (f *failures) fail(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if now.Sub(f.swept) >= AuthWindow {
		f.sweep(now)
	}
	k := f.key(addr)
	w := f.m[k]
	if w == nil || now.Sub(w.start) >= AuthWindow {
		w = &failWindow{start: now}
		f.m[k] = w
	}
	w.n++
}
