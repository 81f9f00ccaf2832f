package webapp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/coder/websocket"

	"github.com/occase/occase/wire"
)

// seedPhotos stores n small PNGs in the fake's image store and returns
// their paths as a post body names them.
func (s *fakeServer) seedPhotos(t *testing.T, n int) []string {
	var out []string
	for i := range n {
		img := image.NewRGBA(image.Rect(0, 0, 160, 120))
		for y := range 120 {
			for x := range 160 {
				img.Set(x, y, color.RGBA{uint8(60 * i), uint8(x), uint8(y * 2), 255})
			}
		}
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			t.Fatal(err)
		}
		p := fmt.Sprintf("%032x/Photo%04d.png", i+1, i)
		s.mu.Lock()
		s.images["/"+p] = b.Bytes()
		s.mu.Unlock()
		out = append(out, p)
	}
	return out
}

// seedListing stores one listing of seller 900 ("Seller Sam") with photos.
func (s *fakeServer) seedListing(t *testing.T, title string, photos []string) string {
	body, _ := json.Marshal(map[string]any{"title": title, "msg": "Barely used. Pick up in Munich.", "nick": "Seller Sam",
		"price": 12.5, "images": photos})
	p, _ := json.Marshal(map[string]any{"body": string(body), "features": 2, "range_values": []int{13, 2021, 0}})
	s.seed(t, "900", string(p[:len(p)-1])+`,"to":[[[0,0,0]],[[0,0,0]]]}`)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users["900"] = "seller-password"
	return fmt.Sprint(s.nextPost - 1)
}

const visible = `((el) => { if (!el) return false; const r = el.getBoundingClientRect();
  return r.height > 0 && r.top >= 0 && r.bottom <= innerHeight && r.left >= 0 && r.right <= innerWidth; })`

// TestBrowserListingPage is issue 15's listing page: a URL shared to
// someone with a fresh browser (no account) shows the listing, its whole
// gallery with a count and a full-size view, and the seller; at phone and
// desktop sizes. A URL of a listing that is gone says so.
func TestBrowserListingPage(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := newFakeServer(t)
	photos := srv.seedPhotos(t, 4)
	id := srv.seedListing(t, "Red road bike", photos)
	shots := artifactDir(t, "listing")
	n := 0
	browser := startBrowser(t)
	for _, size := range []struct {
		name string
		w, h int64
	}{{"phone", 390, 844}, {"desktop", 1280, 800}} {
		g := newTab(t, browser, size.name, size.w, size.h, shots, &n)
		g.do(chromedp.Navigate(srv.URL() + "/#/post/" + id))
		g.wait("the listing page", `!document.getElementById("post-view").hidden && document.getElementById("post-heading").textContent === "Red road bike"`)
		g.wait("every photo, loaded", `[...document.querySelectorAll("[data-testid=gallery-photo] img")].filter(i => i.complete && i.naturalWidth > 0).length === 4`)
		g.wait("the count", hasText("[data-testid=gallery-count]", "4 photos"))
		g.wait("the seller", hasText("[data-testid=detail-seller]", "Seller Sam"))
		g.wait("the decimal price", hasText("[data-testid=detail-price]", "€12.50"))
		g.noConsoleErrors("opening a shared listing")
		if got := g.eval(`document.getElementById("post-view").textContent`); bytes.Contains([]byte(got), []byte("#900")) {
			t.Errorf("the seller's id is shown: %q", got)
		}
		g.shot("shared-listing")
		// Full size, and through the photos.
		g.click(`[data-testid=gallery-photo]`)
		g.wait("full size", `document.getElementById("photo-dialog").open && document.getElementById("photo-full").complete && document.getElementById("photo-full").naturalWidth === 160`)
		g.wait("its count", hasText("#photo-count", "1 of 4"))
		g.click("#photo-next")
		g.wait("the next", hasText("#photo-count", "2 of 4"))
		g.shot("full-size")
		g.click("#photo-close")
		g.wait("closed", `!document.getElementById("photo-dialog").open`)
		// Writing asks for an account, then goes on to the chat.
		g.click(`[data-testid=detail-chat]`)
		g.wait("why", hasText("#account-why", "To write to the seller"))
		g.click("#register-btn")
		g.state("online")
		g.wait("the chat with the seller", `!document.getElementById("chat-view").hidden && `+hasText("#chat-title", "Red road bike"))
		g.wait("its URL", `location.hash === "#/chat/`+id+`/900"`)
	}
	g := newTab(t, browser, "gone", 390, 844, shots, &n)
	g.do(chromedp.Navigate(srv.URL() + "/#/post/9999"))
	g.wait("gone in words", hasText("#post-status", "not available any more"))
	g.shot("gone")
}

// TestBrowserPublishValidation is issue 15's publishing: the form is
// checked next to each field before anything is uploaded: an empty form, a
// negative price, a 20-digit price, an over-long title; 12.50 is a price.
func TestBrowserPublishValidation(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := newFakeServer(t)
	shots := artifactDir(t, "validation")
	n := 0
	a := newTab(t, startBrowser(t), "phone", 390, 844, shots, &n)
	a.do(chromedp.Navigate(srv.URL() + "/#/sell"))
	a.wait("sign-up asked", hasText("#account-why", "To sell something"))
	a.click("#register-btn")
	a.state("online")
	a.click("#tab-publish")
	a.wait("the form", `location.hash === "#/sell" && !document.getElementById("publish-view").hidden`)
	a.do(chromedp.SetUploadFiles(chromedp.CSS("#pub-photos"), []string{writePhoto(t)}))
	a.wait("photo preview", `document.querySelectorAll("#pub-previews img").length === 1`)
	uploads := func() int {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return srv.uploads + srv.filenames
	}

	// Empty: every required field says so, focus on the first, on screen.
	a.eval(`scrollTo(0, document.body.scrollHeight); document.getElementById("pub-submit").click(); ""`)
	a.wait("the title's error", `!document.getElementById("pub-title-err").hidden`)
	for _, k := range []string{"title", "loc", "prod", "cond", "price"} {
		if got := a.eval(`document.getElementById("pub-` + k + `-err").textContent`); got == "" {
			t.Errorf("no error next to %s", k)
		}
	}
	a.wait("focus on the title", `document.activeElement.id === "pub-title"`)
	a.wait("the title on screen", visible+`(document.getElementById("pub-title"))`)
	a.wait("the error tied to the field", `document.getElementById("pub-title").getAttribute("aria-describedby").split(" ").includes("pub-title-err") &&
	  document.getElementById("pub-title").getAttribute("aria-invalid") === "true"`)
	a.shot("empty-publish")

	// Fill it in; a negative price is refused by name.
	a.typeInto("#pub-title", "Folding bike")
	a.pickFirst("pub-loc")
	a.pickFirst("pub-prod")
	a.click("#pub-feat-2")
	a.typeInto("#pub-price", "-500")
	a.eval(`document.getElementById("pub-submit").click(); ""`)
	a.wait("negative in words", hasText("#pub-price-err", "cannot be negative"))
	a.wait("focus on the price, on screen", `document.activeElement.id === "pub-price" && `+visible+`(document.getElementById("pub-price"))`)
	if !a.ok(`document.getElementById("pub-title-err").hidden`) {
		t.Error("the title's error stayed after the title was given")
	}
	a.shot("negative-price")

	// A 20-digit price.
	a.eval(`document.getElementById("pub-price").value = ""; ""`)
	a.typeInto("#pub-price", "12345678901234567890")
	a.eval(`document.getElementById("pub-submit").click(); ""`)
	a.wait("absurd in words", hasText("#pub-price-err", "too high"))

	// A title over the limit: counted, and refused with its length.
	a.typeInto("#pub-title", " with a very long title that goes on and on past what a listing title may hold, really")
	a.wait("the counter says so", `document.getElementById("pub-title-count").classList.contains("over")`)
	a.eval(`document.getElementById("pub-submit").click(); ""`)
	a.wait("too long in words", hasText("#pub-title-err", "too long"))
	a.shot("too-long")
	if got := uploads(); got != 0 {
		t.Fatalf("%d uploads or filenames requests before the form was valid", got)
	}

	// 12.50 is a price: the photo goes up and the listing is published.
	a.eval(`document.getElementById("pub-title").value = "Folding bike"; document.getElementById("pub-price").value = ""; ""`)
	a.typeInto("#pub-price", "12.50")
	a.click("#pub-submit")
	a.wait("published", hasText("#pub-status", "Published"))
	a.click("#tab-mine")
	a.wait("the price with its cents", hasText("#mine-list [data-testid=post-price]", "€12.50"))
	if got := uploads(); got != 2 {
		t.Errorf("%d requests for one photo, want 2 (filenames, upload)", got)
	}
	a.shot("published-12.50")
}

// TestBrowserPhoneChatOnBadNetwork is issue 15's chat on a phone: with an
// error bar and the offline header showing, the message box and Send stay
// on screen; times stay on one line; a failure stays in its bubble and can
// be sent again; the header never says "Online" while the server is gone;
// close 4006 is said plainly and waited out; a reload keeps the draft.
func TestBrowserPhoneChatOnBadNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := newFakeServer(t)
	id := srv.seedListing(t, "Red road bike", nil)
	shots := artifactDir(t, "phonechat")
	n := 0
	a := newTab(t, startBrowser(t), "phone", 390, 844, shots, &n)
	a.signUpAndOpenChat(srv, id, "900")
	for i := range 12 {
		a.typeInto("#chat-input", fmt.Sprintf("Line %d: is the bike still for sale?", i))
		a.click("#chat-send")
	}
	a.wait("all sent", tickOf("Line 11: is the bike still for sale?")+` === "sent"`)
	sendVisible := `(` + visible + `(document.getElementById("chat-send")) && ` + visible + `(document.getElementById("chat-input")))`

	// A full queue at the other end: the failure is in the bubble, in words.
	srv.mu.Lock()
	srv.chatFail, srv.chatDetail = wire.QueueFull, "user 900 has 1000 undelivered messages; try again later"
	srv.mu.Unlock()
	a.typeInto("#chat-input", "Are you there?")
	a.click("#chat-send")
	a.wait("failed in words", tickOf("Are you there?")+` === "failed"`)
	a.wait("inside its bubble", `(() => { const li = [...document.querySelectorAll(".msg.failed")].pop(); const f = li.querySelector(".tick.failed");
	  const a = li.getBoundingClientRect(), b = f.getBoundingClientRect(); return b.right <= a.right + 1 && b.bottom <= a.bottom + 1 && b.left >= a.left - 1; })()`)
	if got := a.eval(`[...document.querySelectorAll(".msg.failed")].pop().textContent`); !bytes.Contains([]byte(got), []byte("too many messages waiting")) || bytes.Contains([]byte(got), []byte("900")) {
		t.Errorf("the failure says %q", got)
	}
	a.wait("times on one line", `[...document.querySelectorAll("#chat-messages .time")].every(e => e.getClientRects().length === 1 && e.getBoundingClientRect().height < 24)`)
	a.shot("queue-full")
	srv.mu.Lock()
	srv.chatFail = ""
	srv.mu.Unlock()
	a.click("[data-testid=send-again]")
	a.wait("sent again", tickOf("Are you there?")+` === "sent"`)

	// The server goes away: the header says so, a line waits, the error bar
	// and the box and Send are all on screen.
	srv.Stop(t)
	a.wait("offline said", `document.getElementById("conn-status").dataset.state !== "online" && !`+hasText("#conn-status", "Online"))
	a.typeInto("#chat-input", "Hello? Written while offline.")
	a.click("#chat-send")
	a.wait("waiting counted", hasText("#outbox-count", "1 unsent"))
	a.click("#tab-browse")
	a.click("#tab-chats")
	a.click("#chat-list [data-testid=chat-row]")
	a.wait("header offline while a line waits", hasText("#conn-status", "Offline"))
	a.wait("Send on screen with the offline header", sendVisible)
	srv.Start(t)
	a.state("online")
	a.wait("the waiting line went", tickOf("Hello? Written while offline.")+` === "sent"`)

	// Close 4006: said in words in the error bar, no "Reconnect now" that
	// would break the wait, and back online on its own afterwards.
	srv.closeAll(websocket.StatusCode(4006), "rate exceeded")
	a.wait("4006 in words", `!document.getElementById("banner").hidden && `+hasText("#banner-text", "too much too fast"))
	a.wait("no reconnect button", `document.getElementById("reconnect-btn").hidden && `+hasText("#conn-status", "Offline"))
	a.typeInto("#chat-input", "A draft I have not sent yet")
	a.wait("Send on screen with the error bar", sendVisible)
	a.shot("error-bar-and-offline")
	retry := a.eval(`document.getElementById("conn-status").textContent`)
	var secs int
	if _, err := fmt.Sscanf(retry, "Offline · retrying in %d s", &secs); err != nil || secs < 10 {
		t.Errorf("after 4006 the app says %q, want a wait of 10 s or more", retry)
	}
	a.state("online")

	// Reload mid-chat: the chat and the draft are still there.
	a.do(chromedp.Reload())
	a.wait("still in the chat", `!document.getElementById("chat-view").hidden && location.hash === "#/chat/`+id+`/900"`)
	a.wait("the draft kept", `document.getElementById("chat-input").value === "A draft I have not sent yet"`)
	a.state("online")
	a.shot("reloaded-chat")
	// Back leaves the chat for where the user was, not the app.
	a.eval(`history.back(); ""`)
	a.wait("back to the chat list it was opened from", `!document.getElementById("chats-view").hidden && location.hash === "#/chats"`)
	a.eval(`history.back(); ""`)
	a.wait("then Browse", `!document.getElementById("browse-view").hidden && location.hash === "#/browse"`)
	a.eval(`history.back(); ""`)
	a.wait("then the first chat", `!document.getElementById("chat-view").hidden && location.hash === "#/chat/`+id+`/900"`)
	a.eval(`history.back(); ""`)
	a.wait("then the listing", `!document.getElementById("post-view").hidden && location.hash === "#/post/`+id+`"`)
}

// TestBrowserSecondTab is issue 15's second tab: the first tab says that
// another tab took over, and can take it back.
func TestBrowserSecondTab(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := newFakeServer(t)
	shots := artifactDir(t, "tabs")
	n := 0
	a := newTab(t, startBrowser(t), "first", 1280, 800, shots, &n)
	a.do(chromedp.Navigate(srv.URL() + "/"))
	a.click("#signup-btn")
	a.click("#register-btn")
	a.state("online")
	b := sameStorageTab(t, a, "second", 1280, 800)
	b.do(chromedp.Navigate(srv.URL() + "/#/chats"))
	b.state("online")
	a.wait("the first tab says so", `!document.getElementById("paused").hidden && `+hasText("#paused-text", "another tab"))
	a.wait("and is not online", `document.getElementById("conn-status").dataset.state === "replaced"`)
	a.shot("paused-by-second-tab")
	a.click("#takeover-btn")
	a.state("online")
	b.wait("now the second one is paused", `!document.getElementById("paused").hidden && `+hasText("#paused-text", "another tab"))
	b.shot("taken-back")
}

// TestBrowserAccountSafety is issue 15's accounts: the password can be
// copied or downloaded; logging out warns and can be called off; a server
// that needs sign-up tokens gets one from the person.
func TestBrowserAccountSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := newFakeServer(t)
	srv.mu.Lock()
	srv.signupToken = "operator-token-1"
	srv.mu.Unlock()
	shots := artifactDir(t, "account")
	n := 0
	a := newTab(t, startBrowser(t), "phone", 390, 844, shots, &n)
	a.do(chromedp.Navigate(srv.URL() + "/"))
	a.click("#signup-btn")
	a.click("#register-btn")
	a.wait("the token field", `!document.getElementById("token-box").hidden && document.activeElement.id === "signup-token"`)
	a.wait("why, in words", hasText("#banner-text", "sign-up token"))
	a.shot("token-asked")
	a.typeInto("#signup-token", "not-the-token")
	a.click("#register-btn")
	a.wait("a wrong token in words", hasText("#banner-text", "not accepted"))
	a.eval(`document.getElementById("signup-token").value = ""; ""`)
	a.typeInto("#signup-token", "operator-token-1")
	a.click("#register-btn")
	a.state("online")
	a.wait("the stale error gone", `document.getElementById("banner").hidden`)

	a.click("#tab-account")
	a.wait("the URL", `location.hash === "#/account"`)
	a.click("#acct-copy")
	a.wait("copied, or shown to copy by hand", hasText("#acct-saved", "Copied the user id and password")+" || "+hasText("#acct-saved", "the password is shown above"))
	a.click("#acct-download")
	a.wait("downloaded", hasText("#acct-saved", "Downloaded a file"))
	a.click("#logout-btn")
	a.wait("a warning", `!document.getElementById("logout-confirm").hidden && `+hasText("#logout-warn", "gone for good"))
	a.wait("offering to save first", visible+`(document.getElementById("logout-download"))`)
	a.shot("logout-warning")
	a.click("#logout-cancel")
	a.wait("still logged in", `document.getElementById("logout-confirm").hidden && document.getElementById("conn-status").dataset.state === "online"`)
	a.click("#logout-btn")
	a.click("#logout-confirm-btn")
	a.wait("a guest again", `!document.getElementById("signup-btn").hidden && location.hash === "#/browse"`)
}

// TestBrowserTabsKeyboard: the tabs are a tab widget: arrow keys move and
// select, and only the selected tab is in the tab order.
func TestBrowserTabsKeyboard(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := newFakeServer(t)
	a := newTab(t, startBrowser(t), "desktop", 1280, 800, artifactDir(t, "keyboard"), new(int))
	a.do(chromedp.Navigate(srv.URL() + "/"))
	a.click("#signup-btn")
	a.click("#register-btn")
	a.state("online")
	a.eval(`document.getElementById("tab-browse").focus(); ""`)
	a.do(chromedp.KeyEvent(kb.ArrowRight))
	a.wait("Sell selected by the arrow key", `document.activeElement.id === "tab-publish" && document.getElementById("tab-publish").getAttribute("aria-selected") === "true" && !document.getElementById("publish-view").hidden`)
	a.do(chromedp.KeyEvent(kb.ArrowLeft))
	a.wait("back to Browse", `document.activeElement.id === "tab-browse" && location.hash === "#/browse"`)
	a.do(chromedp.KeyEvent(kb.ArrowLeft))
	a.wait("wraps to Account", `document.activeElement.id === "tab-account"`)
	if got := a.eval(`String([...document.querySelectorAll("#tabs [role=tab]")].filter(t => t.tabIndex === 0).length)`); got != "1" {
		t.Errorf("%s tabs in the tab order, want 1", got)
	}
}

// ok evaluates a JavaScript condition.
func (b *tab) ok(expr string) bool {
	b.t.Helper()
	return b.eval(`String(Boolean(`+expr+`))`) == "true"
}

// TestBrowserSlowLink: on a slow link the page shows that it is loading,
// not a blank page, first the app and then the listings.
func TestBrowserSlowLink(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := newFakeServer(t)
	srv.seedListing(t, "Red road bike", nil)
	srv.mu.Lock()
	srv.slow = 1500 * time.Millisecond
	srv.mu.Unlock()
	shots := artifactDir(t, "slow")
	n := 0
	g := newTab(t, startBrowser(t), "phone", 390, 844, shots, &n)
	g.do(chromedp.Navigate(srv.URL() + "/"))
	g.wait("loading shown", visible+`(document.getElementById("boot-loading")) || document.getElementById("browse-summary").dataset.state === "loading"`)
	g.shot("loading")
	g.wait("listings loading shown", `document.getElementById("browse-summary").dataset.state === "loading" && `+hasText("#browse-summary", "Loading listings")+
		` || document.querySelectorAll("#post-list [data-testid=post-card]").length > 0`)
	g.wait("then the listing", `document.querySelectorAll("#post-list [data-testid=post-card]").length === 1 && document.getElementById("boot-loading").hidden`)
}
