package main

// `occase moderate`: the operator's tools for a marketplace on the open
// internet. Reported posts (moderate_reports.go) and banned users
// (moderate_bans.go) each bring their own subcommands; all of them talk to
// the db nodes' Redis with the serve flags' Redis options, as `occase images
// gc` does, through withModeration.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/roles"
	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
)

func moderateCommand() *cli.Command {
	return &cli.Command{
		Name:        "moderate",
		Usage:       "moderation tools: reported posts, post removal, banned users",
		Subcommands: append(reportCommands(), banCommands()...),
	}
}

// moderationFlags are the serve flags that reach Redis (as `occase images
// gc` takes them), the log format and the serve flags named in also, bound
// to d; and the log level, at warn unless asked, so that stdout holds the
// command's answer alone and logs go to stderr.
func moderationFlags(d *roles.Config, also ...string) []cli.Flag {
	var flags []cli.Flag
	for _, f := range serveFlags(d) {
		n := f.Names()[0]
		if strings.HasPrefix(n, "redis") || n == "log-format" || slices.Contains(also, n) {
			flags = append(flags, f)
		}
	}
	return append(flags, &cli.StringFlag{Name: "log-level", Value: "warn", EnvVars: env("LOG_LEVEL"), Usage: "debug, info, warn or error"})
}

// withModeration opens the Redis of the serve flags in c (bound to d), runs
// fn, and closes it. The embedded server lives inside the node that runs it
// and cannot be reached from here; an unreachable Redis is given up on
// rather than waited for.
func withModeration(c *cli.Context, d roles.Config, fn func(context.Context, *broker.Client, *zap.Logger) error) error {
	cfg, err := configFrom(c, d)
	if err != nil {
		return err
	}
	ro := cfg.Redis
	if len(ro.Sentinels) == 0 && (len(ro.Addrs) == 0 || (len(ro.Addrs) == 1 && ro.Addrs[0] == broker.Embedded)) {
		return errors.New("moderation needs --redis (or --redis-sentinel), the Redis of the db nodes; the embedded server lives inside its node and cannot be reached from here")
	}
	// An empty variable (OCCASE_LOG_FORMAT=) is the default, not an error.
	log, limiter, err := newLogger(cmp.Or(c.String("log-format"), "console"), cmp.Or(c.String("log-level"), "warn"), 0)
	if err != nil {
		return err
	}
	defer log.Sync()
	defer limiter.Close()
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	octx, cancel := context.WithTimeout(ctx, max(3*ro.Timeout, 10*time.Second))
	defer cancel()
	b, err := broker.Open(octx, ro, log.Named("broker"))
	if err != nil {
		return fmt.Errorf("open Redis: %w", err)
	}
	defer b.Close()
	if err := fn(ctx, b, log.Named("moderate")); err != nil {
		return err
	}
	log.Info("moderation command done", zap.String("cmd", c.Command.Name))
	return nil
}
