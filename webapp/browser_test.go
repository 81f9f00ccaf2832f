package webapp

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// server is what the browser scenario runs against: the in-memory fake or
// the real `occase serve` binary. Stop and Start model a server restart;
// its stored state (accounts, queues, posts) must survive them.
type server interface {
	URL() string
	Stop(t *testing.T)
	Start(t *testing.T)
}

const waitFor = 30 * time.Second

func chromiumPath(t *testing.T) string {
	if os.Getenv("OCCASE_SKIP_BROWSER") == "1" {
		t.Skip("OCCASE_SKIP_BROWSER=1")
	}
	if p := os.Getenv("OCCASE_CHROMIUM"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Skip("chromium is not installed (apt-get install -y chromium, or set OCCASE_CHROMIUM)")
	return ""
}

// artifactDir is where screenshots go: artifacts/webapp/<name> at the
// repository root (git-ignored), or $OCCASE_ARTIFACTS/<name>.
func artifactDir(t *testing.T, name string) string {
	base := os.Getenv("OCCASE_ARTIFACTS")
	if base == "" {
		base = filepath.Join("..", "artifacts", "webapp")
	}
	dir := filepath.Join(base, name)
	_ = os.RemoveAll(dir) // only this run's steps
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startBrowser launches one headless chromium for the test; each tab made
// from it lives in a browser context of its own (separate storage).
func startBrowser(t *testing.T) context.Context {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

type tab struct {
	t     *testing.T
	name  string
	ctx   context.Context
	shots string
	n     *int

	mu      *sync.Mutex
	console *[]string // console errors and failed loads, until read by consoleErrors
}

func newTab(t *testing.T, browser context.Context, name string, w, h int64, shots string, n *int) *tab {
	return openTab(t, browser, true, name, w, h, shots, n)
}

// sameStorageTab opens another tab in the browser context of b: the same
// storage, as a second tab of one person's browser.
func sameStorageTab(t *testing.T, b *tab, name string, w, h int64) *tab {
	return openTab(t, b.ctx, false, name, w, h, b.shots, b.n)
}

func openTab(t *testing.T, parent context.Context, fresh bool, name string, w, h int64, shots string, n *int) *tab {
	// Any uncaught exception or unhandled rejection in the page fails the
	// test, even when the UI happened to recover.
	var mu sync.Mutex
	var thrown, console []string
	var opts []chromedp.ContextOption
	if fresh {
		opts = append(opts, chromedp.WithNewBrowserContext())
	}
	ctx, cancel := chromedp.NewContext(parent, append(opts,
		chromedp.WithListener(func(ev any) {
			switch e := ev.(type) {
			case *runtime.EventConsoleAPICalled:
				if e.Type == runtime.ConsoleAPICalledTypeError {
					var args []string
					for _, a := range e.Args {
						args = append(args, string(a.Value)+a.Description)
					}
					mu.Lock()
					console = append(console, "console.error: "+strings.Join(args, " "))
					mu.Unlock()
				}
			case *log.EventEntryAdded:
				// Failed loads (a 404 fetch, a refused WebSocket) land here.
				if e.Entry != nil && e.Entry.Level == log.EntryLevelError {
					mu.Lock()
					console = append(console, fmt.Sprintf("%s: %s (%s)", e.Entry.Source, e.Entry.Text, e.Entry.URL))
					mu.Unlock()
				}
			}
			if e, ok := ev.(*runtime.EventExceptionThrown); ok && e.ExceptionDetails != nil {
				d := e.ExceptionDetails
				msg := d.Text
				if d.Exception != nil && d.Exception.Description != "" {
					msg += " " + d.Exception.Description
				}
				mu.Lock()
				thrown = append(thrown, fmt.Sprintf("%s:%d: %s", d.URL, d.LineNumber+1, msg))
				mu.Unlock()
			}
		}))...)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range thrown {
			t.Errorf("tab %s: uncaught in the page: %s", name, e)
		}
	})
	t.Cleanup(cancel)
	// The first Run binds the tab's life to its context: no timeout here.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open tab %s: %v", name, err)
	}
	b := &tab{t: t, name: name, ctx: ctx, shots: shots, n: n, mu: &mu, console: &console}
	b.do(chromedp.EmulateViewport(w, h))
	return b
}

// consoleErrors returns the console errors logged since the last call.
func (b *tab) consoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := *b.console
	*b.console = nil
	return out
}

// noConsoleErrors fails the test when the page logged an error (a failed
// request included) since the last check.
func (b *tab) noConsoleErrors(when string) {
	b.t.Helper()
	for _, e := range b.consoleErrors() {
		b.t.Errorf("%s: console error %s: %s", b.name, when, e)
	}
}

func (b *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitFor)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.shot("failed")
		b.t.Fatalf("%s: %v", b.name, err)
	}
}

// wait polls a JavaScript predicate until it is truthy.
func (b *tab) wait(what, expr string) {
	b.t.Helper()
	if err := b.poll(expr, waitFor); err != nil {
		b.shot("failed")
		b.t.Fatalf("%s: waiting for %s: %v", b.name, what, err)
	}
}

func (b *tab) poll(expr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, time.Until(deadline)+5*time.Second)
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(time.Until(deadline))))
		cancel()
		// Right after a navigation the poll can start in the execution
		// context of the page being left, which then no longer exists:
		// poll again in the new page's.
		if err != nil && strings.Contains(err.Error(), "Cannot find context with specified id") && time.Now().Before(deadline) {
			continue
		}
		return err
	}
}

func (b *tab) eval(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitFor)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("%s: eval %s: %v", b.name, expr, err)
	}
	return v
}

func (b *tab) shot(step string) {
	*b.n++
	ctx, cancel := context.WithTimeout(b.ctx, waitFor)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("%s: screenshot %s: %v", b.name, step, err)
		return
	}
	p := filepath.Join(b.shots, fmt.Sprintf("%02d-%s-%s.png", *b.n, b.name, step))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Logf("write %s: %v", p, err)
	}
}

func js(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

// signUpAndOpenChat registers a new user in a fresh tab and opens the chat
// with seller about the fake server's listing id, from the listing's page.
func (b *tab) signUpAndOpenChat(srv *fakeServer, id, seller string) {
	b.do(chromedp.Navigate(srv.URL() + "/"))
	b.click("#signup-btn")
	b.click("#register-btn")
	b.state("online")
	b.click(`#post-list [data-post-id="` + id + `"] [data-testid=post-link]`)
	b.wait("the listing", `location.hash === "#/post/`+id+`"`)
	b.click("[data-testid=detail-chat]")
	b.wait("the chat", `location.hash === "#/chat/`+id+`/`+seller+`"`)
}

func (b *tab) click(sel string) { b.do(chromedp.Click(chromedp.CSS(sel))) }

func (b *tab) typeInto(sel, text string) { b.do(chromedp.SendKeys(chromedp.CSS(sel), text)) }

// pickFirst chooses the first entry at every level of a cascade of selects
// (ids prefix-0, prefix-1, ...), down to a leaf.
func (b *tab) pickFirst(prefix string) {
	b.eval(`(() => { for (let i = 0; ; i++) {
	  const s = document.getElementById(` + js(prefix) + ` + "-" + i);
	  if (!s) return String(i);
	  if (s.value === "") { s.value = "0"; s.dispatchEvent(new Event("change")); }
	} })()`)
}

func (b *tab) state(want string) {
	b.t.Helper()
	b.wait("connection "+want, `document.getElementById("conn-status").dataset.state === `+js(want))
}

func hasText(sel, text string) string {
	return `[...document.querySelectorAll(` + js(sel) + `)].some(e => e.textContent.includes(` + js(text) + `))`
}

func exactText(sel, text string) string {
	return `[...document.querySelectorAll(` + js(sel) + `)].some(e => e.textContent === ` + js(text) + `)`
}

func countText(sel, text string) string {
	return `String([...document.querySelectorAll(` + js(sel) + `)].filter(e => e.textContent === ` + js(text) + `).length)`
}

// tickOf is the delivery state shown next to my own chat line with text.
func tickOf(text string) string {
	return `(() => { const li = [...document.querySelectorAll('[data-testid=chat-msg][data-mine="1"]')]
	  .find(e => e.querySelector('[data-testid=chat-text]').textContent === ` + js(text) + `);
	  return li ? li.querySelector('[data-testid=tick]').dataset.status : "absent"; })()`
}

// withContrast wraps a function body that may use contrast(a, b), the WCAG
// contrast ratio of two CSS rgb() colours, and bgOf(el), the first opaque
// background at or above el.
func withContrast(body string) string { return "(() => {" + contrastJS + body + "})()" }

const contrastJS = `const lum = (c) => { const v = c.match(/[\d.]+/g).slice(0, 3).map(Number).map((x) => {
  x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
  return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
const contrast = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
const bgOf = (el) => { for (; el; el = el.parentElement) { const c = getComputedStyle(el).backgroundColor;
  const m = c.match(/[\d.]+/g); if (m && (m.length < 4 || Number(m[3]) === 1)) return c; } return "rgb(255, 255, 255)"; };
`

func atLeast(got string, want float64) bool {
	var f float64
	_, err := fmt.Sscan(got, &f)
	return err == nil && f >= want
}

func writePhoto(t *testing.T) string {
	img := image.NewRGBA(image.Rect(0, 0, 320, 240))
	for y := range 240 {
		for x := range 320 {
			img.Set(x, y, color.RGBA{uint8(x * 255 / 320), uint8(y * 255 / 240), 160, 255})
		}
	}
	p := filepath.Join(t.TempDir(), "bicycle.png")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	return p
}

// features says which parts of the protocol a server offers; a part it
// lacks is skipped with a message naming it.
type features struct {
	posts     string // "" when subscribe/publish/delete work, else what is missing
	images    string // "" when filenames and the image upload work
	deletions string // "" when a subscription with "deletions":true gets post_deleted
	edits     string // "" when update/set_status are answered (issue 15)
	search    string // "" when GET /api/posts answers q (issue 15)
}

// runScenario is issue 7's scenario: A registers and publishes a post with a
// photo; B, following that location, sees it appear live with the photo,
// opens a chat and writes; A sees the message and B's typing signal and
// answers; B sees the read tick; the server restarts (with a line written
// while it is down) and the conversation goes on, nothing lost or doubled.
// Each stage is a subtest, so that a stage the server cannot do yet is
// skipped by name while the others still run.
func runScenario(t *testing.T, srv server, name string, have features) {
	shots := artifactDir(t, name)
	n := 0
	browser := startBrowser(t)
	a := newTab(t, browser, "A", 1200, 900, shots, &n)
	b := newTab(t, browser, "B", 390, 844, shots, &n)
	const title = "Blue city bicycle"
	published := false

	run := func(stage string, f func(t *testing.T)) {
		if !t.Run(stage, func(t *testing.T) {
			a.t, b.t = t, t
			f(t)
		}) {
			t.FailNow()
		}
		a.t, b.t = t, t
	}

	run("accounts", func(t *testing.T) {
		for _, u := range []struct {
			tab  *tab
			nick string
		}{{a, "Alice"}, {b, "Bob"}} {
			u.tab.do(chromedp.Navigate(srv.URL() + "/"))
			// A first visit browses as a guest; signing up is one click away.
			u.tab.do(chromedp.WaitVisible(chromedp.CSS("#signup-btn")))
			u.tab.wait("listings shown to a guest", `/^(\d+ listings?|No listings yet)\b/.test(document.getElementById("browse-summary").textContent)`)
			if u.tab == b {
				u.tab.shot("welcome")
			}
			u.tab.click("#signup-btn")
			u.tab.do(chromedp.WaitVisible(chromedp.CSS("#register-btn")))
			u.tab.typeInto("#nick-input", u.nick)
			u.tab.click("#register-btn")
			u.tab.state("online")
			// Issue 15: the name, never an id such as "#1", and no stale
			// error beside the welcome.
			u.tab.wait("my name shown", hasText("#me", u.nick))
			if got := u.tab.eval(`document.getElementById("me").textContent + "|" + document.getElementById("notice").textContent`); strings.Contains(got, "#") || strings.Contains(got, "user id is") {
				t.Errorf("an id shown to the person: %q", got)
			}
			// Issue 11: nothing the page asks for on load may fail (it
			// used to fetch /api/config, and /favicon.ico answered 400).
			u.tab.noConsoleErrors("on load and sign-up")
		}
		a.shot("registered")
	})

	run("publish-and-see-live", func(t *testing.T) {
		if have.posts != "" {
			t.Skip("posts not available on this server: " + have.posts)
		}
		// B follows the first country: every post there comes live.
		b.eval(`(() => { const s = document.getElementById("filter-loc-0"); s.value = "0"; s.dispatchEvent(new Event("change")); return "" })()`)
		b.click("#filter-apply")
		b.wait("filter applied", `document.getElementById("browse-summary").textContent.includes(
		  "in " + document.getElementById("filter-loc-0").selectedOptions[0].textContent)`)

		a.click("#tab-publish")
		a.typeInto("#pub-title", title)
		a.pickFirst("pub-loc")
		a.pickFirst("pub-prod")
		a.click("#pub-feat-2")
		a.typeInto("#pub-price", "350")
		a.typeInto("#pub-year", "2019")
		a.typeInto("#pub-km", "1200")
		a.typeInto("#pub-desc", "Seven gears, new tyres.")
		if have.images == "" {
			a.do(chromedp.SetUploadFiles(chromedp.CSS("#pub-photos"), []string{writePhoto(t)}))
			a.wait("photo preview", `document.querySelectorAll("#pub-previews img").length === 1`)
		} else {
			t.Log("publishing without a photo: " + have.images)
		}
		a.shot("filled-in")
		a.click("#pub-submit")
		a.wait("published", hasText("#pub-status", "Published"))
		published = true
		a.shot("published")
		a.click("#tab-mine")
		a.wait("own post listed", hasText("#mine-list [data-testid=post-title]", title))

		b.wait("post arrives live", hasText("#post-list [data-testid=post-title]", title))
		b.shot("post-live")
	})

	run("photo-upload-and-display", func(t *testing.T) {
		if !published {
			t.Skip("no post published: " + have.posts)
		}
		if have.images != "" {
			t.Skip("image uploads not available on this server: " + have.images)
		}
		b.wait("photo loaded", `(() => { const imgs = [...document.querySelectorAll("#post-list [data-testid=post-photo]")];
		  return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); })()`)
		a.wait("own post shows the photo", `(() => { const imgs = [...document.querySelectorAll("#mine-list [data-testid=post-photo]")];
		  return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); })()`)
		b.shot("photo")
	})

	// Issue 15: a listing's URL, opened by someone else in a fresh browser
	// (no account), shows the listing with its photos and the seller.
	run("listing-page-from-a-shared-url", func(t *testing.T) {
		if !published {
			t.Skip("no post published: " + have.posts)
		}
		id := a.eval(`document.querySelector("#mine-list [data-testid=post-card]").dataset.postId`)
		for _, sz := range []struct {
			name string
			w, h int64
		}{{"phone", 390, 844}, {"desktop", 1280, 800}} {
			g := newTab(t, browser, "guest-"+sz.name, sz.w, sz.h, shots, &n)
			g.do(chromedp.Navigate(srv.URL() + "/#/post/" + id))
			g.wait("the listing", `!document.getElementById("post-view").hidden && document.getElementById("post-heading").textContent === `+js(title))
			g.wait("the seller", hasText("[data-testid=detail-seller]", "Alice"))
			g.wait("the price", hasText("[data-testid=detail-price]", "€350"))
			if have.images == "" {
				g.wait("its photo, loaded", `(() => { const i = [...document.querySelectorAll("[data-testid=gallery-photo] img")];
				  return i.length === 1 && i[0].complete && i[0].naturalWidth > 0; })()`)
				g.wait("the count", hasText("[data-testid=gallery-count]", "1 photo"))
			}
			g.noConsoleErrors("opening a shared listing")
			g.shot("shared-listing")
		}
	})

	const q1 = "Hello! Is it still available?"
	var q2 string
	const r1 = "Yes, Saturday at ten works."
	run("chat-typing-ticks", func(t *testing.T) {
		if published {
			b.click(`#post-list [data-testid=chat-with-author]`)
		} else {
			// Without posts, reach A through a conversation link.
			aid := a.eval(`document.getElementById("acct-id").textContent`)
			b.do(chromedp.Navigate(srv.URL() + "/#chat/7/" + aid))
			b.state("online")
		}
		b.do(chromedp.WaitVisible(chromedp.CSS("#chat-input")))
		b.typeInto("#chat-input", q1)
		b.click("#chat-send")
		b.wait("server ack tick", tickOf(q1)+` !== "pending" && `+tickOf(q1)+` !== "absent"`)

		a.click("#tab-chats")
		a.wait("chat listed", `document.querySelectorAll("#chat-list [data-testid=chat-row]").length === 1`)
		a.click("#chat-list [data-testid=chat-row]")
		a.wait("B's line shown", hasText("#chat-messages [data-testid=chat-text]", q1))
		b.wait("read tick after A opened the chat", tickOf(q1)+` === "read"`)

		// B types; A sees "typing…". Presence goes out at most every 3 s,
		// so keep typing until it shows (no fixed sleep).
		words := []string{"Could", " I", " see", " it", " on", " Saturday", "?", " Maybe", " in", " the", " morning", "."}
		seen := false
		for _, w := range words {
			b.typeInto("#chat-input", w)
			if a.poll(`!document.getElementById("chat-typing").hidden`, 1500*time.Millisecond) == nil {
				seen = true
				break
			}
		}
		if !seen {
			t.Fatal("A never saw B typing")
		}
		a.shot("typing")
		q2 = b.eval(`document.getElementById("chat-input").value`)
		b.click("#chat-send")
		a.wait("B's second line", hasText("#chat-messages [data-testid=chat-text]", q2))
		a.wait("typing hidden once the line arrived", `document.getElementById("chat-typing").hidden`)

		// A answers; B, with the chat open, reads it at once.
		a.typeInto("#chat-input", r1)
		a.click("#chat-send")
		b.wait("A's answer", hasText("#chat-messages [data-testid=chat-text]", r1))
		a.wait("A sees B read the answer", tickOf(r1)+` === "read"`)
		b.wait("B sees A read its line", tickOf(q2)+` === "read"`)
		b.shot("chat")
		a.shot("chat")

		// Issue 15: the read tick (text, 4.5:1) and the focus ring (3:1)
		// stand out from what is behind them.
		if got := b.eval(withContrast(`const t = document.querySelector('[data-testid=tick][data-status=read]');
		  return String(contrast(getComputedStyle(t).color, bgOf(t)));`)); !atLeast(got, 4.5) {
			t.Errorf("read tick contrast %s, want at least 4.5", got)
		}
		if got := b.eval(withContrast(`const i = document.getElementById("chat-input"); i.focus();
		  return String(contrast(getComputedStyle(i).outlineColor, bgOf(i.parentElement)));`)); !atLeast(got, 3) {
			t.Errorf("focus ring contrast %s, want at least 3", got)
		}
	})

	const q3 = "Sent while the server was down."
	const r2 = "Got it, see you then."
	run("server-restart", func(t *testing.T) {
		srv.Stop(t)
		a.wait("A notices", `document.getElementById("conn-status").dataset.state !== "online"`)
		b.wait("B notices", `document.getElementById("conn-status").dataset.state !== "online"`)
		b.typeInto("#chat-input", q3)
		b.click("#chat-send")
		b.wait("line waits", tickOf(q3)+` === "pending"`)
		b.shot("offline")
		srv.Start(t)
		a.state("online")
		b.state("online")
		a.wait("line delivered after restart", hasText("#chat-messages [data-testid=chat-text]", q3))
		b.wait("read after restart", tickOf(q3)+` === "read"`)
		a.typeInto("#chat-input", r2)
		a.click("#chat-send")
		b.wait("answer after restart", hasText("#chat-messages [data-testid=chat-text]", r2))
		a.wait("read tick after restart", tickOf(r2)+` === "read"`)
		for _, line := range []string{q1, q2, q3} {
			if got := a.eval(countText("#chat-messages [data-testid=chat-text]", line)); got != "1" {
				t.Errorf("A shows %q %s times, want once", line, got)
			}
		}
		for _, line := range []string{r1, r2} {
			if got := b.eval(countText("#chat-messages [data-testid=chat-text]", line)); got != "1" {
				t.Errorf("B shows %q %s times, want once", line, got)
			}
		}
		a.shot("after-restart")
		b.shot("after-restart")
	})

	run("history-after-reload", func(t *testing.T) {
		b.do(chromedp.Reload())
		b.state("online")
		b.click("#tab-chats")
		b.click("#chat-list [data-testid=chat-row]")
		b.wait("history after reload", hasText("#chat-messages [data-testid=chat-text]", r2))
		if got := b.eval(countText("#chat-messages [data-testid=chat-text]", q1)); got != "1" {
			t.Errorf("B shows %q %s times after reload, want once", q1, got)
		}
	})

	// Issue 15: every view has its URL; a reload stays in it, Back returns
	// to the view before (and Forward again), a chat's draft survives.
	run("back-and-reload-in-every-view", func(t *testing.T) {
		views := []struct{ tab, view, hash string }{
			{"#tab-browse", "browse-view", "#/browse"}, {"#tab-publish", "publish-view", "#/sell"},
			{"#tab-mine", "mine-view", "#/mine"}, {"#tab-chats", "chats-view", "#/chats"},
			{"#tab-account", "settings-view", "#/account"},
		}
		at := func(view, hash string) string {
			return `!document.getElementById(` + js(view) + `).hidden && location.hash === ` + js(hash)
		}
		for i, v := range views {
			b.click(v.tab)
			b.wait("the URL of "+v.view, at(v.view, v.hash))
			b.do(chromedp.Reload())
			b.state("online")
			b.wait("the same view after a reload: "+v.view, at(v.view, v.hash))
			if i > 0 {
				p := views[i-1]
				b.eval(`history.back(); ""`)
				b.wait("Back to "+p.view, at(p.view, p.hash))
				b.eval(`history.forward(); ""`)
				b.wait("Forward to "+v.view, at(v.view, v.hash))
			}
		}
		// A chat: reload keeps it and its draft; Back returns to the list.
		b.click("#tab-chats")
		b.click("#chat-list [data-testid=chat-row]")
		b.wait("a chat URL", `!document.getElementById("chat-view").hidden && location.hash.startsWith("#/chat/")`)
		b.typeInto("#chat-input", "A draft kept over a reload")
		b.do(chromedp.Reload())
		b.state("online")
		b.wait("the chat after a reload", `!document.getElementById("chat-view").hidden && location.hash.startsWith("#/chat/")`)
		b.wait("its draft", `document.getElementById("chat-input").value === "A draft kept over a reload"`)
		b.shot("chat-reloaded-with-draft")
		b.eval(`(() => { const i = document.getElementById("chat-input"); i.value = ""; i.dispatchEvent(new Event("input")); return ""; })()`)
		b.eval(`history.back(); ""`)
		b.wait("Back from the chat to the list", at("chats-view", "#/chats"))
		b.click("#chat-list [data-testid=chat-row]")
		b.click("#chat-back")
		b.wait("the ← button too", at("chats-view", "#/chats"))
		if !published {
			return
		}
		// A listing's page: reload keeps it; Back returns to Browse.
		b.click("#tab-browse")
		b.click(`#post-list [data-testid=post-link]`)
		b.wait("a listing URL", `!document.getElementById("post-view").hidden && location.hash.startsWith("#/post/")`)
		b.do(chromedp.Reload())
		b.state("online")
		b.wait("the listing after a reload", `!document.getElementById("post-view").hidden && document.getElementById("post-heading").textContent === `+js(title))
		b.eval(`history.back(); ""`)
		b.wait("Back from the listing", at("browse-view", "#/browse"))
	})

	// Issue 15: an edit seen live by another user. A edits the title and
	// price of the listing B follows (the photo kept) and marks it sold; B
	// sees the same card change in place, never a second copy, and B's
	// conversation about it takes the new title.
	const edited = "Blue city bicycle, new chain"
	run("edit-seen-live", func(t *testing.T) {
		if !published {
			t.Skip("no post to edit: " + have.posts)
		}
		if have.edits != "" {
			t.Skip("editing not available on this server: " + have.edits)
		}
		b.click("#tab-browse")
		b.wait("B holds the listing", hasText("#post-list [data-testid=post-title]", title))
		a.click("#tab-mine")
		a.click("#mine-list [data-testid=edit-post]")
		a.wait("the form holds the listing", `location.hash.startsWith("#/edit/") && document.getElementById("pub-title").value === `+js(title)+
			` && document.getElementById("pub-heading").textContent === "Edit your listing"`)
		a.wait("its photo kept", `document.querySelectorAll("#pub-previews img").length === `+map[bool]string{true: "1", false: "0"}[have.images == ""])
		a.eval(`(() => { for (const [id, v] of [["pub-title", ` + js(edited) + `], ["pub-price", "300"]]) { const i = document.getElementById(id); i.value = v; i.dispatchEvent(new Event("input", {bubbles: true})); } return ""; })()`)
		a.shot("editing")
		a.click("#pub-submit")
		a.wait("the edited listing's page", `!document.getElementById("post-view").hidden && document.getElementById("post-heading").textContent === `+js(edited))
		b.wait("B sees the edit live", exactText("#post-list [data-testid=post-title]", edited)+
			` && !`+exactText("#post-list [data-testid=post-title]", title))
		b.wait("the new price", hasText("#post-list [data-testid=post-price]", "€300"))
		if got := b.eval(`String(document.querySelectorAll("#post-list [data-testid=post-card]").length)`); got != "1" {
			t.Errorf("B shows %s cards after the edit, want 1 (replaced by id)", got)
		}
		b.shot("edit-seen-live")
		a.click("#post-detail [data-testid=mark-sold]")
		a.wait("sold on A's page", hasText("#post-detail [data-testid=status-badge]", "Sold"))
		b.wait("B sees it sold", hasText("#post-list [data-testid=status-badge]", "Sold"))
		b.shot("sold-seen-live")
		b.click(`#post-list [data-testid=post-link]`)
		b.wait("sold on B's view of the listing's page", hasText("#post-detail [data-testid=detail-status]", "Sold")+
			` && document.getElementById("post-heading").textContent === `+js(edited))
		b.shot("sold-listing-page")
		b.click("#tab-chats")
		b.wait("B's conversation has the new title", hasText("#chat-list [data-testid=chat-row]", edited))
		a.click("#post-detail [data-testid=mark-available]")
		b.click("#tab-browse")
		b.wait("available again", `!document.querySelector("#post-list [data-testid=status-badge]")`)
	})

	// Issue 15: a search finds the listing by a word of its title (the
	// last word as a prefix), and says plainly when nothing matches.
	run("search-by-a-title-word", func(t *testing.T) {
		if !published {
			t.Skip("no post to find: " + have.posts)
		}
		if have.search != "" {
			t.Skip("search not available on this server: " + have.search)
		}
		b.click("#tab-browse")
		b.typeInto("#search-q", "bicyc")
		b.wait("the search in the URL and its result", `location.hash === "#/browse?q=bicyc" && document.getElementById("browse-summary").dataset.state === "results" && `+
			hasText("#post-list [data-testid=post-title]", edited))
		b.shot("search-found")
		b.do(chromedp.Reload())
		b.wait("the search after a reload", `document.getElementById("search-q").value === "bicyc" && `+hasText("#post-list [data-testid=post-title]", edited))
		b.eval(`(() => { const i = document.getElementById("search-q"); i.value = "zzqx"; i.dispatchEvent(new Event("input")); return ""; })()`)
		b.wait("no results said plainly", `document.getElementById("browse-summary").dataset.state === "none" && document.getElementById("browse-summary").textContent.startsWith("No listings found") && document.querySelectorAll("#post-list [data-testid=post-card]").length === 0`)
		b.shot("search-none")
		b.eval(`(() => { const i = document.getElementById("search-q"); i.value = ""; i.dispatchEvent(new Event("input")); return ""; })()`)
		b.wait("the whole list again", `location.hash === "#/browse" && `+hasText("#post-list [data-testid=post-title]", edited))
	})

	run("delete-own-post", func(t *testing.T) {
		if !published {
			t.Skip("no post to delete: " + have.posts)
		}
		a.click("#tab-mine")
		a.click("#mine-list [data-testid=delete-post]")
		a.click("#mine-list [data-testid=delete-post]")
		a.wait("post gone", `document.querySelectorAll("#mine-list [data-testid=post-card]").length === 0`)
		a.shot("deleted")
		if have.deletions != "" {
			t.Log("not checking that B's list drops the post: " + have.deletions)
			return
		}
		gone := title
		if have.edits == "" {
			gone = edited
		}
		b.wait("post_deleted takes the post off B's list", `![...document.querySelectorAll("#post-list [data-testid=post-title]")].some(e => e.textContent === `+js(gone)+`)`)
	})

	run("hostile-posts-and-chat", func(t *testing.T) {
		if have.posts != "" {
			t.Skip("posts not available on this server: " + have.posts)
		}
		hostileStage(t, srv, a, b, have)
	})

	run("login-on-another-device", func(t *testing.T) {
		a.click("#tab-account")
		a.click("#acct-reveal")
		id := a.eval(`document.getElementById("acct-id").textContent`)
		pw := a.eval(`document.getElementById("acct-password").textContent`)
		if len(pw) < 10 || strings.Contains(pw, "•") {
			t.Fatalf("password shown as %q", pw)
		}
		c := newTab(t, browser, "C", 390, 844, shots, &n)
		c.do(chromedp.Navigate(srv.URL() + "/"))
		c.click("#signup-btn")
		c.typeInto("#login-id", id)
		c.typeInto("#login-password", pw)
		c.click("#login-btn")
		c.state("online")
		c.click("#tab-account")
		c.wait("logged in as A", `document.getElementById("acct-id").textContent === `+js(id))
		// Issue 15: a plain login does not greet with an id.
		if got := c.eval(`document.getElementById("notice").textContent`); strings.Contains(got, id) || strings.Contains(got, "Welcome") {
			t.Errorf("login on another device says %q", got)
		}
		a.state("replaced")
		a.wait("the first tab says it is paused, by another device", `!document.getElementById("paused").hidden && `+hasText("#paused-text", "another device"))
		a.shot("replaced")
		a.click("#takeover-btn")
		a.state("online")
		a.wait("no longer paused", `document.getElementById("paused").hidden`)
		c.state("replaced")
	})
}

func TestBrowserAgainstFake(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	runScenario(t, newFakeServer(t), "fake", features{})
}
