package webapp

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// The whole moderation path against the real binary and a real Redis: a
// seller publishes over the protocol; a buyer reports the listing in the
// browser at phone size; the operator's `occase moderate reports` lists it
// with the buyer's reason and text; `occase moderate ban` of the buyer
// closes the buyer's live session, and the app says so and stops; a
// desktop tab of the seller sees the listing gone after `moderate remove`.
func TestBrowserModerationAgainstServe(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	chromiumPath(t)
	// On a real Redis the commands reach it directly; on the embedded
	// server (OCCASE_TEST_REDIS=embedded) only through the node's API.
	var s *serveBinary
	var modArgs []string
	if os.Getenv("OCCASE_TEST_REDIS") == "embedded" {
		var admin, tf string
		s, admin, tf = newServeBinaryWithAdmin(t, strings.Repeat("7", 64))
		modArgs = []string{"--node", admin, "--admin-token-file", tf}
	} else {
		s = newServeBinary(t)
		for i, a := range s.args {
			if a == "--redis" || a == "--redis-prefix" {
				modArgs = append(modArgs, a, s.args[i+1])
			}
		}
	}
	if !s.hasFlag(t, "--report-rate") {
		t.Skip("this server has no reports")
	}
	moderate := func(args ...string) (string, error) {
		cmd := exec.Command(s.bin, append(append([]string{"moderate", args[0]}, modArgs...), args[1:]...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	seller := dialProto(t, s.URL())
	reg := seller.mustOK(`{"cmd":"register"}`)
	sellerID := fmt.Sprint(reg["id"])
	pub := seller.mustOK(`{"cmd":"publish","items":[{"body":"{\"title\":\"Blue city bike\",\"msg\":\"Barely used\",\"price\":120}","to":[[[0,0,0]],[[0,0,0]]],"features":0,"range_values":[120,2020,0]}]}`)
	post := fmt.Sprint(pub["id"])
	if post == "" || post == "<nil>" {
		t.Fatalf("publish_ack without an id: %v", pub)
	}

	shots := shotDir(t, "moderation-serve")
	n := 0
	browser := startBrowser(t)
	b := newTab(t, browser, "buyer-phone", 390, 844, shots, &n)
	buyer := signUp(t, b, s.URL(), "Bea")
	b.do(chromedp.Navigate(s.URL() + "/#/post/" + post))
	b.wait("the listing", `document.getElementById("post-heading").textContent === "Blue city bike"`)
	b.click("#post-detail [data-testid=report-btn]")
	b.wait("the dialog", `document.getElementById("report-dialog").open`)
	b.click("#report-reason-scam")
	b.eval(`(() => { const t = document.getElementById("report-text"); t.value = "Wants a deposit first"; t.dispatchEvent(new Event("input")); return ""; })()`)
	b.shot("report-dialog")
	b.click("#report-send")
	b.wait("the confirmation", `!document.getElementById("report-done").hidden && `+hasText("#report-done", "Thanks — the moderators will look at it"))
	b.shot("report-thanks")
	b.click("#report-close")
	b.wait("Reported", exactText("#post-detail [data-testid=report-btn]", "Reported"))

	out, err := moderate("reports", "--json")
	if err != nil {
		t.Fatalf("moderate reports: %v\n%s", err, out)
	}
	var row struct {
		ID        json.Number `json:"id"`
		Author    string      `json:"author"`
		Reporters int         `json:"reporters"`
		Reasons   map[string]int
		Latest    []struct {
			By     string `json:"by"`
			Reason string `json:"reason"`
			Text   string `json:"text"`
		} `json:"latest"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(strings.TrimSpace(out), "\n", 2)[0]), &row); err != nil {
		t.Fatalf("moderate reports --json: %v\n%s", err, out)
	}
	if row.ID.String() != post || row.Author != sellerID || row.Reporters != 1 || row.Reasons["scam"] != 1 ||
		len(row.Latest) != 1 || row.Latest[0].By != buyer || row.Latest[0].Text != "Wants a deposit first" {
		t.Fatalf("the review queue's row: %+v (post %s, seller %s, buyer %s)\n%s", row, post, sellerID, buyer, out)
	}

	// The operator bans the buyer (say the report was abuse): the live
	// session closes with 4008 and the app stops.
	if out, err := moderate("ban", "--note", "browser test", buyer); err != nil {
		t.Fatalf("moderate ban: %v\n%s", err, out)
	}
	b.wait("the ban said", `!document.getElementById("banned").hidden && `+hasText("#banned", "This account was banned by the moderators."))
	b.shot("banned-live")
	b.do(chromedp.Reload())
	b.wait("the ban said again after a reload", `!document.getElementById("banned").hidden`)

	// The listing goes: a desktop guest tab on it sees it gone.
	d := newTab(t, browser, "guest-desktop", 1280, 800, shots, &n)
	d.do(chromedp.Navigate(s.URL() + "/#/post/" + post))
	d.wait("the listing", `document.getElementById("post-heading").textContent === "Blue city bike"`)
	if out, err := moderate("remove", post); err != nil || !strings.Contains(out, "removed post "+post) {
		t.Fatalf("moderate remove: %v\n%s", err, out)
	}
	if out, err := moderate("reports"); err != nil || !strings.Contains(out, "no reported posts") {
		t.Fatalf("the queue after the removal: %v\n%s", err, out)
	}
	d.do(chromedp.Reload())
	d.wait("the listing gone", `document.getElementById("post-heading").textContent !== "Blue city bike"`)
	d.shot("removed")
}
