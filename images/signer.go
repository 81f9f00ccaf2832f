package images

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/blake2b"
)

const (
	// KeySize is the length of the image key shared by db and img nodes
	// (libsodium's crypto_generichash_KEYBYTES in the original system).
	KeySize = 32
	// NameLen is the number of characters of an upload name.
	NameLen = 9
	// DigestLen is the length of a digest in lowercase hex (16 bytes).
	DigestLen = 2 * digestBytes

	digestBytes = 16
	// alphabet has exactly 64 symbols, so the low 6 bits of a random byte
	// pick one without modulo bias.
	alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-"

	// A name starts with the day it was issued on (days since the Unix
	// epoch, modulo 64^2: two symbols, 6 bits each, most significant
	// first), so the img node, which keeps no state, can tell its age. The
	// other seven symbols are random (42 bits). The day count wraps every
	// 4,096 days (11.2 years), long after any name was meant to be used.
	// Days rather than hours: the random bits are what keeps two names of
	// one bucket apart (and an adversary holding many names away from a
	// victim's), and a day bucket leaves 6 more of them than an hour one;
	// see docs/security.md for the collision odds.
	timeSyms   = 2
	randSyms   = NameLen - timeSyms
	bucket     = 24 * time.Hour
	bucketWrap = 1 << (6 * timeSyms)
	// A name up to this many buckets "from the future" is accepted: the
	// db node that issued it may run a little ahead of this img node (and
	// past midnight already).
	skewBuckets = 1
)

// Signer issues and checks upload names. It is safe for concurrent use.
type Signer struct {
	key  []byte
	rand io.Reader        // crypto/rand in production; injected by tests
	now  func() time.Time // time.Now in production; see WithClock
}

// SignerOption changes how NewSigner builds a Signer.
type SignerOption func(*Signer)

// WithClock makes the Signer read the time from now, both to stamp the names
// it issues and to judge their age.
func WithClock(now func() time.Time) SignerOption {
	return func(s *Signer) { s.now = now }
}

// NewSigner returns a Signer keyed with key, which must be exactly KeySize
// bytes. The key is copied.
func NewSigner(key []byte, opts ...SignerOption) (*Signer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("image key: need %d bytes, got %d", KeySize, len(key))
	}
	s := &Signer{key: bytes.Clone(key), rand: rand.Reader, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Names returns n fresh names of the form "<digest>/<name>", as the
// filenames reply carries them.
func (s *Signer) Names(n int) ([]string, error) {
	if n < 0 {
		return nil, fmt.Errorf("image names: negative count %d", n)
	}
	raw := make([]byte, n*randSyms)
	if _, err := io.ReadFull(s.rand, raw); err != nil {
		return nil, fmt.Errorf("image names: read random: %w", err)
	}
	var stamp [timeSyms]byte
	b := bucketOf(s.now()) % bucketWrap
	for j := timeSyms - 1; j >= 0; j-- {
		stamp[j] = alphabet[b&63]
		b >>= 6
	}
	out := make([]string, n)
	var name [NameLen]byte
	copy(name[:], stamp[:])
	for i := range out {
		for j, b := range raw[i*randSyms : (i+1)*randSyms] {
			name[timeSyms+j] = alphabet[b&63]
		}
		out[i] = s.Digest(string(name[:])) + "/" + string(name[:])
	}
	return out, nil
}

// bucketOf returns the number of whole buckets (days) since the Unix epoch.
func bucketOf(t time.Time) int64 {
	return t.Unix() / int64(bucket/time.Second)
}

// Expiry returns when name stops being accepted for upload: the end of the
// day (UTC) it was issued on, plus ttl, so every name lives at least ttl.
// The day is read from the name's first symbols, taken as the latest day
// with those symbols that is not more than skewBuckets ahead of now. ok is false
// for a name that is not NameLen symbols of the alphabet. The signature is
// not checked here; see Valid.
func (s *Signer) Expiry(name string, ttl time.Duration) (expires time.Time, ok bool) {
	if len(name) != NameLen {
		return time.Time{}, false
	}
	var stamp int64
	for i := range timeSyms {
		v := strings.IndexByte(alphabet, name[i])
		if v < 0 {
			return time.Time{}, false
		}
		stamp = stamp<<6 | int64(v)
	}
	now := bucketOf(s.now())
	// Buckets since issue, modulo the wrap, with the few just ahead of now
	// read as clock skew rather than as 11 years old.
	age := ((now-stamp)%bucketWrap + bucketWrap) % bucketWrap
	if age >= bucketWrap-skewBuckets {
		age -= bucketWrap
	}
	issued := time.Unix((now-age)*int64(bucket/time.Second), 0)
	return issued.Add(bucket + ttl), true
}

// Fresh reports whether name may still be uploaded with a time to live of
// ttl: it was issued at most ttl (plus the rest of its day) ago, and not
// more than skewBuckets ahead of this node's clock.
func (s *Signer) Fresh(name string, ttl time.Duration) bool {
	exp, ok := s.Expiry(name, ttl)
	return ok && s.now().Before(exp)
}

// Digest returns the lowercase hex keyed BLAKE2b-128 of name.
func (s *Signer) Digest(name string) string {
	var sum [digestBytes]byte
	s.sum(&sum, name)
	return hex.EncodeToString(sum[:])
}

func (s *Signer) sum(dst *[digestBytes]byte, name string) {
	h, err := blake2b.New(digestBytes, s.key)
	if err != nil {
		// Only a bad size or key length fails, both fixed by NewSigner.
		panic("images: blake2b.New: " + err.Error())
	}
	h.Write([]byte(name))
	h.Sum(dst[:0])
}

// Valid reports whether digest (lowercase hex, as in a URL) signs name. The
// comparison takes the same time whatever the digest's content, so a client
// cannot learn a valid digest byte by byte.
func (s *Signer) Valid(digest, name string) bool {
	var want [digestBytes]byte
	s.sum(&want, name)
	var wantHex [DigestLen]byte
	hex.Encode(wantHex[:], want[:])
	// ConstantTimeCompare returns at once on a length mismatch; the length
	// of a valid digest is public, so that leaks nothing.
	return subtle.ConstantTimeCompare(wantHex[:], []byte(digest)) == 1
}

// ErrNoKey is returned by LoadKey when neither a key nor a key file is given.
var ErrNoKey = errors.New("image key: none configured")

// LoadKey reads the image key from a flag value or from a file; giving both
// is an error. Either form holds the key as 64 hex characters (recommended:
// `openssl rand -hex 32`) or as exactly 32 raw bytes, which is how the
// original occase configs wrote it (e.g. "0123456789abcdefghijklmnopqrstuv").
// Surrounding whitespace, such as a file's trailing newline, is ignored
// unless the value is exactly 32 bytes long. With neither given it returns ErrNoKey, so that the
// caller decides: role all may use RandomKey, while db and img running as
// separate processes must share a configured key.
func LoadKey(value, file string) ([]byte, error) {
	switch {
	case value != "" && file != "":
		return nil, errors.New("image key: give a key or a key file, not both")
	case value != "":
		return parseKey([]byte(value))
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("image key: %w", err)
		}
		return parseKey(b)
	}
	return nil, ErrNoKey
}

func parseKey(b []byte) ([]byte, error) {
	if len(b) == KeySize {
		return b, nil
	}
	t := bytes.TrimSpace(b)
	if len(t) == KeySize {
		// A text key in a file, with its newline.
		return t, nil
	}
	if len(t) == 2*KeySize {
		k := make([]byte, KeySize)
		if _, err := hex.Decode(k, t); err != nil {
			return nil, errors.New("image key: 64 characters but not hex")
		}
		return k, nil
	}
	// Never echo the key material in the error.
	return nil, fmt.Errorf("image key: need %d hex characters or %d raw bytes, got %d bytes", 2*KeySize, KeySize, len(b))
}

// RandomKey returns a fresh random key, for a single process that runs both
// db and img (role all) without a configured key. Names it signs become
// invalid when the process restarts.
func RandomKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("image key: %w", err)
	}
	return k, nil
}
