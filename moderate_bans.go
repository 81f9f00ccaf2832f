package main

// `occase moderate ban|unban|bans`: an operator bans a user (docs/operations.md
// "Banning a user"). The ban is a field of the user's hash in Redis, read by
// every login; the same script closes the user's live sessions on every
// node (broker.BanUser). With --remove-posts, the user's posts go as the
// author's own delete would take them. `bans` lists the bans, newest
// first, from the list kept beside them (broker/banlist.go).

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
	"github.com/occase/occase/moderation"
	"github.com/occase/occase/roles"
	"github.com/urfave/cli/v2"
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
		SkipFlagParsing: true, // flags before or after the id: withModerateUser
		Usage:           "ban a user: its logins are refused (reason banned, close 4008) and its live sessions on every node closed; the account, its queue and (without --remove-posts) its posts are kept",
		ArgsUsage:       "<user id>",
		Flags:           banFlags,
		Action: func(c *cli.Context) error {
			return withModerateUser(c, &bd, func(ctx context.Context, c *cli.Context, m moderator, user string) error {
				res, err := m.Ban(ctx, user, moderation.BanRequest{Note: c.String("note"), RemovePosts: c.Bool("remove-posts")})
				var e *moderation.Error
				if err != nil && (!errors.As(err, &e) || e.Result == nil) {
					return err
				}
				w := c.App.Writer
				if res.Already {
					fmt.Fprintf(w, "user %s was banned already: ban renewed (time and note replaced), sessions closed\n", user)
				} else {
					fmt.Fprintf(w, "user %s banned, sessions closed\n", user)
				}
				warnNotLogged(c, res.Logged)
				if err != nil && e.Reason != moderation.ReasonBanNotListed {
					return err // banned; the posts not all deleted
				}
				if res.RemovePosts {
					fmt.Fprintf(w, "user %s: %d posts deleted\n", user, res.PostsDeleted)
				}
				// nil, or banned and the posts taken but not on the list of
				// bans: "run the same command again", exit status 1.
				return err
			})
		},
	}, {
		Name:            "unban",
		SkipFlagParsing: true,
		Usage:           "lift a user's ban: its next login is let in",
		ArgsUsage:       "<user id>",
		Flags:           moderationFlags(&ud),
		Action: func(c *cli.Context) error {
			return withModerateUser(c, &ud, func(ctx context.Context, c *cli.Context, m moderator, user string) error {
				res, err := m.Unban(ctx, user)
				if err != nil {
					return err
				}
				warnNotLogged(c, res.Logged)
				if !res.WasBanned {
					fmt.Fprintf(c.App.Writer, "user %s was not banned\n", user)
					return nil
				}
				fmt.Fprintf(c.App.Writer, "user %s unbanned\n", user)
				return nil
			})
		},
	}, {
		Name:  "bans",
		Usage: "list the banned users, newest ban first: user id, when, note (entries of accounts gone since are cleaned as they are met)",
		Flags: append(append(moderationFlags(&ld), pageFlags("bans", moderation.MaxBansLimit, " (the line under the table gives the next page's)")...),
			&cli.BoolFlag{Name: "rebuild", Usage: "instead of listing, put on the list every banned user it lacks (bans made before the list existed, or whose list write failed): reads every user hash, in SCAN steps of 1000; running it again adds nothing"}),
		Action: func(c *cli.Context) error {
			if c.Bool("rebuild") && (c.IsSet("limit") || c.IsSet("offset")) {
				return fmt.Errorf("--rebuild lists nothing: it takes no --limit or --offset")
			}
			if c.Bool("rebuild") {
				return withModeration(c, ld, func(ctx context.Context, m moderator) error {
					r, err := m.RebuildBans(ctx)
					if err != nil {
						if r.Added > 0 {
							fmt.Fprintf(c.App.Writer, "stopped: %d bans added before the error; run it again\n", r.Added)
						}
						return err
					}
					if c.Bool("json") {
						return json.NewEncoder(c.App.Writer).Encode(r)
					}
					fmt.Fprintf(c.App.Writer, "%d users scanned, %d banned: %d added to the list, %d listed already\n",
						r.Scanned, r.Banned, r.Added, r.Listed)
					if r.Dropped > 0 {
						fmt.Fprintf(c.App.Writer, "the list is full: its %d oldest entries were dropped from it (their bans hold)\n", r.Dropped)
					}
					return nil
				})
			}
			limit, offset, err := pageArgs(c, moderation.MaxBansLimit, broker.MaxBanList)
			if err != nil {
				return err
			}
			return withModeration(c, ld, func(ctx context.Context, m moderator) error {
				page, err := m.Bans(ctx, offset, limit)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return writeBansJSON(c.App.Writer, page)
				}
				return writeBansTable(c.App.Writer, page)
			})
		},
	}}
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

// withModerateUser reads the one user id argument and the flags, and runs
// fn on a moderator (withModeration).
func withModerateUser(c *cli.Context, d *roles.Config, fn func(ctx context.Context, c *cli.Context, m moderator, user string) error) error {
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
	return withModeration(c, *d, func(ctx context.Context, m moderator) error {
		return fn(ctx, c, m, user)
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

// pageFlags are the flags of a command that lists a page of what (bans,
// log entries): --limit (1 to maxLimit), --offset and --json.
func pageFlags(what string, maxLimit int, offsetHint string) []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "limit", Value: 50, Usage: fmt.Sprintf("%s listed at most (1 to %d)", what, maxLimit)},
		&cli.IntFlag{Name: "offset", Value: 0, Usage: "skip this many of the newest" + offsetHint},
		&cli.BoolFlag{Name: "json", Usage: "one JSON object per line instead of a table"},
	}
}

// pageArgs reads and checks --limit and --offset (pageFlags) before
// anything is opened.
func pageArgs(c *cli.Context, maxLimit, maxOffset int) (limit, offset int, err error) {
	limit, offset = c.Int("limit"), c.Int("offset")
	return limit, offset, moderation.CheckPage("--", offset, limit, maxLimit, maxOffset)
}
