package images

import (
	"crypto/subtle"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/blake2b"
)

// Review URLs (docs/security.md "Photos of hidden and removed listings"):
// the operator page shows the photos of listings hidden pending review,
// and of the copies kept after their authors deleted them, which the img
// nodes refuse to everyone else. The admin API hands out, for each such
// photo, "?review=<exp>.<mac>": exp the Unix second it stops working
// (ReviewTTL after it was made), mac the keyed BLAKE2b-256, under the
// image key, of a domain string, the digest and exp. The img node serves
// a withheld photo for a valid one (Cache-Control: private, no-store),
// and refuses an expired or forged one exactly as without it.

// ReviewTTL is how long a review URL works.
const ReviewTTL = 10 * time.Minute

// reviewSkew is how far ahead of ReviewTTL an expiry may lie (the admin
// node's clock ahead of the img node's): a token that claims more is
// refused, so that one cannot be made to last.
const reviewSkew = time.Minute

// reviewDomain keeps a review MAC apart from every other use of the key
// (the names' digests are BLAKE2b-128 of a 9-symbol name).
const reviewDomain = "occase image review v1\x00"

const (
	reviewMACLen = 2 * blake2b.Size256
	// ReviewTokenMax is the longest review token read: 12 digits of
	// expiry, the dot, the MAC.
	ReviewTokenMax = 12 + 1 + reviewMACLen
)

func (s *Signer) reviewMAC(dst *[blake2b.Size256]byte, digest string, exp int64) {
	h, err := blake2b.New256(s.key)
	if err != nil {
		panic("images: blake2b.New256: " + err.Error())
	}
	h.Write([]byte(reviewDomain))
	h.Write([]byte(digest))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatInt(exp, 10)))
	h.Sum(dst[:0])
}

// ReviewToken returns the review token of the photo stored under digest,
// working until ReviewTTL from now.
func (s *Signer) ReviewToken(digest string) string {
	exp := s.now().Add(ReviewTTL).Unix()
	var mac [blake2b.Size256]byte
	s.reviewMAC(&mac, digest, exp)
	return strconv.FormatInt(exp, 10) + "." + hex.EncodeToString(mac[:])
}

// ValidReview reports whether token is a review token of digest, unexpired
// and not lasting longer than ReviewTTL (plus a minute of clock skew). It
// reads at most ReviewTokenMax bytes, and compares the MAC in constant
// time.
func (s *Signer) ValidReview(digest, token string) bool {
	if len(token) > ReviewTokenMax || len(digest) != DigestLen {
		return false
	}
	e, mac, ok := strings.Cut(token, ".")
	if !ok || len(e) == 0 || len(e) > 12 || len(mac) != reviewMACLen {
		return false
	}
	exp, err := strconv.ParseInt(e, 10, 64)
	if err != nil || exp <= 0 || strconv.FormatInt(exp, 10) != e {
		return false
	}
	now := s.now()
	if !now.Before(time.Unix(exp, 0)) || time.Unix(exp, 0).After(now.Add(ReviewTTL+reviewSkew)) {
		return false
	}
	var want [blake2b.Size256]byte
	s.reviewMAC(&want, digest, exp)
	var wantHex [reviewMACLen]byte
	hex.Encode(wantHex[:], want[:])
	return subtle.ConstantTimeCompare(wantHex[:], []byte(mac)) == 1
}
