package webapp

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/wire"
)

// TestCloseCodesAgree holds docs/protocol.md's close-code table and the
// app's codes.js to wire.CloseCodes(), the server's one table: the same
// codes, reason texts, whether to reconnect, and the least delay. codes.js
// may add 1006, which browsers report for a connection lost without a
// close frame and no server sends.
func TestCloseCodesAgree(t *testing.T) {
	want := map[int]wire.CloseInfo{}
	for _, c := range wire.CloseCodes() {
		want[c.Code] = c
	}

	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(doc)
	if i := strings.Index(section, "### Close codes"); i >= 0 {
		section = section[i:]
		if j := strings.Index(section[4:], "\n### "); j >= 0 {
			section = section[:j+4]
		}
	}
	docs := map[int]wire.CloseInfo{}
	row := regexp.MustCompile("(?m)^\\| (\\d{4}) \\| `?([^`|]*?)`? *\\| ([^|]*?) \\|")
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		code, _ := strconv.Atoi(m[1])
		c := wire.CloseInfo{Code: code, Reason: m[2]}
		switch rec := m[3]; {
		case rec == "yes":
			c.Reconnect = true
		case rec == "no":
		case strings.HasPrefix(rec, "after ≥ ") && strings.HasSuffix(rec, " s"):
			s, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rec, "after ≥ "), " s"))
			if err != nil {
				t.Fatalf("docs, close %d: reconnect %q", code, rec)
			}
			c.Reconnect, c.MinDelay = true, time.Duration(s)*time.Second
		default:
			t.Fatalf("docs, close %d: reconnect %q is not yes, no or after ≥ N s", code, rec)
		}
		docs[code] = c
	}
	compare(t, "docs/protocol.md", docs, want, nil)

	js, err := os.ReadFile("static/assets/codes.js")
	if err != nil {
		t.Fatal(err)
	}
	app := map[int]wire.CloseInfo{}
	entry := regexp.MustCompile(`(?m)^\s*(\d{4}): \{ reason: "([^"]*)", reconnect: (true|false), delay: (\d+),`)
	for _, m := range entry.FindAllStringSubmatch(string(js), -1) {
		code, _ := strconv.Atoi(m[1])
		ms, _ := strconv.Atoi(m[4])
		app[code] = wire.CloseInfo{Code: code, Reason: m[2], Reconnect: m[3] == "true", MinDelay: time.Duration(ms) * time.Millisecond}
	}
	compare(t, "codes.js", app, want, map[int]bool{1006: true})
	if b, ok := app[closeBannedCode]; !ok || b.Reconnect || b.MinDelay != 0 || b.Reason == "" {
		t.Errorf("codes.js: 4008 (banned) must be there, with a reason text, and not reconnect: %+v", b)
	}
}

// closeBannedCode is the close code of a banned account.
const closeBannedCode = int(closeBanned)

// compare names every difference between got (read from where) and want.
func compare(t *testing.T, where string, got, want map[int]wire.CloseInfo, extra map[int]bool) {
	t.Helper()
	if len(got) == 0 {
		t.Fatalf("%s: no close codes found", where)
	}
	var diffs []string
	for code, w := range want {
		g, ok := got[code]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%d missing", code))
		case g != w:
			diffs = append(diffs, fmt.Sprintf("%d: %+v, wire says %+v", code, g, w))
		}
	}
	for code := range got {
		if _, ok := want[code]; !ok && !extra[code] {
			diffs = append(diffs, fmt.Sprintf("%d is not in wire's table", code))
		}
	}
	if len(diffs) > 0 {
		t.Errorf("%s disagrees with wire.CloseCodes():\n%s", where, strings.Join(diffs, "\n"))
	}
}
