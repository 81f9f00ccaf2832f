package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// occase register-token prints a token whose payload expires --ttl from
// now (roles.TestRegistrationNeedsSignupToken shows a node takes such
// tokens), and refuses to run without a key.
func TestRegisterTokenCommand(t *testing.T) {
	a := app()
	var out bytes.Buffer
	a.Writer = &out
	key := strings.Repeat("ab", 32)
	if err := a.Run([]string{"occase", "register-token", "--register-key", key, "--ttl", "2h", "--subject", "s1"}); err != nil {
		t.Fatal(err)
	}
	payload, mac, ok := strings.Cut(strings.TrimSpace(out.String()), ".")
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if !ok || err != nil || len(mac) != 43 {
		t.Fatalf("token %q", out.String())
	}
	var c struct {
		Exp   int64  `json:"exp"`
		Nonce string `json:"nonce"`
		Sub   string `json:"sub"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if d := time.Until(time.Unix(c.Exp, 0)); d < time.Hour+59*time.Minute || d > 2*time.Hour || len(c.Nonce) < 8 || c.Sub != "s1" {
		t.Fatalf("payload %s", raw)
	}
	if err := app().Run([]string{"occase", "register-token"}); err == nil {
		t.Fatal("no error without a key")
	}
	// A token nodes would refuse (bad_token) is not printed.
	for _, ttl := range []string{"169h", "0s", "-1h"} {
		out.Reset()
		a := app()
		a.Writer = &out
		err := a.Run([]string{"occase", "register-token", "--register-key", key, "--ttl", ttl})
		if err == nil || !strings.Contains(err.Error(), "--ttl") || out.Len() != 0 {
			t.Fatalf("--ttl %s: %v, printed %q", ttl, err, out.String())
		}
	}
}
