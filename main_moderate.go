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
	"github.com/occase/occase/images"
	"github.com/occase/occase/moderation"
	"github.com/occase/occase/roles"
	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
)

func moderateCommand() *cli.Command {
	return &cli.Command{
		Name:        "moderate",
		Usage:       "moderation tools: reported posts, post removal, banned users",
		Subcommands: append(append(reportCommands(), banCommands()...), logCommand()),
	}
}

// moderationFlags are the serve flags that reach Redis (as `occase images
// gc` takes them), the log format and the serve flags named in also, bound
// to d; --node and --admin-token-file, to go through a node's moderation
// API instead; and the log level, at warn unless asked, so that stdout
// holds the command's answer alone and logs go to stderr.
func moderationFlags(d *roles.Config, also ...string) []cli.Flag {
	var flags []cli.Flag
	for _, f := range serveFlags(d) {
		n := f.Names()[0]
		if strings.HasPrefix(n, "redis") || n == "log-format" || slices.Contains(also, n) {
			flags = append(flags, f)
		}
	}
	return append(flags,
		// The serve flag's name and variable, with what it means here: the
		// token this command sends, not one a node serves with.
		&cli.StringFlag{Name: "admin-token-file", EnvVars: env("ADMIN_TOKEN_FILE"), Usage: "with --node: the file holding that node's admin token (its --admin-token-file)"},
		&cli.StringFlag{Name: "node", EnvVars: env("NODE"), Usage: "a node's admin listener (its --admin-addr), e.g. http://127.0.0.1:9100: go through its moderation API, with the token of --admin-token-file, instead of Redis (plain http to a loopback address only; else https)"},
		&cli.StringFlag{Name: "log-level", Value: "warn", EnvVars: env("LOG_LEVEL"), Usage: "debug, info, warn or error"})
}

// moderator is what the subcommands act through: the Service on the
// Redis the flags name, or a node's API (--node). Both answer the same
// results and refusals, so the commands print the same either way.
type moderator interface {
	Reports(ctx context.Context, limit, texts int) (moderation.Queue, error)
	Dismiss(ctx context.Context, id uint64) (moderation.Dismissed, error)
	Remove(ctx context.Context, id uint64, req moderation.RemoveRequest) (moderation.Removed, error)
	Ban(ctx context.Context, user string, req moderation.BanRequest) (moderation.Banned, error)
	Unban(ctx context.Context, user string) (moderation.Unbanned, error)
	Bans(ctx context.Context, offset, limit int) (broker.BanPage, error)
	RebuildBans(ctx context.Context) (broker.BanRebuild, error)
	Log(ctx context.Context, offset, limit int) (moderation.LogPage, error)
}

// localModerator is the Service on the Redis this command opened; by
// names the operator in the logs and the moderation log (cliOperator).
type localModerator struct {
	s  *moderation.Service
	by string
}

func (l localModerator) Reports(ctx context.Context, limit, texts int) (moderation.Queue, error) {
	return l.s.Reports(ctx, limit, texts)
}
func (l localModerator) Dismiss(ctx context.Context, id uint64) (moderation.Dismissed, error) {
	return l.s.Dismiss(ctx, l.by, id)
}
func (l localModerator) Remove(ctx context.Context, id uint64, req moderation.RemoveRequest) (moderation.Removed, error) {
	return l.s.Remove(ctx, l.by, id, req)
}
func (l localModerator) Ban(ctx context.Context, user string, req moderation.BanRequest) (moderation.Banned, error) {
	return l.s.Ban(ctx, l.by, user, req)
}
func (l localModerator) Bans(ctx context.Context, offset, limit int) (broker.BanPage, error) {
	return l.s.Bans(ctx, offset, limit)
}
func (l localModerator) RebuildBans(ctx context.Context) (broker.BanRebuild, error) {
	return l.s.RebuildBans(ctx, l.by)
}
func (l localModerator) Log(ctx context.Context, offset, limit int) (moderation.LogPage, error) {
	return l.s.Log(ctx, offset, limit)
}
func (l localModerator) Unban(ctx context.Context, user string) (moderation.Unbanned, error) {
	return l.s.Unban(ctx, l.by, user)
}

// withModeration runs fn on a moderator: the node's API with --node,
// else the Redis of the serve flags in c (bound to d), opened for fn and
// closed after. The embedded server lives inside the node that runs it
// and cannot be reached from here but through the node's API; an
// unreachable Redis is given up on rather than waited for.
func withModeration(c *cli.Context, d roles.Config, fn func(context.Context, moderator) error) error {
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if node := c.String("node"); node != "" {
		f := c.String("admin-token-file")
		if f == "" {
			return errors.New("--node needs --admin-token-file, the file holding the node's admin token")
		}
		tok, err := moderation.LoadToken(f)
		if err != nil {
			return err
		}
		cl, err := moderation.NewClient(node, tok)
		if err != nil {
			return err
		}
		return fn(ctx, cl)
	}
	cfg, err := configFrom(c, d)
	if err != nil {
		return err
	}
	ro := cfg.Redis
	ro.Once = true
	if len(ro.Sentinels) == 0 && (len(ro.Addrs) == 0 || (len(ro.Addrs) == 1 && ro.Addrs[0] == broker.Embedded)) {
		return errors.New("moderation needs --redis (or --redis-sentinel), the Redis of the db nodes, or --node, a node's admin listener; the embedded server lives inside its node and is reached through its --node only")
	}
	// An empty variable (OCCASE_LOG_FORMAT=) is the default, not an error.
	log, limiter, err := newLogger(cmp.Or(c.String("log-format"), "console"), cmp.Or(c.String("log-level"), "warn"), 0)
	if err != nil {
		return err
	}
	defer log.Sync()
	defer limiter.Close()
	octx, cancel := context.WithTimeout(ctx, max(3*ro.Timeout, 10*time.Second))
	defer cancel()
	b, err := broker.Open(octx, ro, log.Named("broker"))
	if err != nil {
		return fmt.Errorf("open Redis: %w", err)
	}
	defer b.Close()
	svc := moderation.New(b, cfg.Reports.OrDefaults().Queue, cfg.Chat.QueueTTL, nil, log.Named("moderate"))
	// A removal asks the nodes with an image store to purge its photos.
	var signer *images.Signer
	if cfg.ImageKey != nil {
		signer, _ = images.NewSigner(cfg.ImageKey)
	}
	svc.SetPhotoPurger(roles.NewPhotoPurger(b, signer))
	if err := fn(ctx, localModerator{s: svc, by: cliOperator()}); err != nil {
		return err
	}
	log.Info("moderation command done", zap.String("cmd", c.Command.Name))
	return nil
}
