package push

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/logs"
	"go.uber.org/zap"
)

// Run claims due notifications and sends them until ctx ends; every db
// node runs it. Sends already under way finish (each within half the
// lease) before Run returns; a notification claimed but not yet sent when
// the node dies is sent by another node once its lease runs out.
func (s *Service) Run(ctx context.Context) error {
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		if s.vapid.Load() == nil {
			s.keys(ctx) // Redis was down at start: read the VAPID pair now
		}
		s.tick(ctx, sem, &wg)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// tick claims and starts sending while there are due notifications and
// free sending slots.
func (s *Service) tick(ctx context.Context, sem chan struct{}, wg *sync.WaitGroup) {
	for ctx.Err() == nil {
		free := cap(sem) - len(sem)
		if free <= 0 {
			return
		}
		ps, err := s.claim(ctx, free)
		if err != nil {
			s.log.Warn("claiming due push notifications failed", logs.Repeated(logs.RepeatEvery), zap.Error(err))
		}
		if len(ps) == 0 {
			return
		}
		for _, p := range ps {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return // the rest stays leased and is taken again after the lease
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				// Not cut by ctx: a send under way finishes within its
				// bound, so a stopping node does not leave a half-sent
				// notification for another to send twice.
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Lease/2)
				defer cancel()
				s.send(sctx, p)
			}()
		}
	}
}

// claim claims up to about n due notifications across the shards.
func (s *Service) claim(ctx context.Context, n int) ([]broker.DuePush, error) {
	now := s.cfg.Clock()
	per := (n + broker.PushShards - 1) / broker.PushShards
	ps, waiting, err := s.b.ClaimPushes(ctx, now.UnixMilli(), now.Add(s.cfg.Lease).UnixMilli(), per)
	if err == nil {
		s.m.due.Set(float64(waiting))
	}
	return ps, err
}

// payload is what a notification carries (the Web Push payload as is; the
// FCM data and APNs custom keys with the same names).
type payload struct {
	Type    string `json:"type"`
	From    string `json:"from"`
	Count   int64  `json:"count"`
	Nick    string `json:"nick,omitempty"`
	Preview string `json:"preview,omitempty"`
}

// title and body of a visible notification (FCM, APNs).
func (p *payload) text() (title, body string) {
	title = p.Nick
	if title == "" {
		title = "New message"
	}
	body = p.Preview
	if body == "" || p.Count > 1 {
		body = strconv.FormatInt(p.Count, 10) + " new message"
		if p.Count > 1 {
			body += "s"
		}
		if p.Preview != "" {
			body += ": " + p.Preview
		}
	}
	return title, body
}

// collapseID groups a conversation's notifications: one per sender.
func (p *payload) collapseID() string { return "chat-" + p.From }

// send delivers one claimed notification to every device of its
// recipient, then releases the claim. When Redis fails first, the claim is
// left to run out and the notification is taken again.
func (s *Service) send(ctx context.Context, dp broker.DuePush) {
	if dp.To == "" {
		s.done(ctx, dp)
		return
	}
	count, devs, err := s.b.LoadPush(ctx, dp.To, dp.From)
	if err != nil {
		s.log.Warn("push notification not loaded; retried after its lease", zap.String("to", dp.To), zap.Error(err))
		return
	}
	if count == 0 || len(devs) == 0 { // written live meanwhile, or no device left
		s.done(ctx, dp)
		return
	}
	p := &payload{Type: "chat", From: dp.From, Count: count}
	if !s.cfg.NoPreviews && dp.Data != "" {
		var sh shown
		if json.Unmarshal([]byte(dp.Data), &sh) == nil {
			p.Nick, p.Preview = sh.Nick, sh.Preview
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var gone []string
	for id, rec := range devs {
		d, ok := parseRecord(rec)
		if !ok {
			gone = append(gone, id) // not ours: drop it
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.deliver(ctx, d, p) == outcomeGone {
				mu.Lock()
				gone = append(gone, id)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(gone) > 0 {
		if err := s.b.RemovePushDevices(ctx, dp.To, gone...); err != nil {
			s.log.Warn("dead push devices not removed", zap.String("user", dp.To), zap.Error(err))
		} else {
			s.log.Info("removed push devices the push service reported gone", zap.String("user", dp.To), zap.Int("devices", len(gone)))
		}
	}
	s.done(ctx, dp)
}

func (s *Service) done(ctx context.Context, dp broker.DuePush) {
	if err := s.b.DonePush(ctx, dp); err != nil {
		s.log.Warn("push claim not released; it runs out", zap.String("to", dp.To), zap.Error(err))
	}
}

type outcome int

const (
	outcomeSent   outcome = iota
	outcomeGone           // the device is no more: remove it
	outcomeRetry          // 429, 5xx, a network error: try again
	outcomeFailed         // refused for good (a bad request, bad credentials)
)

// result of one request to a push service.
type result struct {
	out        outcome
	reason     string        // failure label for the metrics
	retryAfter time.Duration // the service's Retry-After, if any
}

// provider sends one notification to one device, once.
type provider interface {
	name() string
	push(ctx context.Context, d *device, p *payload) result
}

// deliver sends p to d, retrying with backoff on 429, 5xx and network
// errors (respecting Retry-After, capped), and counts the outcome.
func (s *Service) deliver(ctx context.Context, d *device, p *payload) outcome {
	var pr provider
	switch d.Kind {
	case kindWebPush:
		pr = webPushProvider{s}
	case kindFCM:
		if s.fcm != nil {
			pr = s.fcm
		} else {
			s.m.failed.WithLabelValues("fcm", "unconfigured").Inc()
			return outcomeFailed
		}
	case kindAPNs:
		if s.apns != nil {
			pr = s.apns
		} else {
			s.m.failed.WithLabelValues("apns", "unconfigured").Inc()
			return outcomeFailed
		}
	}
	backoff := 500 * time.Millisecond
	var r result
	for attempt := 1; ; attempt++ {
		r = pr.push(ctx, d, p)
		if r.out != outcomeRetry || attempt >= s.cfg.Attempts || ctx.Err() != nil {
			break
		}
		wait := backoff
		if r.retryAfter > 0 {
			wait = r.retryAfter
		}
		if wait > s.cfg.MaxBackoff {
			wait = s.cfg.MaxBackoff
		}
		backoff *= 2
		if s.cfg.Sleep(ctx, wait) != nil {
			break
		}
	}
	switch r.out {
	case outcomeSent:
		s.m.sent.WithLabelValues(pr.name()).Inc()
	case outcomeGone:
		s.m.failed.WithLabelValues(pr.name(), "gone").Inc()
	default:
		reason := r.reason
		if reason == "" {
			reason = "error"
		}
		s.m.failed.WithLabelValues(pr.name(), reason).Inc()
		s.log.Debug("push notification not delivered", zap.String("provider", pr.name()), zap.String("reason", reason))
	}
	return r.out
}

// classify maps a push service's HTTP status to an outcome.
func classify(resp *http.Response) result {
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return result{out: outcomeSent}
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return result{out: outcomeGone}
	case resp.StatusCode == http.StatusTooManyRequests:
		return result{out: outcomeRetry, reason: "throttled", retryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	case resp.StatusCode >= 500:
		return result{out: outcomeRetry, reason: "unavailable", retryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	}
	return result{out: outcomeFailed, reason: "rejected"}
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	if n, err := strconv.Atoi(h); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// networkFailure is the result of a request that got no response.
func networkFailure(err error) result {
	if errors.Is(err, errPrivateAddress) {
		return result{out: outcomeGone}
	}
	return result{out: outcomeRetry, reason: "unavailable"}
}

// readSmall reads at most 64 KiB of a push service's answer.
func readSmall(r io.Reader) []byte {
	b, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	return b
}

// webPushProvider sends through the subscription's push service.
type webPushProvider struct{ s *Service }

func (webPushProvider) name() string { return "webpush" }

func (w webPushProvider) push(ctx context.Context, d *device, p *payload) result {
	plain, _ := json.Marshal(p)
	ua, err1 := decodeB64(d.P256dh)
	auth, err2 := decodeB64(d.Auth)
	if err1 != nil || err2 != nil {
		return result{out: outcomeGone}
	}
	body, err := encrypt(plain, ua, auth)
	if err != nil {
		return result{out: outcomeGone}
	}
	v, err := w.s.keys(ctx)
	if err != nil {
		return result{out: outcomeRetry} // Redis is down: the claim's lease brings it back
	}
	authz, err := v.authorization(d.Endpoint, w.s.cfg.Clock())
	if err != nil {
		return result{out: outcomeGone}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.Endpoint, bytes.NewReader(body))
	if err != nil {
		return result{out: outcomeGone}
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Encoding", "aes128gcm")
	req.Header.Set("TTL", "86400")
	req.Header.Set("Urgency", "high")
	req.Header.Set("Topic", p.collapseID())
	req.Header.Set("Authorization", authz)
	resp, err := w.s.web.Do(req)
	if err != nil {
		return networkFailure(err)
	}
	defer resp.Body.Close()
	readSmall(resp.Body)
	return classify(resp)
}

func newTLSConfig(roots *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}
