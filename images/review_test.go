package images

import (
	"strings"
	"testing"
	"time"
)

// A review token works for its digest, from when it is made until
// ReviewTTL later, and nothing else does: another digest's, an expired
// one, one claiming to last longer, a changed MAC, a malformed or
// over-long one.
func TestReviewToken(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	at := func(d time.Duration) *Signer {
		s, err := NewSigner([]byte(testKey), WithClock(func() time.Time { return now.Add(d) }))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := at(0)
	d := s.Digest("AAAAAAAAA")
	other := s.Digest("BBBBBBBBB")
	tok := s.ReviewToken(d)
	exp, mac, _ := strings.Cut(tok, ".")
	flip := func(c byte) string {
		if c == '0' {
			return "1"
		}
		return "0"
	}
	otherKey, _ := NewSigner([]byte(strings.Repeat("x", KeySize)), WithClock(func() time.Time { return now }))
	for _, c := range []struct {
		name    string
		checker *Signer
		digest  string
		token   string
		want    bool
	}{
		{"valid", s, d, tok, true},
		{"valid, a minute before expiry", at(ReviewTTL - time.Minute), d, tok, true},
		{"expired", at(ReviewTTL), d, tok, false},
		{"another digest", s, other, tok, false},
		{"another key", otherKey, d, tok, false},
		{"changed MAC", s, d, exp + "." + mac[:len(mac)-1] + flip(mac[len(mac)-1]), false},
		{"later expiry, same MAC", s, d, "1800000601." + mac, false},
		{"too long-lived", s, d, at(time.Hour).ReviewToken(d), false},
		{"leading zero", s, d, "0" + tok, false},
		{"no dot", s, d, exp + mac, false},
		{"empty", s, d, "", false},
		{"short MAC", s, d, exp + "." + mac[:10], false},
		{"uppercase MAC", s, d, exp + "." + strings.ToUpper(mac), false},
		{"negative", s, d, "-1." + mac, false},
		{"huge", s, d, strings.Repeat("9", 10_000) + "." + mac, false},
		{"short digest", s, d[:8], tok, false},
	} {
		if got := c.checker.ValidReview(c.digest, c.token); got != c.want {
			t.Errorf("%s: ValidReview = %v, want %v", c.name, got, c.want)
		}
	}
}

// reviewParam reads only "review=<token>", and nothing longer than a
// token can be.
func TestReviewParam(t *testing.T) {
	for _, c := range []struct{ q, want string }{
		{"", ""},
		{"review=1.ab", "1.ab"},
		{"x=1&review=1.ab", ""},
		{"review=" + strings.Repeat("9", ReviewTokenMax+1), ""},
		{"review=" + strings.Repeat("9", ReviewTokenMax), strings.Repeat("9", ReviewTokenMax)},
	} {
		if got := reviewParam(c.q); got != c.want {
			t.Errorf("reviewParam(%q) = %q, want %q", c.q, got, c.want)
		}
	}
}
