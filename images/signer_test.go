package images

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const testKey = "0123456789abcdefghijklmnopqrstuv"

func testSigner(t testing.TB) *Signer {
	t.Helper()
	s, err := NewSigner([]byte(testKey))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The vector from PROTOCOL.md section 5, shared with the original system.
func TestDigestVector(t *testing.T) {
	s := testSigner(t)
	const want = "671772238154af7fce237c8a217d2cd2"
	if got := s.Digest("aB3+x-9Qz"); got != want {
		t.Fatalf("Digest = %s, want %s", got, want)
	}
	if !s.Valid(want, "aB3+x-9Qz") {
		t.Fatal("Valid rejects the test vector")
	}
}

func TestValidRejects(t *testing.T) {
	s := testSigner(t)
	const name, digest = "aB3+x-9Qz", "671772238154af7fce237c8a217d2cd2"
	tests := []struct{ name, digest, file string }{
		{"other name", digest, "aB3+x-9Qy"},
		{"flipped digit", "671772238154af7fce237c8a217d2cd3", name},
		{"uppercase hex", strings.ToUpper(digest), name},
		{"short", digest[:31], name},
		{"long", digest + "0", name},
		{"empty", "", name},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if s.Valid(tc.digest, tc.file) {
				t.Fatalf("Valid(%q, %q) = true", tc.digest, tc.file)
			}
		})
	}
	other, _ := NewSigner([]byte(strings.Repeat("k", KeySize)))
	if other.Valid(digest, name) {
		t.Fatal("a digest made with another key is accepted")
	}
}

func TestNames(t *testing.T) {
	s := testSigner(t)
	names, err := s.Names(9)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 9 {
		t.Fatalf("got %d names", len(names))
	}
	seen := map[string]bool{}
	for _, n := range names {
		digest, name, ok := strings.Cut(n, "/")
		if !ok || !isDigest(digest) || len(name) != NameLen || !isName(name) {
			t.Fatalf("malformed name %q", n)
		}
		if !s.Valid(digest, name) {
			t.Fatalf("name %q does not verify", n)
		}
		// Every issued name must be accepted by the upload path parser.
		if _, err := parseTarget("/" + n + ".jpg"); err != nil {
			t.Fatalf("parseTarget refuses issued name %q", n)
		}
		if seen[name] {
			t.Fatalf("duplicate name %q", name)
		}
		seen[name] = true
	}
}

// Every byte value maps to a symbol, and each symbol gets exactly 4 of the
// 256: no random symbol is likelier than another. (The first timeSyms
// symbols are the day, not random.)
func TestNamesUnbiased(t *testing.T) {
	s := testSigner(t)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	// 256 bytes do not split into 6-byte names; repeat them 6 times.
	s.rand = bytes.NewReader(bytes.Repeat(all, randSyms))
	names, err := s.Names(256)
	if err != nil {
		t.Fatal(err)
	}
	count := map[byte]int{}
	for _, n := range names {
		_, name, _ := strings.Cut(n, "/")
		for i := timeSyms; i < len(name); i++ {
			count[name[i]]++
		}
	}
	if len(count) != len(alphabet) {
		t.Fatalf("%d distinct symbols, want %d", len(count), len(alphabet))
	}
	for c, n := range count {
		if n != 4*randSyms {
			t.Fatalf("symbol %q drawn %d times, want %d", c, n, 4*randSyms)
		}
	}
}

func TestNamesRandomFails(t *testing.T) {
	s := testSigner(t)
	s.rand = bytes.NewReader(nil)
	if _, err := s.Names(1); err == nil {
		t.Fatal("Names succeeded without randomness")
	}
}

func TestNewSignerKeyLength(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := NewSigner(make([]byte, n)); err == nil {
			t.Fatalf("NewSigner accepted a %d-byte key", n)
		}
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hexKey := hex.EncodeToString([]byte(testKey))
	rawHex := []byte("0123456789abcdefghijklmnopqrstuv")
	tests := []struct {
		name        string
		value, file string
		want        []byte
		wantErr     bool
	}{
		{name: "raw value", value: testKey, want: rawHex},
		{name: "hex value", value: strings.Repeat("ab", 32), want: bytes.Repeat([]byte{0xab}, 32)},
		{name: "hex file with newline", file: write("hex", hexKey+"\n"), want: rawHex},
		{name: "raw file", file: write("raw", testKey), want: rawHex},
		{name: "text file with newline", file: write("text", testKey+"\n"), want: rawHex},
		{name: "binary raw file", file: write("bin", "\n"+testKey[1:]), want: []byte("\n" + testKey[1:])},
		{name: "both", value: testKey, file: write("both", testKey), wantErr: true},
		{name: "short", value: "abc", wantErr: true},
		{name: "64 non-hex", value: strings.Repeat("zz", 32), wantErr: true},
		{name: "missing file", file: filepath.Join(dir, "nope"), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadKey(tc.value, tc.file)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("LoadKey = %x, want an error", got)
				}
				if strings.Contains(err.Error(), testKey) {
					t.Fatalf("error reveals the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("LoadKey = %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := LoadKey("", ""); !errors.Is(err, ErrNoKey) {
		t.Fatalf("LoadKey with nothing: %v, want ErrNoKey", err)
	}
	k, err := RandomKey()
	if err != nil || len(k) != KeySize {
		t.Fatalf("RandomKey = %x, %v", k, err)
	}
	if _, err := NewSigner(k); err != nil {
		t.Fatal(err)
	}
}

// clock is a settable time for tests of name expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func TestNameStamp(t *testing.T) {
	tests := []struct {
		at   time.Time
		want string
	}{
		{time.Unix(0, 0), "AA"},
		{time.Unix(86399, 0), "AA"},
		{time.Unix(86400, 0), "AB"},
		{time.Unix(64*86400, 0), "BA"},
		// 2026-12-04 is day 20,791; modulo 2^12 that is 311 = 4*64 + 55:
		// "E", "3".
		{time.Date(2026, 12, 4, 20, 30, 0, 0, time.UTC), "E3"},
		// Day 2^12 wraps to 0.
		{time.Unix(1<<12*86400, 0), "AA"},
	}
	for _, tc := range tests {
		s, err := NewSigner([]byte(testKey), WithClock(func() time.Time { return tc.at }))
		if err != nil {
			t.Fatal(err)
		}
		names, err := s.Names(3)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if got := n[DigestLen+1:][:timeSyms]; got != tc.want {
				t.Errorf("name issued at %v starts %q, want %q", tc.at, got, tc.want)
			}
		}
	}
}

func TestNameExpiry(t *testing.T) {
	const ttl = 24 * time.Hour
	issued := time.Date(2026, 12, 4, 10, 30, 0, 0, time.UTC)
	expires := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC) // end of the day + ttl
	tests := []struct {
		name     string
		issue    time.Time // the issuing db node's clock
		check    time.Time // the img node's clock
		want     bool
		wantExp  time.Time
		checkExp bool
	}{
		{name: "just issued", issue: issued, check: issued, want: true, wantExp: expires, checkExp: true},
		{name: "a second before expiry", issue: issued, check: expires.Add(-time.Second), want: true, wantExp: expires, checkExp: true},
		{name: "at expiry", issue: issued, check: expires, want: false, wantExp: expires, checkExp: true},
		{name: "a week old", issue: issued, check: issued.Add(7 * 24 * time.Hour), want: false, wantExp: expires, checkExp: true},
		{name: "issuer an hour ahead", issue: issued.Add(time.Hour), check: issued, want: true},
		{name: "issuer past midnight already", issue: time.Date(2026, 12, 5, 0, 10, 0, 0, time.UTC), check: time.Date(2026, 12, 4, 23, 55, 0, 0, time.UTC), want: true},
		{name: "issuer two days ahead", issue: issued.Add(48 * time.Hour), check: issued, want: false},
		{name: "ten years old (the day symbols wrap after 11.2)", issue: issued.Add(-3650 * 24 * time.Hour), check: issued, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock(tc.issue)
			s, err := NewSigner([]byte(testKey), WithClock(c.Now))
			if err != nil {
				t.Fatal(err)
			}
			names, err := s.Names(1)
			if err != nil {
				t.Fatal(err)
			}
			name := names[0][DigestLen+1:]
			c.Set(tc.check)
			if got := s.Fresh(name, ttl); got != tc.want {
				t.Fatalf("Fresh = %v, want %v", got, tc.want)
			}
			exp, ok := s.Expiry(name, ttl)
			if !ok || (tc.checkExp && !exp.Equal(tc.wantExp)) {
				t.Fatalf("Expiry = %v, %v; want %v", exp, ok, tc.wantExp)
			}
		})
	}
}

// Names issued before names carried their day are random in their first
// symbols too: they still verify (the PROTOCOL.md vector included), but
// read as issued on a random day of the last 11 years, so the img node
// refuses nearly all of them for upload (docs/security.md).
func TestOldNamesRefused(t *testing.T) {
	now := time.Date(2026, 12, 4, 20, 30, 0, 0, time.UTC)
	s, err := NewSigner([]byte(testKey), WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	const name, digest = "aB3+x-9Qz", "671772238154af7fce237c8a217d2cd2"
	if !s.Valid(digest, name) {
		t.Fatal("the test vector no longer verifies")
	}
	if s.Fresh(name, 24*time.Hour) {
		t.Fatal("an old-style name is accepted for upload")
	}
	for _, bad := range []string{"", "aB3", "aB3+x-9Qz0", "a*3+x-9Qz"} {
		if _, ok := s.Expiry(bad, time.Hour); ok || s.Fresh(bad, time.Hour) {
			t.Fatalf("Expiry accepts %q", bad)
		}
	}
}
