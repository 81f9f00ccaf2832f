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

func pushFlags(cfg *roles.Config) []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "push-delay", Value: cfg.Push.Delay, Destination: &cfg.Push.Delay, EnvVars: env("PUSH_DELAY"), Usage: "a chat message not written to a live connection of its recipient within this gets a push notification"},
		&cli.BoolFlag{Name: "push-previews", Value: !cfg.Push.NoPreviews, EnvVars: env("PUSH_PREVIEWS"), Usage: "put the sender's nick and the first 100 characters of the message in notifications (false: neither)"},
		&cli.IntFlag{Name: "push-max-devices", Value: cfg.Push.MaxDevices, Destination: &cfg.Push.MaxDevices, EnvVars: env("PUSH_MAX_DEVICES"), Usage: "push devices per user (more: push_subscribe fails with too_many)"},
		&cli.StringFlag{Name: "vapid-public-key", Value: cfg.Push.VAPIDPublicKey, Destination: &cfg.Push.VAPIDPublicKey, EnvVars: env("VAPID_PUBLIC_KEY"), Usage: "Web Push VAPID public key, base64url (occase push keygen); checked against the private key"},
		&cli.StringFlag{Name: "vapid-private-key", Value: cfg.Push.VAPIDPrivateKey, Destination: &cfg.Push.VAPIDPrivateKey, EnvVars: env("VAPID_PRIVATE_KEY"), Usage: "Web Push VAPID private key, base64url; none: a pair generated once and kept in Redis"},
		&cli.StringFlag{Name: "vapid-private-key-file", EnvVars: env("VAPID_PRIVATE_KEY_FILE"), Usage: "file holding --vapid-private-key"},
		&cli.StringFlag{Name: "vapid-subject", Value: cfg.Push.VAPIDSubject, Destination: &cfg.Push.VAPIDSubject, EnvVars: env("VAPID_SUBJECT"), DefaultText: "mailto:admin@localhost", Usage: "contact the push services see in VAPID tokens (mailto:you@example.com or an https URL), so they can reach you about this server"},
		&cli.StringFlag{Name: "fcm-credentials-file", EnvVars: env("FCM_CREDENTIALS_FILE"), Usage: "Firebase service-account JSON key; none: FCM off"},
		&cli.StringFlag{Name: "fcm-endpoint", Value: cfg.Push.FCMEndpoint, Destination: &cfg.Push.FCMEndpoint, EnvVars: env("FCM_ENDPOINT"), Usage: "FCM HTTP v1 base URL"},
		&cli.StringFlag{Name: "apns-key-file", EnvVars: env("APNS_KEY_FILE"), Usage: "APNs token-signing key (.p8); none: APNs off"},
		&cli.StringFlag{Name: "apns-key-id", Value: cfg.Push.APNsKeyID, Destination: &cfg.Push.APNsKeyID, EnvVars: env("APNS_KEY_ID"), Usage: "key id of --apns-key-file"},
		&cli.StringFlag{Name: "apns-team-id", Value: cfg.Push.APNsTeamID, Destination: &cfg.Push.APNsTeamID, EnvVars: env("APNS_TEAM_ID"), Usage: "Apple developer team id"},
		&cli.StringFlag{Name: "apns-topic", Value: cfg.Push.Topic, Destination: &cfg.Push.Topic, EnvVars: env("APNS_TOPIC"), Usage: "the iOS app's bundle id"},
		&cli.StringFlag{Name: "apns-endpoint", Value: cfg.Push.APNsEndpoint, Destination: &cfg.Push.APNsEndpoint, EnvVars: env("APNS_ENDPOINT"), Usage: "APNs base URL (https://api.sandbox.push.apple.com for development builds)"},
	}
}

// pushConfigFrom fills the push options the flags do not bind; it runs
// after the chat options are read.
func pushConfigFrom(c *cli.Context, cfg *roles.Config) error {
	p := &cfg.Push
	p.NoPreviews = !c.Bool("push-previews")
	p.CountTTL = cfg.Chat.QueueTTL
	if f := c.String("vapid-private-key-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read --vapid-private-key-file: %w", err)
		}
		p.VAPIDPrivateKey = strings.TrimSpace(string(b))
	}
	if f := c.String("fcm-credentials-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read --fcm-credentials-file: %w", err)
		}
		p.FCMCredentials = b
	}
	if f := c.String("apns-key-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read --apns-key-file: %w", err)
		}
		p.APNsKey = b
	}
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
