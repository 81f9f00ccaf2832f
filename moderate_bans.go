package main

// `occase moderate ban|unban`: an operator bans a user (docs/operations.md
// "Banning a user"). The ban is a field of the user's hash in Redis, read by
// every login; the same script closes the user's live sessions on every
// node (broker.BanUser). With --remove-posts, the user's posts go as the
// author's own delete would take them.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/chat"
	"github.com/occase/occase/moderation"
	"github.com/occase/occase/roles"
	"github.com/urfave/cli/v2"
)

// banCommands are `occase moderate ban|unban`.
func banCommands() []*cli.Command {
	bd := serveDefaults()
	ud := serveDefaults()
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
				if err != nil {
					return err // banned; the posts not all deleted
				}
				if res.RemovePosts {
					fmt.Fprintf(w, "user %s: %d posts deleted\n", user, res.PostsDeleted)
				}
				return nil
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
				if !res.WasBanned {
					fmt.Fprintf(c.App.Writer, "user %s was not banned\n", user)
					return nil
				}
				fmt.Fprintf(c.App.Writer, "user %s unbanned\n", user)
				return nil
			})
		},
	}}
}

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
