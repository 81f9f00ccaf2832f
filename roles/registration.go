package roles

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// Registration budgets: what a register request must pass before an
// account is created, cheapest first. A per-second limit per client
// address (this node's memory), the operator's sign-up token when one is
// required (a MAC, no I/O), a per-second limit of the whole node (many
// addresses together), the token's single use (Redis), and last a daily
// budget per client address (Redis, so it holds across nodes).
// The single use comes before the daily count so that replaying a used
// token costs the address nothing; whatever a later step refuses or fails
// gives back what the earlier ones took (the daily count, the nonce), so
// only an account made costs a registration. Every per-address count is
// by clientKey, so rotating through the addresses of one IPv6 network buys
// nothing.

const (
	registerWindow = 24 * time.Hour
	// MaxSignupTokenLife bounds how far ahead a token may expire: its
	// nonce is remembered in Redis until then. occase register-token
	// refuses to print one that nodes would refuse.
	MaxSignupTokenLife = 7 * 24 * time.Hour
	maxSignupToken     = 1024 // bytes of a signup_token, at most
	// signupNonceSkew keeps a used nonce past its token's expiry, so a
	// node whose clock is behind the one that took it still finds it used.
	signupNonceSkew = 5 * time.Minute
)

// admitRegistration checks a register request from client address remote
// against every registration budget, taking them where it passes. When it
// admits, undo gives back what it took; the caller runs it if the account
// is not made after all.
func (s *Server) admitRegistration(ctx context.Context, remote string, req *wire.Request) (undo func(), err error) {
	key := s.clientKey(remote)
	if !s.regLimit.allow(key) {
		s.m.regRefused.WithLabelValues("rate").Inc()
		return nil, wire.Errorf(wire.RateLimited, "too many registrations from this address; try again in a few seconds")
	}
	now := s.cfg.Clock()
	var nonce string
	var exp time.Time
	if s.cfg.RegisterKey != nil {
		tok, ok := wire.String(req.Get("signup_token"))
		if !ok || tok == "" {
			s.m.regRefused.WithLabelValues("token").Inc()
			return nil, wire.Errorf(wire.BadToken, "this server registers only with a signup_token from its sign-up service")
		}
		var err error
		if nonce, exp, err = verifySignupToken(s.cfg.RegisterKey, tok, now); err != nil {
			s.m.regRefused.WithLabelValues("token").Inc()
			return nil, wire.Errorf(wire.BadToken, "%v", err)
		}
	}
	// After the token (a forged one takes nothing from anyone), before
	// any Redis work: the node's budget for every address together.
	if !allow(s.regNode) {
		s.m.regRefused.WithLabelValues("node").Inc()
		return nil, wire.Errorf(wire.RateLimited, "this server is taking many registrations right now; try again in a minute")
	}
	// The undo steps run on a context of their own: the session's may be
	// what failed.
	var undos []func(context.Context) error
	undo = func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		for _, u := range undos {
			if err := u(uctx); err != nil {
				s.log.Warn("give back a registration", zap.Error(err))
			}
		}
	}
	if nonce != "" {
		fresh, err := s.broker.UseSignupNonce(ctx, nonce, exp.Sub(now)+signupNonceSkew)
		if err != nil {
			return nil, unavailable(err)
		}
		if !fresh {
			s.m.regRefused.WithLabelValues("token").Inc()
			return nil, wire.Errorf(wire.BadToken, "this signup_token has been used already")
		}
		undos = append(undos, func(c context.Context) error { return s.broker.ReleaseSignupNonce(c, nonce) })
	}
	if s.cfg.RegisterPerDay > 0 {
		wait, err := s.broker.AdmitRegistration(ctx, key, now.UnixMilli(), registerWindow, s.cfg.RegisterPerDay)
		if err != nil {
			undo()
			return nil, unavailable(err)
		}
		if wait > 0 {
			undo()
			s.m.regRefused.WithLabelValues("daily").Inc()
			return nil, wire.Errorf(wire.RateLimited, "this address has made its %d registrations for the day; registration is possible again at %s (in %s)",
				s.cfg.RegisterPerDay, now.Add(wait).UTC().Format(time.RFC3339), wait.Round(time.Second))
		}
		undos = append(undos, func(c context.Context) error { return s.broker.RefundRegistration(c, key) })
	}
	return undo, nil
}

// signupClaims is a sign-up token's payload. Exp is in Unix seconds; Nonce
// makes each token single-use; Sub is the operator's own reference (a
// verified phone or e-mail, hashed if it likes), not read by occase.
type signupClaims struct {
	Exp   int64  `json:"exp"`
	Nonce string `json:"nonce"`
	Sub   string `json:"sub,omitempty"`
}

var b64 = base64.RawURLEncoding

// SignupToken makes a token that lets one register through a node run
// with --register-key key: base64url(payload) "." base64url(HMAC-SHA256(key,
// base64url(payload))), payload {"exp":<Unix s>,"nonce":"<hex>","sub":subject}.
// The operator's sign-up service makes them (this function, or the shell
// recipe in docs/security.md) and hands one to each user it has verified.
func SignupToken(key []byte, subject string, exp time.Time) (string, error) {
	n := make([]byte, 16)
	if _, err := rand.Read(n); err != nil {
		return "", err
	}
	p, err := json.Marshal(signupClaims{Exp: exp.Unix(), Nonce: hex.EncodeToString(n), Sub: subject})
	if err != nil {
		return "", err
	}
	enc := b64.EncodeToString(p)
	return enc + "." + b64.EncodeToString(signupMAC(key, enc)), nil
}

func signupMAC(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// verifySignupToken checks tok's MAC and expiry at now and returns its
// nonce and expiry. Its errors are client-facing details.
func verifySignupToken(key []byte, tok string, now time.Time) (nonce string, exp time.Time, err error) {
	if len(tok) > maxSignupToken {
		return "", exp, fmt.Errorf("a signup_token has at most %d bytes", maxSignupToken)
	}
	payload, sig, ok := strings.Cut(tok, ".")
	mac, derr := b64.DecodeString(sig)
	if !ok || derr != nil || !hmac.Equal(mac, signupMAC(key, payload)) {
		return "", exp, errors.New("the signup_token is not one of this server's")
	}
	raw, err := b64.DecodeString(payload)
	var c signupClaims
	if err != nil || json.Unmarshal(raw, &c) != nil {
		return "", exp, errors.New("the signup_token's payload does not parse")
	}
	exp = time.Unix(c.Exp, 0)
	switch {
	case !now.Before(exp):
		return "", exp, errors.New("the signup_token has expired")
	case exp.Sub(now) > MaxSignupTokenLife:
		return "", exp, fmt.Errorf("the signup_token expires more than %s ahead", MaxSignupTokenLife)
	case len(c.Nonce) < 8 || len(c.Nonce) > 128:
		return "", exp, errors.New("the signup_token's nonce must have 8 to 128 characters")
	}
	return c.Nonce, exp, nil
}

// LoadRegisterKey reads --register-key or --register-key-file: hex, at
// least 16 bytes (32 hex characters; 64 recommended). Neither given: nil.
func LoadRegisterKey(value, file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read --register-key-file: %w", err)
		}
		value = strings.TrimSpace(string(b))
	}
	if value == "" {
		return nil, nil
	}
	k, err := hex.DecodeString(value)
	if err != nil || len(k) < 16 {
		return nil, errors.New("--register-key must be hex, at least 32 characters (16 bytes; 64 recommended)")
	}
	return k, nil
}
