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
)

// Signer issues and checks upload names. It is safe for concurrent use.
type Signer struct {
	key  []byte
	rand io.Reader // crypto/rand in production; injected by tests
}

// NewSigner returns a Signer keyed with key, which must be exactly KeySize
// bytes. The key is copied.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("image key: need %d bytes, got %d", KeySize, len(key))
	}
	return &Signer{key: bytes.Clone(key), rand: rand.Reader}, nil
}

// Names returns n fresh names of the form "<digest>/<name>", as the
// filenames reply carries them.
func (s *Signer) Names(n int) ([]string, error) {
	if n < 0 {
		return nil, fmt.Errorf("image names: negative count %d", n)
	}
	raw := make([]byte, n*NameLen)
	if _, err := io.ReadFull(s.rand, raw); err != nil {
		return nil, fmt.Errorf("image names: read random: %w", err)
	}
	out := make([]string, n)
	for i := range out {
		name := raw[i*NameLen : (i+1)*NameLen]
		for j, b := range name {
			name[j] = alphabet[b&63]
		}
		out[i] = s.Digest(string(name)) + "/" + string(name)
	}
	return out, nil
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
