package main

// Push notification options and the `occase push` command, kept apart from
// main.go's long flag list.

import (
	"fmt"
	"os"
	"strings"

	"github.com/occase/occase/push"
	"github.com/occase/occase/roles"
	"github.com/urfave/cli/v2"
)

func pushFlags(d roles.Config) []cli.Flag {
	p := d.Push
	return []cli.Flag{
		&cli.DurationFlag{Name: "push-delay", Value: p.Delay, EnvVars: env("PUSH_DELAY"), Usage: "a chat message not written to a live connection of its recipient within this gets a push notification"},
		&cli.BoolFlag{Name: "push-previews", Value: !p.NoPreviews, EnvVars: env("PUSH_PREVIEWS"), Usage: "put the sender's nick and the first 100 characters of the message in notifications (false: neither)"},
		&cli.IntFlag{Name: "push-max-devices", Value: p.MaxDevices, EnvVars: env("PUSH_MAX_DEVICES"), Usage: "push devices per user (more: push_subscribe fails with too_many)"},
		&cli.StringFlag{Name: "vapid-public-key", EnvVars: env("VAPID_PUBLIC_KEY"), Usage: "Web Push VAPID public key, base64url (occase push keygen); checked against the private key"},
		&cli.StringFlag{Name: "vapid-private-key", EnvVars: env("VAPID_PRIVATE_KEY"), Usage: "Web Push VAPID private key, base64url; none: a pair generated once and kept in Redis"},
		&cli.StringFlag{Name: "vapid-private-key-file", EnvVars: env("VAPID_PRIVATE_KEY_FILE"), Usage: "file holding --vapid-private-key"},
		&cli.StringFlag{Name: "vapid-subject", EnvVars: env("VAPID_SUBJECT"), Usage: "contact the push services see in VAPID tokens (mailto:you@example.com or an https URL)"},
		&cli.StringFlag{Name: "fcm-credentials-file", EnvVars: env("FCM_CREDENTIALS_FILE"), Usage: "Firebase service-account JSON key; none: FCM off"},
		&cli.StringFlag{Name: "fcm-endpoint", Value: p.FCMEndpoint, EnvVars: env("FCM_ENDPOINT"), Usage: "FCM HTTP v1 base URL"},
		&cli.StringFlag{Name: "apns-key-file", EnvVars: env("APNS_KEY_FILE"), Usage: "APNs token-signing key (.p8); none: APNs off"},
		&cli.StringFlag{Name: "apns-key-id", EnvVars: env("APNS_KEY_ID"), Usage: "key id of --apns-key-file"},
		&cli.StringFlag{Name: "apns-team-id", EnvVars: env("APNS_TEAM_ID"), Usage: "Apple developer team id"},
		&cli.StringFlag{Name: "apns-topic", EnvVars: env("APNS_TOPIC"), Usage: "the iOS app's bundle id"},
		&cli.StringFlag{Name: "apns-endpoint", Value: p.APNsEndpoint, EnvVars: env("APNS_ENDPOINT"), Usage: "APNs base URL (https://api.sandbox.push.apple.com for development builds)"},
	}
}

// pushConfigFrom fills cfg.Push; it runs after the chat options are read.
func pushConfigFrom(c *cli.Context, cfg *roles.Config) error {
	p := &cfg.Push
	p.Delay = c.Duration("push-delay")
	p.NoPreviews = !c.Bool("push-previews")
	p.MaxDevices = c.Int("push-max-devices")
	p.CountTTL = cfg.Chat.QueueTTL
	p.VAPIDPublicKey = c.String("vapid-public-key")
	p.VAPIDPrivateKey = c.String("vapid-private-key")
	if f := c.String("vapid-private-key-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read --vapid-private-key-file: %w", err)
		}
		p.VAPIDPrivateKey = strings.TrimSpace(string(b))
	}
	p.VAPIDSubject = c.String("vapid-subject")
	if f := c.String("fcm-credentials-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read --fcm-credentials-file: %w", err)
		}
		p.FCMCredentials = b
	}
	p.FCMEndpoint = c.String("fcm-endpoint")
	if f := c.String("apns-key-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read --apns-key-file: %w", err)
		}
		p.APNsKey = b
	}
	p.APNsKeyID, p.APNsTeamID, p.Topic = c.String("apns-key-id"), c.String("apns-team-id"), c.String("apns-topic")
	p.APNsEndpoint = c.String("apns-endpoint")
	return nil
}

func pushCommand() *cli.Command {
	return &cli.Command{
		Name:  "push",
		Usage: "push notification tools",
		Subcommands: []*cli.Command{{
			Name:  "keygen",
			Usage: "print a new VAPID key pair for Web Push, as environment variables",
			Action: func(c *cli.Context) error {
				pub, priv, err := push.GenerateVAPID()
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "OCCASE_VAPID_PUBLIC_KEY=%s\nOCCASE_VAPID_PRIVATE_KEY=%s\n", pub, priv)
				return nil
			},
		}},
	}
}
