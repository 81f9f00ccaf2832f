package main

// `occase moderate log`: who did what (docs/operations.md "Who did what:
// the moderation log"). Every dismiss, remove, ban and unban done through
// the moderation Service is appended to a bounded list in Redis; this
// reads it, newest first, from Redis or through a node's API (--node).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/moderation"
	"github.com/urfave/cli/v2"
)

func logCommand() *cli.Command {
	d := serveDefaults()
	return &cli.Command{
		Name:  "log",
		Usage: "list the moderation actions, newest first: when, who (the token's name, or cli:user@host as the CLI declared it), from which address, what, on which post or user, the result",
		Flags: append(moderationFlags(&d), pageFlags("entries", moderation.MaxLogLimit, "")...),
		Action: func(c *cli.Context) error {
			limit, offset, err := pageArgs(c, moderation.MaxLogLimit, broker.MaxModLog)
			if err != nil {
				return err
			}
			return withModeration(c, d, func(ctx context.Context, m moderator) error {
				p, err := m.Log(ctx, offset, limit)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					enc := json.NewEncoder(c.App.Writer)
					for _, e := range p.Entries {
						if err := enc.Encode(e); err != nil {
							return err
						}
					}
					return nil
				}
				return writeLogTable(c.App.Writer, p)
			})
		},
	}
}

// writeLogTable writes the page; every string in it is made one safe
// line (clipText): notes are operators' text, and a token file's names
// or a CLI's declared user could be anything.
func writeLogTable(w io.Writer, p moderation.LogPage) error {
	if len(p.Entries) == 0 {
		_, err := fmt.Fprintf(w, "no moderation actions from offset %d (%d logged)\n", p.Offset, p.Total)
		return err
	}
	fmt.Fprintf(w, "%d moderation actions logged; newest first, from %d\n", p.Total, p.Offset+1)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN (UTC)\tBY\tADDRESS\tACTION\tTARGET\tRESULT\tDETAILS")
	for _, e := range p.Entries {
		var d []string
		if e.Reason != "" {
			d = append(d, "reason "+e.Reason)
		}
		if e.RemovePosts {
			d = append(d, "remove posts")
		}
		if e.Detail != "" {
			d = append(d, e.Detail)
		}
		if e.Note != "" {
			d = append(d, "note: "+e.Note)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", banTime(e.At), clipText(e.By, 48), dash(clipText(e.Addr, 48)),
			clipText(e.Action, 10), clipText(e.Target, 24), clipText(e.Result, 24), clipText(strings.Join(d, "; "), 100))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if next := p.Offset + len(p.Entries); next < p.Total {
		_, err := fmt.Fprintf(w, "more: --offset %d\n", next)
		return err
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cliOperator is who the CLI on Redis says acted: cli:<$USER>@<host>.
// Self-declared: whoever can reach Redis can write anything there.
func cliOperator() string {
	user := os.Getenv("USER")
	if user == "" {
		user = "unknown"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return "cli:" + user + "@" + host
}

// warnNotLogged tells the operator, on stderr, that an action done was
// not recorded in the moderation log (the node's or this command's log
// has the error); the action stands.
func warnNotLogged(c *cli.Context, logged bool) {
	if !logged {
		fmt.Fprintln(c.App.ErrWriter, "warning: done, but the moderation log could not record it (see the log for the error)")
	}
}
