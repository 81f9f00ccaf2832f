package main

// `occase moderate ban|unban|bans`: an operator bans a user (docs/operations.md
// "Banning a user"). The ban is a field of the user's hash in Redis, read by
// every login; the same script closes the user's live sessions on every
// node (broker.BanUser). With --remove-posts, the user's posts go as the
// author's own delete would take them.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/chat"
	"github.com/occase/occase/roles"
	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
)

// banCommands are `occase moderate ban|unban|bans`.
func banCommands() []*cli.Command {
	bd := serveDefaults()
	ud := serveDefaults()
	ld := serveDefaults()
	banFlags := append(moderationFlags(&bd),
		&cli.BoolFlag{Name: "remove-posts", Usage: "also delete every post of the user, as the author's delete would (every node drops them; subscribers with deletions get post_deleted)"},
		&cli.StringFlag{Name: "note", Usage: fmt.Sprintf("why, for the operators: kept with the ban in the user's hash (at most %d bytes; never shown to the user)", broker.MaxBanNote)})
	return []*cli.Command{{
		Name:            "ban",
		SkipFlagParsing: true, // flags before or after the id: withModerateBroker
		Usage:           "ban a user: its logins are refused (reason banned, close 4008) and its live sessions on every node closed; the account, its queue and (without --remove-posts) its posts are kept",
		ArgsUsage:       "<user id>",
		Flags:           banFlags,
		Action: func(c *cli.Context) error {
			return withModerateBroker(c, &bd, func(ctx context.Context, c *cli.Context, b *broker.Client, user string, log *zap.Logger) error {
				return banUser(ctx, b, user, c.String("note"), c.Bool("remove-posts"), log)
			})
		},
	}, {
		Name:            "unban",
		SkipFlagParsing: true,
		Usage:           "lift a user's ban: its next login is let in",
		ArgsUsage:       "<user id>",
		Flags:           moderationFlags(&ud),
		Action: func(c *cli.Context) error {
			return withModerateBroker(c, &ud, func(ctx context.Context, _ *cli.Context, b *broker.Client, user string, log *zap.Logger) error {
				was, err := b.UnbanUser(ctx, user)
				if errors.Is(err, broker.ErrBanNotListed) {
					// The ban is lifted; its stale entry is cleaned by the
					// next listing that meets it.
					log.Warn("unbanned, but still on the list of bans until a listing cleans it", zap.String("user", user), zap.Error(err))
				} else if err != nil {
					return noUser(user, err)
				}
				if !was {
					fmt.Printf("user %s was not banned\n", user)
					return nil
				}
				log.Info("user unbanned", zap.String("user", user))
				fmt.Printf("user %s unbanned\n", user)
				return nil
			})
		},
	}, {
		Name:  "bans",
		Usage: "list the banned users, newest ban first: user id, when, note (entries of accounts gone since are cleaned as they are met)",
		Flags: append(moderationFlags(&ld),
			&cli.IntFlag{Name: "limit", Value: 50, Usage: "bans listed at most (1 to 1000)"},
			&cli.IntFlag{Name: "offset", Value: 0, Usage: "skip this many of the newest (the line under the table gives the next page's)"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per line instead of a table"}),
		Action: func(c *cli.Context) error {
			limit, offset := c.Int("limit"), c.Int("offset")
			if limit < 1 || limit > 1000 {
				return fmt.Errorf("--limit %d: want 1 to 1000", limit)
			}
			if offset < 0 {
				return fmt.Errorf("--offset %d: want 0 or more", offset)
			}
			return withModeration(c, ld, func(ctx context.Context, b *broker.Client, log *zap.Logger) error {
				page, err := listBans(ctx, b, offset, limit)
				if err != nil {
					return err
				}
				if page.Cleaned > 0 {
					log.Info("stale entries cleaned from the list of bans", zap.Int("cleaned", page.Cleaned))
				}
				if c.Bool("json") {
					return writeBansJSON(c.App.Writer, page)
				}
				return writeBansTable(c.App.Writer, page)
			})
		},
	}}
}

// listBans reads limit bans from offset, newest first
// (broker.Client.ListBans, which an API calls the same way).
func listBans(ctx context.Context, b *broker.Client, offset, limit int) (broker.BanPage, error) {
	return b.ListBans(ctx, offset, limit)
}

// banLine is one ban as `bans --json` writes it.
type banLine struct {
	User string `json:"user"`
	At   int64  `json:"at"`
	When string `json:"when"`
	Note string `json:"note,omitempty"`
}

func writeBansJSON(w io.Writer, p broker.BanPage) error {
	enc := json.NewEncoder(w)
	for _, e := range p.Bans {
		if err := enc.Encode(banLine{User: e.User, At: e.At, When: banTime(e.At), Note: e.Note}); err != nil {
			return err
		}
	}
	return nil
}

func writeBansTable(w io.Writer, p broker.BanPage) error {
	if len(p.Bans) == 0 {
		if p.Offset > 0 {
			_, err := fmt.Fprintf(w, "no bans from offset %d (%d on the list)\n", p.Offset, p.Total)
			return err
		}
		_, err := fmt.Fprintln(w, "no banned users")
		return err
	}
	fmt.Fprintf(w, "%d banned users; newest first, from %d\n", p.Total, p.Offset+1)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tBANNED AT (UTC)\tNOTE")
	for _, e := range p.Bans {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", e.User, banTime(e.At), clipText(e.Note, 80))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if p.Next > 0 {
		_, err := fmt.Fprintf(w, "more: --offset %d\n", p.Next)
		return err
	}
	return nil
}

func banTime(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05") }

// withModerateBroker reads the one user id argument and the flags, opens
// the db nodes' Redis and runs fn.
func withModerateBroker(c *cli.Context, d *roles.Config, fn func(ctx context.Context, c *cli.Context, b *broker.Client, user string, log *zap.Logger) error) error {
	c, args, err := parseFlagsAnywhere(c)
	if err != nil || c == nil {
		return err // nil, nil: help shown
	}
	if len(args) != 1 {
		return fmt.Errorf("want one user id, got %d arguments (occase moderate %s --help)", len(args), c.Command.Name)
	}
	user := args[0]
	if !chat.ValidUserID(user) {
		return fmt.Errorf("%q is not a user id", user)
	}
	return withModeration(c, *d, func(ctx context.Context, b *broker.Client, log *zap.Logger) error {
		return fn(ctx, c, b, user, log)
	})
}

// parseFlagsAnywhere parses the arguments of a command that skips urfave's
// own parsing, taking flags before and after the arguments alike: urfave/cli
// v2 stops at the first argument, and an operator writes `occase moderate ban
// 7 --remove-posts`. It returns a context reading the flags and the
// arguments; a nil context when it showed the help.
func parseFlagsAnywhere(c *cli.Context) (*cli.Context, []string, error) {
	set := flag.NewFlagSet(c.Command.Name, flag.ContinueOnError)
	set.SetOutput(io.Discard)
	for _, f := range c.Command.Flags {
		if err := f.Apply(set); err != nil {
			return nil, nil, err
		}
	}
	if set.Lookup("help") == nil {
		set.Bool("help", false, "")
	}
	var pos []string
	for args := c.Args().Slice(); ; {
		if err := set.Parse(args); err != nil {
			return nil, nil, fmt.Errorf("%w (occase moderate %s --help)", err, c.Command.Name)
		}
		if args = set.Args(); len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	if h, hs := set.Lookup("help"), set.Lookup("h"); h.Value.String() == "true" || (hs != nil && hs.Value.String() == "true") {
		return nil, nil, cli.ShowCommandHelp(c.Lineage()[1], c.Command.Name)
	}
	nc := cli.NewContext(c.App, set, c.Lineage()[1])
	nc.Command = c.Command
	return nc, pos, nil
}

// banUser bans user and, with removePosts, deletes its posts. The ban comes
// first, so that no session of the user publishes while its posts are
// taken; a publish that was in flight at the ban may still land after the
// first pass, which a second pass takes (a rerun takes any still later).
func banUser(ctx context.Context, b *broker.Client, user, note string, removePosts bool, log *zap.Logger) error {
	already, err := b.BanUser(ctx, user, time.Now().UnixMilli(), note)
	var listErr error
	if errors.Is(err, broker.ErrBanNotListed) {
		// The ban holds (sessions closed, logins refused); only the
		// operators' list lacks it, and the same command writes it. The
		// posts are still removed; the command fails at its end.
		listErr = fmt.Errorf("user %s is banned but not on the list of bans: run the same command again (%w)", user, err)
		err = nil
	}
	if err != nil {
		return noUser(user, err)
	}
	log.Info("user banned", zap.String("user", user), zap.Bool("renewed", already), zap.Bool("note", note != ""))
	if already {
		fmt.Printf("user %s was banned already: ban renewed (time and note replaced), sessions closed\n", user)
	} else {
		fmt.Printf("user %s banned, sessions closed\n", user)
	}
	if !removePosts {
		return listErr
	}
	n := 0
	for range 2 {
		ids, err := b.PostsOf(ctx, user)
		if err != nil {
			return fmt.Errorf("user %s is banned; its posts were not all deleted (%d were), run the command again: %w", user, n, err)
		}
		for _, id := range ids {
			err := b.DeletePost(ctx, id, user)
			switch {
			case errors.Is(err, broker.ErrPostNotFound), errors.Is(err, broker.ErrNotOwner):
				continue // gone meanwhile (expired, deleted)
			case err != nil:
				return fmt.Errorf("user %s is banned; its posts were not all deleted (%d were), run the command again: %w", user, n, err)
			}
			n++
		}
	}
	log.Info("posts of a banned user deleted", zap.String("user", user), zap.Int("deleted", n))
	fmt.Printf("user %s: %d posts deleted\n", user, n)
	return listErr
}

// noUser makes broker.ErrNoUser an operator's sentence.
func noUser(user string, err error) error {
	if errors.Is(err, broker.ErrNoUser) {
		return fmt.Errorf("no user %s: never registered, deleted by its owner, or expired", user)
	}
	return err
}
