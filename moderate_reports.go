package main

// `occase moderate reports|dismiss|remove`: the operators' side of
// reported posts (docs/operations.md "Moderation"). Users report posts
// with the report command (docs/protocol.md "Reporting a post"); the
// reports wait in Redis, most reported first, until an operator dismisses
// them or removes the post.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/occase/occase/broker"
	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
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
			if limit < 1 || limit > 1000 {
				return fmt.Errorf("--limit %d: want 1 to 1000", limit)
			}
			if texts < 1 || texts > 20 {
				return fmt.Errorf("--texts %d: want 1 to 20", texts)
			}
			return withModeration(c, dl, func(ctx context.Context, b *broker.Client, _ *zap.Logger) error {
				list, err := b.ReportedPosts(ctx, limit, texts)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return writeReportsJSON(c.App.Writer, list)
				}
				queued, err := b.ReportQueueLen(ctx)
				if err != nil {
					return err
				}
				return writeReportsTable(c.App.Writer, list, queued, c.Int("report-queue-max"))
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
			return withModeration(c, dd, func(ctx context.Context, b *broker.Client, _ *zap.Logger) error {
				n, err := b.DismissReports(ctx, id)
				if err != nil {
					return err
				}
				if n == 0 {
					return fmt.Errorf("post %d has no reports: nothing dismissed", id)
				}
				fmt.Fprintf(c.App.Writer, "dismissed the reports of post %d (%s); the post stays\n", id, reporters(n))
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
			reason, note := c.String("reason"), c.String("note")
			if reason != "" && !slices.Contains(broker.RemovalReasons, reason) {
				return fmt.Errorf("--reason %q: want one of %s", reason, strings.Join(broker.RemovalReasons, ", "))
			}
			if note != "" && reason == "" {
				return errors.New("--note is for the author's notice: give --reason too")
			}
			if len(note) > broker.MaxNoticeNote || !utf8.ValidString(note) {
				return fmt.Errorf("--note: at most %d bytes of UTF-8, not %d", broker.MaxNoticeNote, len(note))
			}
			if reason != "" {
				// Every other bound, before anything is removed.
				if err := (broker.Notice{Kind: broker.NoticePostRemoved, Reason: reason, Note: note}).Check(); err != nil {
					return fmt.Errorf("--note: %w", err)
				}
			}
			return withModeration(c, dr, func(ctx context.Context, b *broker.Client, log *zap.Logger) error {
				r, err := removePost(ctx, b, id, reason, note, c.Duration("chat-queue-ttl"))
				author, n := r.Author, r.Reporters
				if errors.Is(err, broker.ErrPostNotFound) {
					// Reports can outlive a post only if a node of an
					// older version deleted it; clear them.
					if left, derr := b.DismissReports(ctx, id); derr == nil && left > 0 {
						return fmt.Errorf("no post %d (deleted or expired already); cleared its leftover reports (%s)", id, reporters(left))
					}
					return fmt.Errorf("no post %d (never published, or deleted or expired already)", id)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "removed post %d of user %s (%s); every node drops it and its subscribers get post_deleted\n",
					id, author, reporters(n))
				if r.Notice > 0 {
					log.Info("author told why a post was removed", zap.Uint64("post", id), zap.String("user", author), zap.String("reason", reason))
					fmt.Fprintf(c.App.Writer, "user %s was told why (%s)\n", author, reason)
				} else if reason != "" {
					fmt.Fprintf(c.App.Writer, "user %s is gone: nobody to tell\n", author)
				}
				return nil
			})
		},
	}}
}

// removePost removes post id for an operator (broker.RemoveWithNotice):
// with a reason (one of broker.RemovalReasons) its author gets a notice
// with note, living ttl (the offline queue's lifetime); without one the
// author is told nothing. An error after the removal says the post is
// gone but the author was not told.
func removePost(ctx context.Context, b *broker.Client, id uint64, reason, note string, ttl time.Duration) (broker.Removed, error) {
	return b.RemoveWithNotice(ctx, id, broker.Removal{Reason: reason, Note: note, At: time.Now().UnixMilli(), TTL: ttl})
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
	id, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil || id == 0 {
		return nil, 0, fmt.Errorf("%q is not a post id (a number from 1)", args[0])
	}
	return c, id, nil
}

func reporters(n int) string {
	if n == 1 {
		return "1 reporter"
	}
	return strconv.Itoa(n) + " reporters"
}

// reportLine is one reported post as `reports --json` writes it.
type reportLine struct {
	ID        uint64          `json:"id"`
	Author    string          `json:"author"`
	Gone      bool            `json:"gone,omitempty"`
	Reporters int             `json:"reporters"`
	Reasons   map[string]int  `json:"reasons"`
	Title     string          `json:"title,omitempty"`
	Snippet   string          `json:"snippet"`
	Latest    []broker.Report `json:"latest"`
}

func toReportLine(p broker.ReportedPost) reportLine {
	l := reportLine{ID: p.ID, Author: p.Author, Gone: p.Post == "", Reporters: p.Reporters, Reasons: p.Reasons,
		Latest: []broker.Report{}}
	l.Title, l.Snippet = postSnippet(p.Post)
	for _, s := range p.Latest {
		var r broker.Report
		if json.Unmarshal([]byte(s), &r) == nil {
			l.Latest = append(l.Latest, r)
		}
	}
	return l
}

func writeReportsJSON(w io.Writer, list []broker.ReportedPost) error {
	enc := json.NewEncoder(w)
	for _, p := range list {
		if err := enc.Encode(toReportLine(p)); err != nil {
			return err
		}
	}
	return nil
}

// writeReportsTable writes the table under a line that says how full the
// review queue is: queued posts of at most most (--report-queue-max, as
// the nodes run with it).
func writeReportsTable(w io.Writer, list []broker.ReportedPost, queued, most int) error {
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
	for _, p := range list {
		l := toReportLine(p)
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
			clipText(snip, 50), strings.Join(texts, " | "))
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

// postSnippet reads a stored post's body: the app's JSON string, whose
// "title" and "msg" (the members the search indexes) are shown when it
// has them, else the body itself.
func postSnippet(post string) (title, snippet string) {
	if post == "" {
		return "", ""
	}
	var p struct {
		Body string `json:"body"`
	}
	if json.Unmarshal([]byte(post), &p) != nil {
		return "", clipText(post, 120)
	}
	var b struct {
		Title string `json:"title"`
		Msg   string `json:"msg"`
	}
	if json.Unmarshal([]byte(p.Body), &b) == nil && (b.Title != "" || b.Msg != "") {
		return clipText(b.Title, 80), clipText(b.Msg, 120)
	}
	return "", clipText(p.Body, 120)
}

// clipText keeps the first n characters of s on one line, with every
// control or formatting character (escape sequences, bidirectional
// overrides: text from users must not steer the operator's terminal) made
// a space.
func clipText(s string, n int) string {
	var b strings.Builder
	i := 0
	for _, r := range s {
		if i == n {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\t' {
			r = ' '
		}
		b.WriteRune(r)
		i++
	}
	return b.String()
}
