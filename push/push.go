// Package push owns push notifications: the registry of each user's
// devices (Web Push subscriptions, FCM registration tokens, APNs device
// tokens), the notifications due for messages that no live connection took
// within the push delay, and sending them through the push services. Due
// notifications live in Redis and are claimed there with a lease, so with
// several nodes each is sent by one, and one whose node died is sent by
// another once the lease runs out.
package push

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/wire"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Config configures push notifications. The zero value of a field takes
// its default (DefaultConfig); FCM and APNs are off until configured; Web
// Push is always on, with a key pair generated and kept in Redis when none
// is given.
type Config struct {
	Delay      time.Duration // a message not written to a live connection within this gets a notification
	NoPreviews bool          // send neither the sender's nick nor a preview of the message
	MaxDevices int           // devices per user
	DeviceTTL  time.Duration // a user's registry expires this long after the last subscribe
	CountTTL   time.Duration // waiting counts expire this long after the last message (the offline queue's TTL)

	// VAPID (Web Push): base64url keys as `occase push keygen` prints
	// them, and the contact the push services see.
	VAPIDPublicKey, VAPIDPrivateKey string
	VAPIDSubject                    string

	// FCM HTTP v1: the service account's JSON key (nil: FCM off), and the
	// API's base URL (tests point it at a fake).
	FCMCredentials []byte
	FCMEndpoint    string

	// APNs, token-based: the .p8 key (nil: APNs off), its key id, the team
	// id, the app's bundle id (apns-topic), and the base URL.
	APNsKey                      []byte
	APNsKeyID, APNsTeamID, Topic string
	APNsEndpoint                 string

	Lease       time.Duration // a node that claimed a notification has this long to send it
	Poll        time.Duration // how often a node looks for due notifications
	Concurrency int           // notifications being sent at once, per node
	SendTimeout time.Duration // bound on one request to a push service
	Attempts    int           // tries per device on 429 and 5xx
	MaxBackoff  time.Duration // longest wait between tries (Retry-After is capped to it)

	// AllowInsecureEndpoints accepts http:// Web Push endpoints and
	// endpoints on loopback and private addresses. Tests only.
	AllowInsecureEndpoints bool
	// RootCAs, when set, is trusted instead of the system's roots (tests'
	// fake APNs and FCM servers).
	RootCAs *x509.CertPool

	Clock func() time.Time
	// Sleep waits between tries; tests make it return at once.
	Sleep func(ctx context.Context, d time.Duration) error
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Delay:        5 * time.Second,
		MaxDevices:   10,
		DeviceTTL:    90 * 24 * time.Hour,
		CountTTL:     30 * 24 * time.Hour,
		FCMEndpoint:  "https://fcm.googleapis.com",
		APNsEndpoint: "https://api.push.apple.com",
		Lease:        2 * time.Minute,
		Poll:         time.Second,
		Concurrency:  64,
		SendTimeout:  10 * time.Second,
		Attempts:     3,
		MaxBackoff:   10 * time.Second,
		Clock:        time.Now,
		Sleep:        sleep,
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Service registers devices and sends notifications.
type Service struct {
	b   *broker.Client
	cfg Config
	log *zap.Logger
	m   *metrics
	// vapid is the VAPID key pair, loaded from the configuration or from
	// Redis. A node may start while Redis is down: the pair is then read
	// on first use (keys), and Web Push waits for it.
	vapid   atomic.Pointer[vapid]
	vapidMu sync.Mutex
	web     *http.Client // Web Push: endpoints are client-given, so only public addresses
	fcm     *fcmSender
	apns    *apnsSender
}

// New returns the push service of a node. It loads (or, with no VAPID key
// configured, creates in Redis) the VAPID key pair and reads the FCM and
// APNs credentials; reg receives the metrics (nil: none).
func New(ctx context.Context, cfg Config, b *broker.Client, reg prometheus.Registerer, log *zap.Logger) (*Service, error) {
	d := DefaultConfig()
	fill := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	fill(&cfg.Delay, d.Delay)
	fill(&cfg.DeviceTTL, d.DeviceTTL)
	fill(&cfg.CountTTL, d.CountTTL)
	fill(&cfg.Lease, d.Lease)
	fill(&cfg.Poll, d.Poll)
	fill(&cfg.SendTimeout, d.SendTimeout)
	fill(&cfg.MaxBackoff, d.MaxBackoff)
	if cfg.MaxDevices <= 0 {
		cfg.MaxDevices = d.MaxDevices
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = d.Concurrency
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = d.Attempts
	}
	if cfg.FCMEndpoint == "" {
		cfg.FCMEndpoint = d.FCMEndpoint
	}
	if cfg.APNsEndpoint == "" {
		cfg.APNsEndpoint = d.APNsEndpoint
	}
	if cfg.Clock == nil {
		cfg.Clock = d.Clock
	}
	if cfg.Sleep == nil {
		cfg.Sleep = d.Sleep
	}
	// A send must end well within its lease, or another node would send
	// it again.
	if budget := time.Duration(cfg.Attempts) * (cfg.SendTimeout + cfg.MaxBackoff); budget > cfg.Lease/2 {
		return nil, fmt.Errorf("push: attempts × (send timeout + max backoff) = %v must stay under half the lease (%v)", budget, cfg.Lease)
	}
	s := &Service{b: b, cfg: cfg, log: log, m: newMetrics(reg)}
	if err := s.loadVAPID(ctx); errors.Is(err, broker.ErrUnavailable) {
		log.Info("the VAPID key pair is read from Redis once it answers")
	} else if err != nil {
		return nil, err
	}
	s.web = s.httpClient(!cfg.AllowInsecureEndpoints)
	var err error
	if len(cfg.FCMCredentials) > 0 {
		if s.fcm, err = newFCM(cfg, s.httpClient(false)); err != nil {
			return nil, err
		}
	}
	if len(cfg.APNsKey) > 0 {
		if s.apns, err = newAPNs(cfg, s.httpClient(false)); err != nil {
			return nil, err
		}
	}
	log.Info("push notifications", zap.Bool("webpush", true), zap.Bool("fcm", s.fcm != nil),
		zap.Bool("apns", s.apns != nil), zap.Duration("delay", cfg.Delay), zap.Bool("previews", !cfg.NoPreviews))
	return s, nil
}

func (s *Service) loadVAPID(ctx context.Context) error {
	pub, priv := s.cfg.VAPIDPublicKey, s.cfg.VAPIDPrivateKey
	if priv == "" {
		if pub != "" {
			return errors.New("push: --vapid-public-key needs --vapid-private-key")
		}
		gp, gk, err := GenerateVAPID()
		if err != nil {
			return err
		}
		kept, err := s.b.VAPIDKeys(ctx, gp+"."+gk)
		if err != nil {
			return fmt.Errorf("push: VAPID keys: %w", err)
		}
		var ok bool
		if pub, priv, ok = strings.Cut(kept, "."); !ok {
			return errors.New("push: the VAPID key pair kept in Redis is damaged; delete it or configure --vapid-private-key")
		}
		s.log.Warn("no --vapid-private-key given: Web Push uses a key pair generated and kept in Redis; browsers' subscriptions die with it, so configure one (occase push keygen) before going live")
	}
	v, err := newVAPID(pub, priv, s.cfg.VAPIDSubject)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	s.vapid.Store(v)
	return nil
}

// keys returns the VAPID key pair, reading it from Redis if that could not
// be done at start.
func (s *Service) keys(ctx context.Context) (*vapid, error) {
	if v := s.vapid.Load(); v != nil {
		return v, nil
	}
	s.vapidMu.Lock()
	defer s.vapidMu.Unlock()
	if v := s.vapid.Load(); v != nil {
		return v, nil
	}
	if err := s.loadVAPID(ctx); err != nil {
		return nil, err
	}
	return s.vapid.Load(), nil
}

// httpClient is a client for the push services; public refuses to connect
// to loopback, private and link-local addresses, whatever the name
// resolved to (a Web Push endpoint is chosen by a client).
func (s *Service) httpClient(public bool) *http.Client {
	dialer := &net.Dialer{Timeout: s.cfg.SendTimeout}
	if public {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			if ip := net.ParseIP(host); ip == nil || !publicIP(ip) {
				return errPrivateAddress
			}
			return nil
		}
	}
	tr := &http.Transport{
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   s.cfg.SendTimeout,
		ResponseHeaderTimeout: s.cfg.SendTimeout,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
	}
	if s.cfg.RootCAs != nil {
		tr.TLSClientConfig = newTLSConfig(s.cfg.RootCAs)
	}
	return &http.Client{Transport: tr, Timeout: s.cfg.SendTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var errPrivateAddress = errors.New("push endpoint resolves to a non-public address")

// Subscribe registers the device of a push_subscribe request for user.
// Failures are wire errors: bad_request, too_many, unavailable.
func (s *Service) Subscribe(ctx context.Context, user string, req *wire.Request) error {
	d, err := s.parseDevice(req, true)
	if err != nil {
		return err
	}
	ok, err := s.b.AddPushDevice(ctx, user, d.id(), d.record(), s.cfg.MaxDevices, s.cfg.DeviceTTL.Milliseconds())
	if err != nil {
		return unavailable(err)
	}
	if !ok {
		s.m.refused.Inc()
		return wire.Errorf(TooMany, "at most %d push devices per user; unsubscribe one first", s.cfg.MaxDevices)
	}
	return nil
}

// TooMany is the reason of a push_subscribe past the device limit (the
// coordinator may move it to wire).
const TooMany = "too_many"

// Unsubscribe removes the device of a push_unsubscribe request.
func (s *Service) Unsubscribe(ctx context.Context, user string, req *wire.Request) error {
	d, err := s.parseDevice(req, false)
	if err != nil {
		return err
	}
	return unavailable(s.b.RemovePushDevices(ctx, user, d.id()))
}

// SetFCMToken handles the "token" field of register and login (the
// original app's FCM token; a nil Service ignores it): it registers token as user's FCM device, or,
// when token is empty, removes all of user's FCM devices.
func (s *Service) SetFCMToken(ctx context.Context, user, token string) error {
	if s == nil {
		return nil
	}
	if token == "" {
		return unavailable(s.b.RemovePushDevicesWithPrefix(ctx, user, kindFCM+":"))
	}
	if !validFCMToken(token) {
		return wire.Errorf(wire.BadRequest, `"token" must be an FCM registration token`)
	}
	d := &device{Kind: kindFCM, Token: token}
	ok, err := s.b.AddPushDevice(ctx, user, d.id(), d.record(), s.cfg.MaxDevices, s.cfg.DeviceTTL.Milliseconds())
	if err != nil {
		return unavailable(err)
	}
	if !ok {
		s.m.refused.Inc()
		return wire.Errorf(TooMany, "at most %d push devices per user", s.cfg.MaxDevices)
	}
	return nil
}

func unavailable(err error) error {
	if errors.Is(err, broker.ErrUnavailable) {
		return &wire.Error{Reason: wire.Unavailable}
	}
	return err
}

// Handle runs a push_subscribe or push_unsubscribe request of user and
// returns the ack frame to send; an error is a wire error for the fail
// reply (cmd + "_ack"). A nil Service answers unavailable.
func (s *Service) Handle(ctx context.Context, user string, req *wire.Request) ([]byte, error) {
	if s == nil {
		return nil, wire.Errorf(wire.Unavailable, "push notifications are not available on this node")
	}
	var err error
	switch req.Cmd {
	case "push_subscribe":
		err = s.Subscribe(ctx, user, req)
	case "push_unsubscribe":
		err = s.Unsubscribe(ctx, user, req)
	default:
		return nil, wire.Malformedf("unknown command %q", req.Cmd)
	}
	if err != nil {
		return nil, err
	}
	return Ack(req.Cmd), nil
}

// Ack is the success reply to cmd (push_subscribe or push_unsubscribe).
func Ack(cmd string) []byte {
	b := []byte(`{"cmd":`)
	b = wire.AppendString(b, cmd+"_ack")
	return append(b, `,"result":"ok"}`...)
}

// Due is chat's hook (chat.Config.OnStored): the message of frame, from
// from to to, was stored and counted for push in the same script call
// (the recipient has a device; count is the sender's count now); Due
// makes its notification due after the delay, unless one is due already.
// Errors are logged.
func (s *Service) Due(ctx context.Context, to, from string, frame []byte, count int64) {
	if s == nil {
		return
	}
	var typ, msg, nick string
	wire.Scan(frame, func(f wire.Field) {
		switch f.Key {
		case "type":
			typ, _ = wire.String(f.Value)
		case "msg":
			msg, _ = wire.String(f.Value)
		case "nick":
			nick, _ = wire.String(f.Value)
		}
	})
	if strings.HasPrefix(typ, "app_ack") || typ == "server_ack" {
		return
	}
	var data []byte
	if !s.cfg.NoPreviews {
		data, _ = json.Marshal(shown{Nick: truncate(nick, maxNick), Preview: truncate(msg, maxPreview)})
	}
	due := s.cfg.Clock().Add(s.cfg.Delay).UnixMilli()
	if err := s.b.EnterPush(ctx, to, from, max(count, 1), due, string(data)); err != nil {
		s.log.Warn("push notification not scheduled", zap.String("to", to), zap.Error(err))
	}
}

// shown is what a due notification shows besides sender and count.
type shown struct {
	Nick    string `json:"nick,omitempty"`
	Preview string `json:"preview,omitempty"`
}

const (
	maxPreview = 100 // characters of the message in a notification
	maxNick    = 40
)

// truncate cuts s to at most n characters, with an ellipsis when cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for k := 0; k < n-1; k++ {
		_, w := utf8.DecodeRuneInString(s[i:])
		i += w
	}
	return s[:i] + "…"
}

// VAPIDKeyHandler answers GET /api/push/vapid-public-key with the
// application server key a browser passes to pushManager.subscribe, as
// base64url text (and as JSON {"key":...} when the client accepts only
// JSON).
func (s *Service) VAPIDKeyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		// Only a pair already loaded: an anonymous GET never causes a Redis
		// call (Run loads the pair once Redis answers).
		v := s.vapid.Load()
		if v == nil {
			w.Header().Set("Retry-After", "2")
			http.Error(w, "push keys not available yet", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=300")
		if strings.Contains(r.Header.Get("Accept"), "application/json") {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"key":"` + v.public + `"}`))
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte(v.public))
	})
}

// VAPIDPublicKey is the application server key, base64url.
// It is "" while the pair could not be read from Redis yet.
func (s *Service) VAPIDPublicKey() string {
	if v, err := s.keys(context.Background()); err == nil {
		return v.public
	}
	return ""
}

// metrics of the push service.
type metrics struct {
	sent    *prometheus.CounterVec
	failed  *prometheus.CounterVec
	due     prometheus.Gauge
	refused prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "occase_push_sent_total",
			Help: "Notifications a push service accepted, by provider (webpush, fcm, apns)."}, []string{"provider"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "occase_push_failed_total",
			Help: "Notifications not delivered to a push service, by provider and reason (gone, rejected, throttled, unavailable, error, unconfigured)."},
			[]string{"provider", "reason"}),
		due: prometheus.NewGauge(prometheus.GaugeOpts{Name: "occase_push_due",
			Help: "Notifications waiting for their delay or being sent, in the whole cluster (as this node last saw)."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_push_subscribe_refused_total",
			Help: "push_subscribe requests refused with too_many (the per-user device limit)."}),
	}
	if reg != nil {
		reg.MustRegister(m.sent, m.failed, m.due, m.refused)
	}
	return m
}
