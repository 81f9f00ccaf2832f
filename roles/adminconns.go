package roles

// The admin listener's connections are counted at accept, before net/http
// reads a byte or starts a goroutine for them (docs/security.md "The
// admin listener's connections"). Two bounds: all open connections
// (--admin-max-conns), and the anonymous ones, those none of whose
// requests has carried a valid operator token yet (half of it), so that
// a neighbour without a token can never take the slots of the operators'
// connections already open. An anonymous connection is also closed after
// each answer (Connection: close), so that it holds its slot for one
// request only, itself bounded by the listener's read timeouts. Past
// either bound a connection is answered a canned 503 with a reason and
// closed; past the few answers in flight at once it is closed unanswered.

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons of a refused admin connection (the 503's "reason", and the
// label of occase_admin_conns_refused_total).
const (
	reasonAdminConns     = "too_many_connections"
	reasonAdminAnonConns = "too_many_anonymous_connections"
	// reasonAdminUnanswered: refused with no answer, the refusers busy.
	reasonAdminUnanswered = "closed_unanswered"
)

const (
	// DefaultAdminMaxConns is --admin-max-conns' default.
	DefaultAdminMaxConns = 64
	// adminRefusers bounds the refusals answered at once; each lives at
	// most adminRefuseTime.
	adminRefusers   = 16
	adminRefuseTime = 250 * time.Millisecond
)

// adminConns is the admin listener: the listener it wraps, counted.
type adminConns struct {
	net.Listener
	max, anonMax int
	refusers     chan struct{}
	refused      *prometheus.CounterVec

	mu         sync.Mutex
	open, anon int
}

func newAdminConns(l net.Listener, limit int, reg prometheus.Registerer) *adminConns {
	a := &adminConns{Listener: l, max: limit, anonMax: max(1, limit/2), refusers: make(chan struct{}, adminRefusers),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "occase_admin_conns_refused_total",
			Help: "Connections to the admin listener refused at accept: too_many_connections (--admin-max-conns open), too_many_anonymous_connections (half of it open without a valid token yet), each answered 503; closed_unanswered (refused while 16 refusals were being answered)."},
			[]string{"reason"})}
	for _, r := range []string{reasonAdminConns, reasonAdminAnonConns, reasonAdminUnanswered} {
		a.refused.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(a.refused,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_admin_conns",
				Help: "Connections open on the admin listener (bounded by --admin-max-conns)."},
				func() float64 { a.mu.Lock(); defer a.mu.Unlock(); return float64(a.open) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_admin_conns_anonymous",
				Help: "Connections open on the admin listener none of whose requests carried a valid operator token (bounded by half of --admin-max-conns)."},
				func() float64 { a.mu.Lock(); defer a.mu.Unlock(); return float64(a.anon) }))
	}
	return a
}

// Accept returns the next connection within the bounds; the others are
// refused here, in the accept loop, at the cost of one write.
func (a *adminConns) Accept() (net.Conn, error) {
	for {
		c, err := a.Listener.Accept()
		if err != nil {
			return nil, err
		}
		a.mu.Lock()
		reason := ""
		switch {
		case a.open >= a.max:
			reason = reasonAdminConns
		case a.anon >= a.anonMax:
			reason = reasonAdminAnonConns
		default:
			a.open++
			a.anon++
		}
		a.mu.Unlock()
		if reason == "" {
			return &adminConn{Conn: c, a: a}, nil
		}
		a.refuse(c, reason)
	}
}

// refuse answers c a 503 saying why and closes it. The answer is written
// before the request is read (it fits the socket's empty send buffer);
// the request, if any, is then read and dropped for a moment, so that
// closing does not reset the connection before the client reads it.
func (a *adminConns) refuse(c net.Conn, reason string) {
	select {
	case a.refusers <- struct{}{}:
	default:
		a.refused.WithLabelValues(reasonAdminUnanswered).Inc()
		c.Close()
		return
	}
	a.refused.WithLabelValues(reason).Inc()
	go func() {
		defer func() { <-a.refusers }()
		defer c.Close()
		c.SetDeadline(time.Now().Add(adminRefuseTime))
		if _, err := c.Write(adminRefusal(reason, a.max)); err != nil {
			return
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		var buf [4096]byte
		for {
			if _, err := c.Read(buf[:]); err != nil {
				return
			}
		}
	}()
}

func adminRefusal(reason string, limit int) []byte {
	msg := "the admin listener holds " + strconv.Itoa(limit) + " connections at most"
	if reason == reasonAdminAnonConns {
		msg = "the admin listener holds " + strconv.Itoa(max(1, limit/2)) + " connections without a valid token at most"
	}
	body := `{"error":"` + msg + `; try again","reason":"` + reason + `"}` + "\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n" +
		"Retry-After: 1\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// adminConn is one counted connection.
type adminConn struct {
	net.Conn
	a      *adminConns
	authed atomic.Bool
	closed sync.Once
}

func (c *adminConn) Close() error {
	c.closed.Do(func() {
		c.a.mu.Lock()
		c.a.open--
		if !c.authed.Load() {
			c.a.anon--
		}
		c.a.mu.Unlock()
	})
	return c.Conn.Close()
}

// authenticate marks c as an operator's: it no longer counts among the
// anonymous, and keeps its keep-alive.
func (c *adminConn) authenticate() {
	c.a.mu.Lock()
	defer c.a.mu.Unlock()
	if c.authed.CompareAndSwap(false, true) {
		c.a.anon--
	}
}

type adminConnKey struct{}

// adminConnContext is the admin server's ConnContext: the counted
// connection, for the moderation API to mark when a token passes.
func adminConnContext(ctx context.Context, c net.Conn) context.Context {
	if ac, ok := c.(*adminConn); ok {
		return context.WithValue(ctx, adminConnKey{}, ac)
	}
	return ctx
}

// adminAuthenticated marks r's connection as an operator's.
func adminAuthenticated(r *http.Request) {
	if c, ok := r.Context().Value(adminConnKey{}).(*adminConn); ok {
		c.authenticate()
	}
}

// closeAnonymous closes the connection after each answer while none of
// its requests carried a valid token.
func closeAnonymous(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Context().Value(adminConnKey{}).(*adminConn)
		if c == nil || c.authed.Load() {
			h.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(&anonWriter{ResponseWriter: w, c: c}, r)
	})
}

// anonWriter adds Connection: close to an answer, unless the request
// authenticated its connection before the answer's head.
type anonWriter struct {
	http.ResponseWriter
	c     *adminConn
	wrote bool
}

func (w *anonWriter) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		if !w.c.authed.Load() {
			w.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *anonWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.NewResponseController reach the server's writer.
func (w *anonWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
