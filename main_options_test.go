package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// TestEveryOptionDocumented: every serve flag has an OCCASE_ environment
// variable named after it, a usage text for --help, and a row in
// README.md's options table or docs/operations.md, so the three cannot
// drift apart. It names every flag that misses one.
func TestEveryOptionDocumented(t *testing.T) {
	var docs string
	for _, f := range []string{"README.md", "docs/operations.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs += string(b)
	}
	d := serveDefaults()
	var noEnv, noUsage, noDoc []string
	for _, f := range append(append(serveFlags(&d), pushFlags(&d)...), imageLifecycleFlags(&d)...) {
		name := f.Names()[0]
		want := "OCCASE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		ev, _ := f.(interface{ GetEnvVars() []string })
		if ev == nil || len(ev.GetEnvVars()) != 1 || ev.GetEnvVars()[0] != want {
			noEnv = append(noEnv, name)
		}
		if u, _ := f.(cli.DocGenerationFlag); u == nil || u.GetUsage() == "" {
			noUsage = append(noUsage, name)
		}
		if !strings.Contains(docs, "`--"+name+"`") {
			noDoc = append(noDoc, name)
		}
	}
	if len(noEnv) > 0 {
		t.Errorf("flags without their OCCASE_ variable: %s", strings.Join(noEnv, " "))
	}
	if len(noUsage) > 0 {
		t.Errorf("flags without a usage text: %s", strings.Join(noUsage, " "))
	}
	if len(noDoc) > 0 {
		t.Errorf("flags in neither README.md's options table nor docs/operations.md: %s", strings.Join(noDoc, " "))
	}
}

// docFiles are the pages a newcomer, an operator and an app developer
// read for options (docs/backup.md is left out: its flags are
// redis-cli's and rsync's); optionTables, those whose `| --flag |` rows
// are option tables with a default column.
var (
	docFiles = []string{"README.md", "docs/operations.md", "docs/http-api.md", "docs/security.md", "docs/push.md",
		"docs/protocol.md", "docs/benchmarks.md", "docs/menus.md", "webapp/README.md"}
	optionTables = map[string]bool{"README.md": true, "docs/operations.md": true, "docs/push.md": true}
)

// foreignFlags are other tools' flags the docs name (kubelet, docker,
// sysctl, any --help), and one tried and dropped (docs/benchmarks.md).
var foreignFlags = map[string]bool{"allowed-unsafe-sysctls": true, "build-arg": true, "system": true, "help": true,
	"redis-pipelines": true}

// allFlags maps every flag name of every command and subcommand to its
// flags (a name such as --redis is on several commands).
func allFlags() map[string][]cli.Flag {
	m := map[string][]cli.Flag{}
	var walk func([]*cli.Command)
	walk = func(cs []*cli.Command) {
		for _, c := range cs {
			for _, f := range c.Flags {
				for _, n := range f.Names() {
					m[n] = append(m[n], f)
				}
			}
			walk(c.Subcommands)
		}
	}
	walk(app().Commands)
	return m
}

// TestDocumentedOptionsExist is TestEveryOptionDocumented the other way
// round: every --flag (a --name-* pattern: the start of one) and every
// OCCASE_ variable the docs name is one of some occase command, and
// every row of an option table (`| --flag | default | ...`) gives the
// serve flag's real default, so a renamed flag or a changed default
// cannot leave the docs behind.
func TestDocumentedOptionsExist(t *testing.T) {
	flags := allFlags()
	d := serveDefaults()
	serve := map[string]cli.Flag{}
	for _, f := range append(append(serveFlags(&d), pushFlags(&d)...), imageLifecycleFlags(&d)...) {
		serve[f.Names()[0]] = f
	}
	mention := regexp.MustCompile("--[a-z][a-z0-9-]*\\*?")
	// Every OCCASE_ variable the docs name is some flag's, or one the
	// tests read (scripts/test.sh, webapp/README.md).
	envs := map[string]bool{"OCCASE_SKIP_BROWSER": true, "OCCASE_CHROMIUM": true, "OCCASE_ARTIFACTS": true,
		"OCCASE_BIN": true, "OCCASE_TEST_REDIS": true}
	for _, fs := range flags {
		for _, f := range fs {
			if ev, ok := f.(interface{ GetEnvVars() []string }); ok {
				for _, e := range ev.GetEnvVars() {
					envs[e] = true
				}
			}
		}
	}
	envMention := regexp.MustCompile(`OCCASE_[A-Z0-9_]*[A-Z0-9]`)
	for _, file := range docFiles {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for i, line := range strings.Split(string(b), "\n") {
			for _, e := range envMention.FindAllString(line, -1) {
				if !envs[e] {
					t.Errorf("%s:%d names %s, which is no flag's variable", file, i+1, e)
				}
			}
			for _, m := range mention.FindAllString(line, -1) {
				name := strings.TrimPrefix(m, "--")
				if seen[name] || foreignFlags[name] {
					continue
				}
				seen[name] = true
				if strings.HasSuffix(name, "*") || strings.HasSuffix(name, "-") {
					prefix := strings.TrimSuffix(name, "*")
					found := false
					for n := range flags {
						found = found || strings.HasPrefix(n, prefix)
					}
					if !found {
						t.Errorf("%s:%d names --%s, and no flag starts so", file, i+1, name)
					}
				} else if flags[name] == nil {
					t.Errorf("%s:%d names --%s, which no occase command has", file, i+1, name)
				}
			}
			if optionTables[file] && strings.HasPrefix(line, "| `--") {
				for _, e := range checkDefaultRow(line, serve) {
					t.Errorf("%s:%d: %s", file, i+1, e)
				}
			}
		}
	}
}

var backticked = regexp.MustCompile("`([^`]*)`")

// checkDefaultRow checks one option table row. Its first cell holds
// groups of flags separated by commas (`--a` / `--a-file` is one group,
// whose first flag holds the default); its second cell one default per
// group, separated by commas: the first backticked value, nothing (the
// default is empty, zero or off) or a parenthesis, which describes and is
// not checked. A second cell of one part stands for every group.
func checkDefaultRow(line string, serve map[string]cli.Flag) []string {
	cells := strings.Split(strings.ReplaceAll(line, `\|`, "\x00"), "|")
	if len(cells) < 4 {
		return []string{"option row with fewer than three cells"}
	}
	var groups []string
	for _, g := range strings.Split(cells[1], ",") {
		if m := backticked.FindStringSubmatch(g); m != nil {
			groups = append(groups, strings.TrimPrefix(m[1], "--"))
		}
	}
	var errs []string
	for _, name := range groups {
		if serve[name] == nil {
			errs = append(errs, fmt.Sprintf("--%s is not a serve flag", name))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	parts := splitTop(cells[2])
	if len(parts) == 1 && len(groups) > 1 && !backticked.MatchString(strings.TrimSpace(parts[0])) {
		for len(parts) < len(groups) {
			parts = append(parts, parts[0])
		}
	}
	if len(parts) != len(groups) {
		return []string{fmt.Sprintf("%d defaults for %d flags: cannot tell which is whose", len(parts), len(groups))}
	}
	for i, name := range groups {
		part := strings.TrimSpace(parts[i])
		v := flagDefault(serve[name])
		switch m := backticked.FindStringSubmatch(part); {
		case strings.HasPrefix(part, "("):
		case m == nil:
			if !zeroDefault(v) {
				errs = append(errs, fmt.Sprintf("--%s: the table gives no default, the binary's is %q", name, v))
			}
		case !sameDefault(m[1], v):
			errs = append(errs, fmt.Sprintf("--%s: the table says %q, the binary %q", name, m[1], v))
		}
	}
	return errs
}

// splitTop splits s at the commas outside parentheses and backticks.
func splitTop(s string) []string {
	var parts []string
	depth, tick, start := 0, false, 0
	for i, r := range s {
		switch {
		case r == '`':
			tick = !tick
		case tick:
		case r == '(':
			depth++
		case r == ')':
			depth--
		case r == ',' && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// flagDefault is the default --help shows.
func flagDefault(f cli.Flag) string {
	d := f.(cli.DocGenerationFlag)
	if s := d.GetDefaultText(); s != "" {
		return strings.Trim(s, `"`)
	}
	return strings.Trim(d.GetValue(), `"`)
}

func zeroDefault(v string) bool {
	switch v {
	case "", "0", "0s", "false", "[]":
		return true
	}
	return false
}

// sameDefault compares a documented default with the binary's, as text,
// as durations (60s is 1m0s) or as numbers with binary units (64KiB is
// 65536; 0.0333 is 1/30 to 1 %).
func sameDefault(doc, bin string) bool {
	if doc == bin {
		return true
	}
	if a, err := time.ParseDuration(doc); err == nil {
		b, err := time.ParseDuration(bin)
		return err == nil && a == b
	}
	a, okA := docNumber(doc)
	b, okB := docNumber(bin)
	return okA && okB && math.Abs(a-b) <= 0.01*math.Abs(b)
}

func docNumber(s string) (float64, bool) {
	mult := 1.0
	for suffix, m := range map[string]float64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	return f * mult, err == nil
}

// refusedAtStart runs the binary with args, which must be refused: a
// non-zero exit within seconds, one "occase: " line on stderr holding
// want, and no stack trace.
func refusedAtStart(t *testing.T, want string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var e bytes.Buffer
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Stderr = &e
	cmd.Env = append(os.Environ(), "OCCASE_LOG_FORMAT=")
	err := cmd.Run()
	var lines []string
	for _, l := range strings.Split(e.String(), "\n") {
		if strings.HasPrefix(l, "occase: ") {
			lines = append(lines, l)
		}
	}
	if err == nil || ctx.Err() != nil || len(lines) != 1 || !strings.Contains(lines[0], want) ||
		strings.Contains(e.String(), "goroutine ") || strings.Contains(e.String(), "panic:") {
		t.Errorf("occase %s: %v, stderr:\n%s\nwant one line holding %q", strings.Join(args, " "), err, e.String(), want)
	}
	return e.String()
}

// refusedAlone is refusedAtStart for a mistake found before the node
// logs anything: the refusal is all stderr holds.
func refusedAlone(t *testing.T, want string, args ...string) {
	t.Helper()
	if out := refusedAtStart(t, want, args...); strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("occase %s: more than the refusal on stderr:\n%s", strings.Join(args, " "), out)
	}
}

// Number flags that no value makes sense of are refused at start, with
// one line: a negative --idle-timeout crashed the node at its first
// connection; 0 there, in --login-timeout, --max-frame or --send-queue
// closed every connection at once; a burst of 0 beside a rate refused
// every request.
func TestBadNumberFlagsRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--idle-timeout", "-5s"}, "--idle-timeout -5s: must not be negative"},
		{[]string{"--drain-timeout", "-1s"}, "--drain-timeout -1s: must not be negative"},
		{[]string{"--chat-queue-cap", "-3"}, "--chat-queue-cap -3: must not be negative"},
		{[]string{"--report-rate", "-1"}, "--report-rate -1: must not be negative"},
		{[]string{"--idle-timeout", "0s"}, "--idle-timeout 0s: want more than 0"},
		{[]string{"--login-timeout", "0s"}, "--login-timeout 0s: want more than 0"},
		{[]string{"--max-frame", "0"}, "--max-frame 0: want at least 1024 bytes"},
		{[]string{"--send-queue", "0"}, "--send-queue 0: want at least 1"},
		{[]string{"--send-queue-bytes", "0"}, "--send-queue-bytes 0: want at least 1"},
		{[]string{"--chat-burst", "0"}, "--chat-burst 0: want at least 1 while --chat-rate is 50"},
		{[]string{"--read-burst", "0"}, "--read-burst 0: want at least 1 while --read-rate is 20"},
		{[]string{"--role", "dB"}, `unknown role "dB" (want db, img or all)`},
		{[]string{"--role", "db"}, "role db needs --redis"},
	} {
		refusedAlone(t, tc.want, append([]string{"serve", "--addr", "127.0.0.1:0", "--embedded-snapshot", ""}, tc.args...)...)
	}
}

// A Redis address no retry can reach and a stray argument are refused at
// start: the node used to retry "redis://host" in the background for
// ever, and dropped "serve extra" (the value of "--redis-cluster true",
// of "--redis= host") without a word.
func TestBadAddressesAndArgumentsRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--redis", "redis://cache:6379"}, `--redis "redis://cache:6379": want host:port`},
		{[]string{"--redis", "cache:redis"}, `--redis "cache:redis": want host:port`},
		{[]string{"--redis", "h1:7000,h2"}, `--redis "h2": want host:port`},
		{[]string{"--redis-sentinel", "s1:26379,s2", "--redis-master", "m"}, `--redis-sentinel "s2": want host:port`},
		{[]string{"--redis-cluster", "true"}, `serve takes no arguments, got "true"`},
	} {
		refusedAlone(t, tc.want, append([]string{"serve", "--addr", "127.0.0.1:0", "--embedded-snapshot", ""}, tc.args...)...)
	}
	refusedAtStart(t, `--redis "redis://cache:6379": want host:port`, "moderate", "bans", "--redis", "redis://cache:6379")
}

// An embedded snapshot that cannot be written is refused at start: the
// node used to run with its data in memory only, logging a failed write
// every 5 s.
func TestUnwritableSnapshotRefused(t *testing.T) {
	refusedAtStart(t, "the embedded snapshot /proc/occase/embedded.json cannot be written: mkdir /proc/occase",
		"serve", "--addr", "127.0.0.1:0", "--embedded-snapshot", "/proc/occase/embedded.json")
}

// A listen address in use is refused with the flag that names it: the
// line said "listen on host:port" for --addr and --admin-addr alike.
func TestAddressInUseNamesItsFlag(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	used := l.Addr().String()
	refusedAtStart(t, "--addr: listen on "+used+": ", "serve", "--addr", used, "--embedded-snapshot", "")
	refusedAtStart(t, "--admin-addr: listen on "+used+": ", "serve", "--addr", "127.0.0.1:0", "--admin-addr", used, "--embedded-snapshot", "")
}

// occase probe (the container's HEALTHCHECK) passes on 200 only, and
// without a URL says what it needs: it said `Get "": unsupported protocol
// scheme ""`.
func TestProbe(t *testing.T) {
	code := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }))
	defer srv.Close()
	if err := probe(context.Background(), srv.URL); err != nil {
		t.Fatalf("probe of a 200: %v", err)
	}
	code = http.StatusServiceUnavailable
	if err := probe(context.Background(), srv.URL); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("probe of a 503: %v", err)
	}
	if err := probe(context.Background(), ""); err == nil || !strings.Contains(err.Error(), "probe needs a URL") {
		t.Fatalf("probe without a URL: %v", err)
	}
}
