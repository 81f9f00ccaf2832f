package main

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/roles"
	"github.com/urfave/cli/v2"
)

// TestPushKeygen: `occase push keygen` prints a P-256 key pair in the
// environment variables serve reads.
func TestPushKeygen(t *testing.T) {
	a := app()
	var out bytes.Buffer
	a.Writer = &out
	if err := a.Run([]string{"occase", "push", "keygen"}); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		k, v, _ := strings.Cut(l, "=")
		vars[k] = v
	}
	pub, err1 := base64.RawURLEncoding.DecodeString(vars["OCCASE_VAPID_PUBLIC_KEY"])
	priv, err2 := base64.RawURLEncoding.DecodeString(vars["OCCASE_VAPID_PRIVATE_KEY"])
	if err1 != nil || err2 != nil || len(pub) != 65 || pub[0] != 4 || len(priv) != 32 {
		t.Fatalf("keygen printed %q", out.String())
	}
}

// TestPushFlags: the push options reach roles.Config.
func TestPushFlags(t *testing.T) {
	d := serveDefaults()
	var got roles.Config
	a := &cli.App{Flags: append(serveFlags(&d), pushFlags(&d)...), Action: func(c *cli.Context) error {
		var err error
		got, err = configFrom(c, d)
		return err
	}}
	if err := a.Run([]string{"x", "--push-delay=7s", "--push-previews=false", "--push-max-devices=3",
		"--apns-topic=com.example", "--chat-queue-ttl=48h"}); err != nil {
		t.Fatal(err)
	}
	p := got.Push
	if p.Delay != 7*time.Second || !p.NoPreviews || p.MaxDevices != 3 || p.Topic != "com.example" || p.CountTTL != 48*time.Hour ||
		p.FCMEndpoint != "https://fcm.googleapis.com" {
		t.Fatalf("push config %+v", p)
	}
}
