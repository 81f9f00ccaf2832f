package roles

import (
	"strings"
	"testing"
	"time"
)

func TestVerifySignupToken(t *testing.T) {
	key := []byte("0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	sign := func(payload string) string {
		enc := b64.EncodeToString([]byte(payload))
		return enc + "." + b64.EncodeToString(signupMAC(key, enc))
	}
	tests := []struct {
		name, tok, err string
	}{
		{"valid", sign(`{"exp":1800000060,"nonce":"abcdefgh"}`), ""},
		{"unknown members are ignored", sign(`{"exp":1800000060,"nonce":"abcdefgh","sub":"x","v":2}`), ""},
		{"no dot", "abc", "not one of this server's"},
		{"empty", "", "not one of this server's"},
		{"bad base64 mac", "e30.!!!", "not one of this server's"},
		{"mac of another payload", strings.Split(sign(`{"exp":1}`), ".")[0] + "." + strings.Split(sign(`{"exp":2}`), ".")[1], "not one of this server's"},
		{"payload not JSON", sign(`exp=1800000060`), "does not parse"},
		{"expired", sign(`{"exp":1800000000,"nonce":"abcdefgh"}`), "expired"},
		{"no exp", sign(`{"nonce":"abcdefgh"}`), "expired"},
		{"too far ahead", sign(`{"exp":1900000000,"nonce":"abcdefgh"}`), "ahead"},
		{"short nonce", sign(`{"exp":1800000060,"nonce":"abc"}`), "nonce"},
		{"no nonce", sign(`{"exp":1800000060}`), "nonce"},
		{"oversized", sign(`{"exp":1800000060,"nonce":"` + strings.Repeat("a", 2000) + `"}`), "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nonce, exp, err := verifySignupToken(key, tt.tok, now)
			if tt.err == "" {
				if err != nil || nonce != "abcdefgh" || exp != now.Add(time.Minute) {
					t.Fatalf("got %q %v %v", nonce, exp, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("got %v, want an error saying %q", err, tt.err)
			}
		})
	}
	// What SignupToken makes, verifySignupToken takes.
	tok, err := SignupToken(key, "s", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := verifySignupToken(key, tok, now); err != nil {
		t.Fatal(err)
	}
}
