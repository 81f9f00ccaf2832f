package main

// `occase moderate reports|dismiss|remove`: the operators' side of
// reported posts (docs/operations.md "Moderation"). Users report posts
// with the report command (docs/protocol.md "Reporting a post"); the
// reports wait in Redis, most reported first, until an operator dismisses
// them or removes the post (with --reason, telling its author why). The actions are the moderation package's;
// this file parses the command lines and prints the results.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/moderation"
	"github.com/urfave/cli/v2"
)

// reportCommands are `occase moderate reports|dismiss|remove`.
func reportCommands() []*cli.Command {
	// Each command's flags bind to its own copy of the serve defaults.
	var dl, dd, dr = serveDefaults(), serveDefaults(), serveDefaults()
	return []*cli.Command{{
		Name:  "reports",
		Usage: "list the reported posts, most reported first: id, author, distinct reporters, reasons, a snippet of the post, the latest texts",
		Flags: append(moderationFlags(&dl, "report-queue-max"),
			&cli.IntFlag{Name: "limit", Value: 50, Usage: "posts listed at most (1 to 1000)"},
			&cli.IntFlag{Name: "texts", Value: 3, Usage: "latest reports shown per post (1 to 20)"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per line instead of a table"}),
		Action: func(c *cli.Context) error {
			limit, texts := c.Int("limit"), c.Int("texts")
			if limit < 1 || limit > moderation.MaxListLimit {
				return fmt.Errorf("--limit %d: want 1 to %d", limit, moderation.MaxListLimit)
			}
			if texts < 1 || texts > moderation.MaxListTexts {
				return fmt.Errorf("--texts %d: want 1 to %d", texts, moderation.MaxListTexts)
			}
			return withModeration(c, dl, func(ctx context.Context, m moderator) error {
				q, err := m.Reports(ctx, limit, texts)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return writeReportsJSON(c.App.Writer, q.Reports)
				}
				return writeReportsTable(c.App.Writer, q.Reports, q.Queued, q.QueueMax)
			})
		},
	}, {
		Name:      "dismiss",
		Usage:     "clear a post's reports, keeping the post (it leaves the review queue until someone reports it again)",
		ArgsUsage: "<post id>",
		Flags:     moderationFlags(&dd),
		// Flags before or after the id, as ban takes them.
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			c, id, err := reportPostArg(c)
			if err != nil || c == nil {
				return err // nil, nil: help shown
			}
			return withModeration(c, dd, func(ctx context.Context, m moderator) error {
				d, err := m.Dismiss(ctx, id)
				if err != nil {
					return err
				}
				if d.DeletedByAuthor {
					fmt.Fprintf(c.App.Writer, "dismissed the reports of post %d (%s); its author had deleted it: the copy kept for review is dropped\n", d.Post, moderation.Reporters(d.Reporters))
					printPhotos(c.App.Writer, d.PhotosAnswer)
				} else if d.Shown {
					fmt.Fprintf(c.App.Writer, "dismissed the reports of post %d (%s); the post was hidden pending review and is shown again\n", d.Post, moderation.Reporters(d.Reporters))
				} else {
					fmt.Fprintf(c.App.Writer, "dismissed the reports of post %d (%s); the post stays\n", d.Post, moderation.Reporters(d.Reporters))
				}
				warnNotLogged(c, d.Logged)
				return nil
			})
		},
	}, {
		Name: "remove",
		Usage: "delete a post as its author's delete would (every node drops it, subscribers get post_deleted) " +
			"and its reports with it; with --reason its author gets a notice saying why",
		ArgsUsage: "<post id>",
		Flags: append(moderationFlags(&dr, "chat-queue-ttl"),
			&cli.StringFlag{Name: "reason", Usage: "tell the author why, with a notice: " + strings.Join(broker.RemovalReasons, ", ") + " (without it the author is told nothing)"},
			&cli.StringFlag{Name: "note", Usage: fmt.Sprintf("a line for the author in the notice, with --reason (at most %d bytes; the author sees it)", broker.MaxNoticeNote)}),
		// Flags before or after the id, as ban takes them.
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			c, id, err := reportPostArg(c)
			if err != nil || c == nil {
				return err // nil, nil: help shown
			}
			req := moderation.RemoveRequest{Reason: c.String("reason"), Note: c.String("note")}
			if err := req.CheckAs("--"); err != nil { // in the flags' words, before anything is opened
				return err
			}
			return withModeration(c, dr, func(ctx context.Context, m moderator) error {
				r, err := m.Remove(ctx, id, req)
				var e *moderation.Error
				if err != nil && (!errors.As(err, &e) || e.Result == nil) {
					return err
				}
				switch {
				case r.Resent:
					fmt.Fprintf(c.App.Writer, "post %d of user %s was removed before; its kept notice sent again\n", r.Post, r.Author)
				case r.DeletedByAuthor:
					fmt.Fprintf(c.App.Writer, "removed post %d of user %s (%s): deleted by its author before review; its snapshot and reports cleared, the removal recorded\n",
						r.Post, r.Author, moderation.Reporters(r.Reporters))
				default:
					fmt.Fprintf(c.App.Writer, "removed post %d of user %s (%s); every node drops it and its subscribers get post_deleted\n",
						r.Post, r.Author, moderation.Reporters(r.Reporters))
				}
				printPhotos(c.App.Writer, r.PhotosAnswer)
				warnNotLogged(c, r.Logged)
				switch {
				case err != nil:
					return err // removed; the author not told
				case r.Told:
					fmt.Fprintf(c.App.Writer, "user %s was told why (%s)\n", r.Author, r.Reason)
				case r.Reason != "":
					fmt.Fprintf(c.App.Writer, "user %s is gone: nobody to tell\n", r.Author)
				}
				return nil
			})
		},
	}}
}

// reportPostArg parses a dismiss or remove command line, flags anywhere
// (parseFlagsAnywhere), for its one post id; a nil context when it showed
// the help.
func reportPostArg(c *cli.Context) (*cli.Context, uint64, error) {
	c, args, err := parseFlagsAnywhere(c)
	if err != nil || c == nil {
		return nil, 0, err
	}
	if len(args) != 1 {
		return nil, 0, fmt.Errorf("give one post id (see %s --help)", c.Command.HelpName)
	}
	id, err := moderation.ParsePostID(args[0])
	if err != nil {
		return nil, 0, err
	}
	return c, id, nil
}

func writeReportsJSON(w io.Writer, list []moderation.ReportLine) error {
	enc := json.NewEncoder(w)
	for _, l := range list {
		if err := enc.Encode(l); err != nil {
			return err
		}
	}
	return nil
}

// writeReportsTable writes the table under a line that says how full the
// review queue is: queued posts of at most most (--report-queue-max, as
// the nodes run with it).
func writeReportsTable(w io.Writer, list []moderation.ReportLine, queued, most int) error {
	if len(list) == 0 {
		_, err := fmt.Fprintf(w, "no reported posts (the review queue holds at most %d)\n", most)
		return err
	}
	head := fmt.Sprintf("review queue: %d of at most %d reported posts", queued, most)
	if queued >= most {
		head += "; FULL: a newly reported post evicts the oldest with a single reporter, " +
			"or is not stored when every post has several (dismiss or remove to make room)"
	}
	if _, err := fmt.Fprintln(w, head); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POST\tAUTHOR\tREPORTERS\tREASONS\tPOST SNIPPET\tLATEST REPORTS")
	for _, l := range list {
		snip := l.Snippet
		switch {
		case l.Title != "" && snip != "":
			snip = l.Title + ": " + snip
		case l.Title != "":
			snip = l.Title
		}
		if l.Gone {
			snip = "(gone)"
		}
		// The marks go before the clipped snippet, so that the title
		// still shows.
		snip = clipText(snip, 50)
		if l.DeletedByAuthor {
			// Gone for everyone; the snippet is the snapshot kept of it.
			snip = "[DELETED BY ITS AUTHOR] " + snip
		}
		if l.Hidden {
			// Hidden posts come first: say why they lead the table.
			snip = "[HIDDEN pending review] " + snip
		}
		var texts []string
		for _, r := range l.Latest {
			t := r.Reason
			if r.Text != "" {
				t += ": " + r.Text
			}
			texts = append(texts, clipText(t, 60))
		}
		author := l.Author
		if author == "" {
			author = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\n", l.ID, author, l.Reporters, reasonCounts(l.Reasons),
			snip, strings.Join(texts, " | "))
	}
	return tw.Flush()
}

// reasonCounts writes "scam:2 spam:1", most given first.
func reasonCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ":" + strconv.Itoa(m[k])
	}
	return strings.Join(parts, " ")
}

// clipText is moderation.ClipText: user text made one safe line.
func clipText(s string, n int) string { return moderation.ClipText(s, n) }

// printPhotos says what became of a removed post's photos (docs/operations.md
// "Photos of hidden and removed listings").
func printPhotos(w io.Writer, r moderation.PhotosAnswer) {
	switch {
	case r.PhotosError != "":
		fmt.Fprintf(w, "photos not purged (%s): the image sweep deletes them later\n", r.PhotosError)
	case r.PhotosDeleted != nil && (*r.PhotosDeleted > 0 || r.PhotosKept > 0):
		fmt.Fprintf(w, "photos: %d deleted, %d kept (linked by another listing)\n", *r.PhotosDeleted, r.PhotosKept)
	case r.PhotosSent > 0:
		fmt.Fprintf(w, "photos: purge asked of %s\n", plural(r.PhotosSent, "img node"))
	}
	if len(r.Photos) > 0 {
		fmt.Fprintf(w, "purge from a CDN in front of the img nodes: %s\n", strings.Join(r.Photos, " "))
	}
}

// plural is n and noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
