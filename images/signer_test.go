package images

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
// 256: no symbol is likelier than another.
func TestNamesUnbiased(t *testing.T) {
	s := testSigner(t)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	// 256 bytes do not split into 9-byte names; repeat them 9 times.
	s.rand = bytes.NewReader(bytes.Repeat(all, NameLen))
	names, err := s.Names(256)
	if err != nil {
		t.Fatal(err)
	}
	count := map[byte]int{}
	for _, n := range names {
		_, name, _ := strings.Cut(n, "/")
		for i := 0; i < len(name); i++ {
			count[name[i]]++
		}
	}
	if len(count) != len(alphabet) {
		t.Fatalf("%d distinct symbols, want %d", len(count), len(alphabet))
	}
	for c, n := range count {
		if n != 4*NameLen {
			t.Fatalf("symbol %q drawn %d times, want %d", c, n, 4*NameLen)
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
