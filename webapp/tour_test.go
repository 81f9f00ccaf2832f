package webapp

import (
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserTour walks two people through the whole app against the real
// binary (role all; OCCASE_TEST_REDIS=embedded runs it on the embedded
// broker): a first visit, sign-up, browsing and filtering, a listing with
// two photos seen live by the other, chat with typing and read ticks both
// ways, an edit, sold, a report, block and unblock, an operator's removal
// with a reason told to the seller, and the seller deleting the account.
// Every step is shot at phone (390x844) and desktop (1280x800) size into
// $OCCASE_ARTIFACTS/tour (default /tmp/webui-shots/tour), and at phone size
// no step may scroll sideways.
func TestBrowserTour(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	chromiumPath(t)
	const token = "tour-test-token-0123456789abcdef0123456789"
	s, admin, tf := newServeBinaryWithAdmin(t, token)
	if !s.hasFlag(t, "--admin-token-file") || !s.hasFlag(t, "--report-rate") {
		t.Skip("this server has no moderation API")
	}
	moderate := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(s.bin, append(append([]string{"moderate"}, args...), "--node", admin, "--admin-token-file", tf)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("moderate %v: %v\n%s", args, err, out)
		}
		return string(out)
	}

	shots := shotDir(t, "tour")
	n := 0
	browser := startBrowser(t)
	seller := newTab(t, browser, "seller", 1280, 800, shots, &n)
	buyer := newTab(t, browser, "buyer", 390, 844, shots, &n)
	size := map[*tab][2]int64{seller: {1280, 800}, buyer: {390, 844}}
	// both shoots step at phone and desktop size, then puts the tab back to
	// its own size; at phone size the page must not scroll sideways.
	both := func(b *tab, step string) {
		t.Helper()
		for _, sz := range []struct {
			name string
			w, h int64
		}{{"phone", 390, 844}, {"desktop", 1280, 800}} {
			b.do(chromedp.EmulateViewport(sz.w, sz.h))
			time.Sleep(150 * time.Millisecond) // let the layout settle before the shot
			if sz.name == "phone" {
				if got := b.eval(`String(document.documentElement.scrollWidth - document.documentElement.clientWidth)`); got != "0" {
					t.Errorf("%s at %s: the page scrolls sideways by %spx", b.name, step, got)
				}
			}
			b.shot(step + "-" + sz.name)
		}
		b.do(chromedp.EmulateViewport(size[b][0], size[b][1]))
	}

	// First visit, as a guest, then sign-up.
	ids := map[*tab]string{}
	for _, u := range []struct {
		tab  *tab
		nick string
	}{{seller, "Sofia"}, {buyer, "Bruno"}} {
		u.tab.do(chromedp.Navigate(s.URL() + "/"))
		u.tab.do(chromedp.WaitVisible(chromedp.CSS("#signup-btn")))
		u.tab.wait("the guest list said", `document.getElementById("browse-summary").textContent !== ""`)
		both(u.tab, "first-visit")
		// Nothing published yet: said in words, with no "Load more".
		u.tab.wait("the empty list said", `document.getElementById("browse-summary").textContent.startsWith("No listings yet.") && document.getElementById("load-more").hidden`)
		u.tab.click("#signup-btn")
		u.tab.do(chromedp.WaitVisible(chromedp.CSS("#register-btn")))
		both(u.tab, "sign-up")
		u.tab.typeInto("#nick-input", u.nick)
		u.tab.click("#register-btn")
		u.tab.state("online")
		ids[u.tab] = storedUser(t, u.tab)
		u.tab.wait("no Load more for a member's empty list", `document.getElementById("load-more").hidden && document.getElementById("browse-summary").textContent.startsWith("No listings yet.")`)
		both(u.tab, "signed-up")
	}

	// The buyer follows the first country.
	buyer.eval(`(() => { const s = document.getElementById("filter-loc-0"); s.value = "0"; s.dispatchEvent(new Event("change")); return "" })()`)
	buyer.click("#filter-apply")
	buyer.wait("filter applied", `document.getElementById("browse-summary").textContent.includes(
	  "in " + document.getElementById("filter-loc-0").selectedOptions[0].textContent)`)
	both(buyer, "filtered-empty")
	// At phone size the price range's two boxes sit on one line.
	buyer.eval(`document.getElementById("filter-box").open = true; ""`)
	if got := buyer.eval(`String(document.getElementById("filter-price-min").getBoundingClientRect().top === document.getElementById("filter-price-max").getBoundingClientRect().top)`); got != "true" {
		t.Errorf("the price range's boxes wrap onto two lines at phone size")
	}

	// The seller publishes with two photos, a PNG and a JPEG.
	const title = "Blue city bicycle"
	jp := filepath.Join(t.TempDir(), "saddle.jpg")
	{
		img := image.NewRGBA(image.Rect(0, 0, 400, 300))
		for y := range 300 {
			for x := range 400 {
				img.Set(x, y, color.RGBA{200, uint8(y * 255 / 300), uint8(x * 255 / 400), 255})
			}
		}
		f, err := os.Create(jp)
		if err != nil {
			t.Fatal(err)
		}
		if err := jpeg.Encode(f, img, nil); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	seller.click("#tab-publish")
	both(seller, "sell-empty")
	seller.click("#pub-submit")
	seller.wait("the form's errors", `!document.getElementById("pub-title-err").hidden`)
	both(seller, "sell-errors")
	seller.typeInto("#pub-title", title)
	seller.pickFirst("pub-loc")
	seller.pickFirst("pub-prod")
	seller.click("#pub-feat-2")
	seller.typeInto("#pub-price", "350")
	seller.typeInto("#pub-year", "2019")
	seller.typeInto("#pub-km", "1200")
	seller.typeInto("#pub-desc", "Seven gears, new tyres. Collection in the city centre, evenings or weekends.")
	seller.do(chromedp.SetUploadFiles(chromedp.CSS("#pub-photos"), []string{writePhoto(t), jp}))
	seller.wait("two previews", `document.querySelectorAll("#pub-previews img").length === 2`)
	// No upload bar before anything uploads.
	if got := seller.eval(`String([...document.querySelectorAll("#pub-previews progress")].every(p => getComputedStyle(p).visibility === "hidden"))`); got != "true" {
		t.Errorf("upload bars show before the upload")
	}
	seller.wait("the form's summary gone once all is right", `document.getElementById("pub-status").textContent === ""`)
	both(seller, "sell-filled")
	seller.click("#pub-submit")
	seller.wait("published", hasText("#pub-status", "Published"))
	both(seller, "published")
	seller.click("#tab-mine")
	seller.wait("own post listed", hasText("#mine-list [data-testid=post-title]", title))
	seller.wait("counted in the same word as Browse", `document.getElementById("mine-summary").textContent.startsWith("1 listing.")`)
	both(seller, "my-posts")

	buyer.wait("the listing arrives live", hasText("#post-list [data-testid=post-title]", title))
	buyer.wait("its photo loaded", `(() => { const i = [...document.querySelectorAll("#post-list [data-testid=post-photo]")];
	  return i.length > 0 && i.every(i => i.complete && i.naturalWidth > 0); })()`)
	buyer.wait("one listing, all there is", `document.getElementById("browse-summary").textContent.startsWith("1 listing in ") && document.getElementById("load-more").hidden`)
	both(buyer, "live-listing")
	buyer.click(`#post-list [data-testid=post-link]`)
	buyer.wait("the listing page", `!document.getElementById("post-view").hidden && document.getElementById("post-heading").textContent === `+js(title))
	buyer.wait("two photos", `document.querySelectorAll("[data-testid=gallery-photo] img").length === 2`)
	both(buyer, "listing-page")
	post := buyer.eval(`location.hash.split("/")[2]`)

	// Chat both ways, typing, read ticks.
	buyer.click("[data-testid=detail-chat]")
	buyer.do(chromedp.WaitVisible(chromedp.CSS("#chat-input")))
	buyer.wait("the empty chat explained", `!document.getElementById("chat-empty").hidden && `+hasText("#chat-empty", "No messages yet. Ask Sofia"))
	both(buyer, "chat-empty")
	const q1 = "Hello! Is it still available?"
	buyer.typeInto("#chat-input", q1)
	buyer.click("#chat-send")
	buyer.wait("stored", tickOf(q1)+` !== "pending" && `+tickOf(q1)+` !== "absent"`)
	seller.click("#tab-chats")
	seller.wait("the conversation listed", `document.querySelectorAll("#chat-list [data-testid=chat-row]").length === 1`)
	both(seller, "chats-list")
	seller.click("#chat-list [data-testid=chat-row]")
	seller.wait("the line", hasText("#chat-messages [data-testid=chat-text]", q1))
	buyer.wait("read", tickOf(q1)+` === "read"`)
	seen := false
	for _, w := range strings.Fields("Could I see it on Saturday morning?") {
		buyer.typeInto("#chat-input", w+" ")
		if seller.poll(`!document.getElementById("chat-typing").hidden`, 1500*time.Millisecond) == nil {
			seen = true
			break
		}
	}
	if !seen {
		t.Fatal("the seller never saw the buyer typing")
	}
	both(seller, "typing")
	buyer.click("#chat-send")
	const r1 = "Yes, Saturday at ten works. Ring the bell at number 12."
	seller.typeInto("#chat-input", r1)
	seller.click("#chat-send")
	buyer.wait("the answer", hasText("#chat-messages [data-testid=chat-text]", r1))
	seller.wait("read by the buyer", tickOf(r1)+` === "read"`)
	both(seller, "chat")
	both(buyer, "chat")

	// Edit and mark sold.
	seller.click("#tab-mine")
	seller.click("#mine-list [data-testid=edit-post]")
	seller.wait("the form holds the listing", `document.getElementById("pub-title").value === `+js(title))
	both(seller, "editing")
	const edited = "Blue city bicycle, new chain"
	seller.eval(`(() => { for (const [id, v] of [["pub-title", ` + js(edited) + `], ["pub-price", "300"]]) { const i = document.getElementById(id); i.value = v; i.dispatchEvent(new Event("input", {bubbles: true})); } return ""; })()`)
	seller.click("#pub-submit")
	seller.wait("the edited page", `!document.getElementById("post-view").hidden && document.getElementById("post-heading").textContent === `+js(edited))
	both(seller, "edited")
	seller.click("#post-detail [data-testid=mark-sold]")
	seller.wait("sold", hasText("#post-detail [data-testid=status-badge]", "Sold"))
	both(seller, "sold")
	buyer.click("#tab-browse")
	buyer.wait("sold seen live", hasText("#post-list [data-testid=status-badge]", "Sold"))
	both(buyer, "sold-seen")

	// The buyer reports it.
	buyer.do(chromedp.Navigate(s.URL() + "/#/post/" + post))
	buyer.wait("the listing", `document.getElementById("post-heading").textContent === `+js(edited))
	buyer.click("#post-detail [data-testid=report-btn]")
	buyer.wait("the dialog", `document.getElementById("report-dialog").open`)
	buyer.click("#report-send")
	buyer.wait("a reason asked for", `!document.getElementById("report-reason-error").hidden`)
	both(buyer, "report-no-reason")
	buyer.click("#report-reason-scam")
	buyer.typeInto("#report-text", "Asks for a deposit before showing it")
	both(buyer, "report-dialog")
	buyer.click("#report-send")
	buyer.wait("thanks", `!document.getElementById("report-done").hidden`)
	both(buyer, "report-thanks")
	buyer.click("#report-close")
	buyer.wait("Reported", exactText("#post-detail [data-testid=report-btn]", "Reported"))
	both(buyer, "reported")

	// The seller blocks the buyer, who is refused, then unblocks.
	seller.do(chromedp.Navigate(s.URL() + "/#/chat/" + post + "/" + ids[buyer]))
	seller.do(chromedp.WaitVisible(chromedp.CSS("#chat-block")))
	seller.click("#chat-block")
	seller.do(chromedp.WaitVisible(chromedp.CSS("#chat-block-go")))
	both(seller, "block-confirm")
	seller.click("#chat-block-go")
	seller.wait("blocked", `!document.getElementById("chat-blocked").hidden`)
	both(seller, "blocked")
	buyer.do(chromedp.Navigate(s.URL() + "/#/chat/" + post + "/" + ids[seller]))
	buyer.do(chromedp.WaitVisible(chromedp.CSS("#chat-input")))
	buyer.typeInto("#chat-input", "Hello??")
	buyer.click("#chat-send")
	buyer.wait("refused", tickOf("Hello??")+` === "failed"`)
	both(buyer, "refused")
	seller.click("#tab-account")
	seller.wait("the blocked row", `document.querySelectorAll("#blocked-list [data-testid=blocked-row]").length === 1`)
	both(seller, "account-blocked")
	seller.click("#blocked-list [data-testid=blocked-unblock]")
	seller.wait("nobody blocked", `!document.getElementById("blocked-empty").hidden`)
	buyer.click("#chat-messages [data-testid=send-again]")
	buyer.wait("delivered", tickOf("Hello??")+` !== "failed" && `+tickOf("Hello??")+` !== "pending"`)
	both(buyer, "resent")

	// The operator removes the listing with a reason: the seller is told.
	out := moderate("remove", post, "--reason", "scam", "--note", "Deposits before viewing are not allowed")
	if !strings.Contains(out, "removed post "+post) {
		t.Fatalf("moderate remove: %s", out)
	}
	seller.wait("the notice", `!document.getElementById("notices").hidden && document.querySelectorAll("#notices-list li").length === 1`)
	both(seller, "notice")
	seller.click("#notices-ok")
	seller.wait("dismissed", `document.getElementById("notices").hidden`)
	buyer.do(chromedp.Reload())
	buyer.state("online")
	buyer.wait("the chat says the listing went", `!document.getElementById("chat-removed").hidden`)
	both(buyer, "chat-listing-removed")
	seller.click("#tab-mine")
	seller.wait("no false 'never published'", hasText("#mine-summary", "You have no listings right now."))
	both(seller, "my-posts-after-removal")

	// The seller deletes the account.
	seller.click("#tab-account")
	// A new name is saved as it changes: the app says so.
	seller.eval(`(() => { const i = document.getElementById("acct-nick"); i.value = "Sofia R."; i.dispatchEvent(new Event("change")); return ""; })()`)
	seller.wait("the name saved, said", hasText("#notice", "Name saved.")+` && document.getElementById("me").textContent === "Sofia R."`)
	both(seller, "name-saved")
	seller.click("#delete-acct-btn")
	seller.do(chromedp.WaitVisible(chromedp.CSS("#delete-acct-go")))
	seller.wait("the confirmation names the account as the person's", hasText("#delete-acct-warn", "Delete your account (user id "+ids[seller]+") for good?"))
	both(seller, "delete-confirm")
	seller.click("#delete-acct-go")
	seller.wait("deleted", hasText("#notice", "Your account was deleted."))
	if got := seller.eval(`String(document.getElementById("unread-count").hidden)`); got != "true" {
		t.Errorf("the deleted account's unread count still shows to the guest")
	}
	both(seller, "deleted")
	buyer.click("#tab-chats")
	buyer.wait("the removed tag", `!!document.querySelector("#chat-list [data-testid=chat-row-removed]")`)
	if got := buyer.eval(`String(document.querySelector("#chat-list [data-testid=chat-row-removed]").getBoundingClientRect().height < 30)`); got != "true" {
		t.Errorf("the 'listing removed' tag is stretched")
	}
	both(buyer, "chats-after-seller-left")

	// Nothing the tour did logged an error in either browser.
	seller.noConsoleErrors("on the tour")
	buyer.noConsoleErrors("on the tour")
	fmt.Fprintln(os.Stderr, "tour shots in", shots)
}
