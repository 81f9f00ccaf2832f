package webapp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/serviceworker"
	"github.com/chromedp/chromedp"
	"github.com/redis/rueidis"
)

func TestHandlerServiceWorker(t *testing.T) {
	h := Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", ServiceWorkerPath, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d", ServiceWorkerPath, rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.Contains(ct, "javascript") {
		t.Errorf("Content-Type %q: a browser registers only a JavaScript service worker", ct)
	}
	if !strings.Contains(rec.Body.String(), `addEventListener("push"`) {
		t.Error("/sw.js does not handle push events")
	}
	if rec.Header().Get("Content-Security-Policy") == "" {
		t.Error("/sw.js without a Content-Security-Policy of its own")
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "worker-src 'self'") {
		t.Errorf("the page's policy %q does not allow this origin's service worker", csp)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", ServiceWorkerPath, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST %s: %d, want 405", ServiceWorkerPath, rec.Code)
	}
}

// grantPermissions is Browser.grantPermissions, which this cdproto version
// does not generate.
type grantParams struct {
	Permissions      []string             `json:"permissions"`
	Origin           string               `json:"origin,omitempty"`
	BrowserContextID cdp.BrowserContextID `json:"browserContextId,omitempty"`
}

var grantPermissions = cdp.Command[grantParams, cdp.Empty]{Method: "Browser.grantPermissions"}

// countAsks wraps Notification.requestPermission so that the test can tell
// whether, and when, the page asked (kept in sessionStorage, across
// reloads).
const countAsks = `(() => {
  if (!("Notification" in window)) return;
  const orig = Notification.requestPermission.bind(Notification);
  Notification.requestPermission = (...a) => {
    sessionStorage.setItem("asked", String(Number(sessionStorage.getItem("asked") || 0) + 1));
    return orig(...a);
  };
})()`

// notifications lists what the service worker shows, as JSON.
const notifications = `navigator.serviceWorker.ready.then(r => r.getNotifications()).then(ns =>
  JSON.stringify(ns.map(n => ({title: n.title, body: n.body, tag: n.tag, from: n.data && n.data.from}))))`

type shown struct{ Title, Body, Tag, From string }

func (b *tab) notifications() []shown {
	b.t.Helper()
	v := b.evalAsync(notifications)
	var out []shown
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		b.t.Fatalf("getNotifications %q: %v", v, err)
	}
	return out
}

// evalAsync evaluates expr, awaiting the promise it gives.
func (b *tab) evalAsync(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitFor)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("%s: eval %s: %v", b.name, expr, err)
	}
	return v
}

// waitAsync polls expr, a promise of a boolean, until it gives true.
func (b *tab) waitAsync(what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(waitFor)
	for b.evalAsync(`Promise.resolve(`+expr+`).then(String)`) != "true" {
		if time.Now().After(deadline) {
			b.shot("failed")
			b.t.Fatalf("%s: waiting for %s", b.name, what)
		}
		time.Sleep(100 * time.Millisecond) // polling the browser, as chromedp.Poll does
	}
}

// waitNotes polls the notifications shown until pred holds.
func (b *tab) waitNotes(what string, pred func([]shown) bool) []shown {
	b.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		ns := b.notifications()
		if pred(ns) {
			return ns
		}
		if time.Now().After(deadline) {
			b.shot("failed")
			b.t.Fatalf("%s: waiting for %s; shown: %+v", b.name, what, ns)
		}
		time.Sleep(100 * time.Millisecond) // polling the browser, as chromedp.Poll does
	}
}

// devices returns the push devices the server keeps for user, from its
// Redis (broker/push.go: <prefix>pd:{<user>}).
func (s *serveBinary) devices(t *testing.T, user string) []string {
	t.Helper()
	var addr, prefix string
	for i := 0; i+1 < len(s.args); i++ {
		switch s.args[i] {
		case "--redis":
			addr = s.args[i+1]
		case "--redis-prefix":
			prefix = s.args[i+1]
		}
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		t.Fatalf("redis: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	vals, err := c.Do(ctx, c.B().Hvals().Key(prefix+"pd:{"+user+"}").Build()).AsStrSlice()
	if err != nil {
		t.Fatalf("redis HVALS: %v", err)
	}
	return vals
}

// TestBrowserPushAgainstServe is issue 12's web app in headless chromium
// against the real binary: the box that says why before anything is asked,
// the permission (granted over the DevTools protocol), the subscription the
// server keeps, a push delivered to the service worker
// (ServiceWorker.deliverPushMessage), the notification it shows and
// replaces, where a click leads, and logging out.
func TestBrowserPushAgainstServe(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	chromiumPath(t)
	s := newServeBinary(t)
	if s.front != nil {
		t.Skip("the binary does not serve the app (and /sw.js) itself")
	}
	base := s.URL()
	shots := artifactDir(t, "push")
	n := 0
	browser := startBrowser(t)
	a := newTab(t, browser, "A", 1000, 800, shots, &n)
	if _, err := chromedp.Call(a.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: countAsks}); err != nil {
		t.Fatal(err)
	}
	asked := func() string { return a.eval(`sessionStorage.getItem("asked") || "0"`) }

	// Sign up; the box in Chats says why before anything is asked.
	a.do(chromedp.Navigate(base + "/"))
	a.do(chromedp.WaitVisible(chromedp.CSS("#signup-btn")))
	a.click("#signup-btn")
	a.do(chromedp.WaitVisible(chromedp.CSS("#register-btn")))
	a.typeInto("#nick-input", "Alice")
	a.click("#register-btn")
	a.state("online")
	aid := a.eval(`document.getElementById("acct-id").textContent`)
	a.click("#tab-chats")
	a.wait("the notification box", `document.getElementById("push-box").dataset.state === "off" && !document.getElementById("push-box").hidden`)
	if got := a.eval(`document.getElementById("push-btn").textContent`); got != "Get notified of new messages" {
		t.Errorf("button %q", got)
	}
	if got := a.eval(`document.getElementById("push-status").textContent`); !strings.Contains(got, "while this app is closed") {
		t.Errorf("the box does not say why: %q", got)
	}
	if got := a.eval(`Notification.permission`); got != "default" {
		t.Fatalf("permission %q before the click", got)
	}
	// A reload logs in again: still nothing asked.
	a.do(chromedp.Reload())
	a.state("online")
	if got := asked(); got != "0" {
		t.Fatalf("the page asked for permission %s times before the click", got)
	}
	a.noConsoleErrors("on load, before the click")
	a.click("#tab-chats")
	a.shot("push-box")

	// The person agrees (the browser's prompt, answered through the
	// DevTools protocol), then presses the button.
	if _, err := chromedp.CallBrowser(a.ctx, grantPermissions, grantParams{
		Permissions: []string{"notifications"}, Origin: base,
		BrowserContextID: chromedp.FromContext(a.ctx).BrowserContextID,
	}); err != nil {
		t.Fatalf("Browser.grantPermissions: %v", err)
	}
	a.click("#push-btn")
	a.wait("the subscription done or refused", `["on", "error"].includes(document.getElementById("push-box").dataset.state)`)
	a.shot("push-on")
	if got := asked(); got != "1" {
		t.Errorf("asked %s times, want once, in the click", got)
	}
	subscribed := a.eval(`document.getElementById("push-box").dataset.state`) == "on"
	if subscribed {
		endpoint := a.evalAsync(`navigator.serviceWorker.ready.then(r => r.pushManager.getSubscription()).then(s => s ? s.endpoint : "")`)
		devs := s.devices(t, aid)
		if len(devs) != 1 || !strings.Contains(devs[0], endpoint) || endpoint == "" {
			t.Errorf("server keeps %q for user %s, want the page's subscription %q", devs, aid, endpoint)
		}
	} else {
		// Headless chromium has no push service to subscribe with (no
		// network, no Google API keys): say so, test the rest.
		t.Logf("pushManager.subscribe is not available in this browser, so push_subscribe is not checked against the server: %s",
			a.eval(`document.getElementById("push-status").textContent`))
		if got := a.eval(`document.getElementById("push-btn").textContent`); got != "Try again" {
			t.Errorf("after a failed subscription the button says %q", got)
		}
	}
	a.noConsoleErrors("turning notifications on")

	// The service worker is registered (in any case: it comes before the
	// subscription); find it for the DevTools protocol.
	ctx, cancel := context.WithTimeout(a.ctx, waitFor)
	defer cancel()
	events := chromedp.Events(ctx, serviceworker.WorkerRegistrationUpdated)
	if _, err := chromedp.Call(ctx, serviceworker.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("ServiceWorker.enable: %v", err)
	}
	var reg serviceworker.RegistrationID
	for ev, err := range events {
		if err != nil {
			t.Fatalf("no service worker registration for %s/: %v", base, err)
		}
		for _, r := range ev.Registrations {
			if r.ScopeURL == base+"/" && !r.IsDeleted {
				reg = r.RegistrationID
			}
		}
		if reg != "" {
			break
		}
	}
	a.waitAsync("the service worker active", `navigator.serviceWorker.ready.then(r => !!r.active)`)
	deliver := func(payload string) {
		t.Helper()
		if _, err := chromedp.Call(a.ctx, serviceworker.DeliverPushMessage, serviceworker.DeliverPushMessageParams{
			Origin: base, RegistrationID: reg, Data: payload,
		}); err != nil {
			t.Fatalf("ServiceWorker.deliverPushMessage: %v", err)
		}
	}

	// Bea writes to Alice about her listing: a conversation Alice has.
	m := dialProto(t, base)
	bid := fmt.Sprint(m.mustOK(`{"cmd":"register"}`)["id"])
	gid := m.publishBody(`{"title":"Push test bike","msg":"Red.","nick":"Bea","price":20}`)
	m.mustOK(`{"cmd":"message","type":"chat","to":"` + aid + `","msg":"Is it still available?","post_id":` + gid + `,"id":1,"nick":"Bea","is_sender_post":true}`)
	a.wait("Bea's line", hasText("#chat-list [data-testid=chat-row]", "Is it still available?"))
	a.click("#tab-browse")

	// A push: the notification names Bea and shows the preview.
	deliver(`{"type":"chat","from":"` + bid + `","count":1,"nick":"Bea","preview":"Is it still available?"}`)
	ns := a.waitNotes("Bea's notification", func(ns []shown) bool { return len(ns) == 1 })
	want := shown{Title: "Bea", Body: "Is it still available?", Tag: "chat-" + bid, From: bid}
	if ns[0] != want {
		t.Errorf("shown %+v, want %+v", ns[0], want)
	}
	// More from Bea, previews off: it replaces the first (tag chat-<from>).
	deliver(`{"type":"chat","from":"` + bid + `","count":3}`)
	ns = a.waitNotes("the replacement", func(ns []shown) bool { return len(ns) == 1 && ns[0].Body != want.Body })
	want = shown{Title: "New message", Body: "3 new messages", Tag: "chat-" + bid, From: bid}
	if ns[0] != want {
		t.Errorf("shown %+v, want %+v", ns[0], want)
	}
	// A payload that is not what the server sends still shows a plain
	// notification (Chrome requires one per push), naming no one.
	deliver(`{"type":"chat","from":"../1","nick":{"x":1},"preview":7,"count":"lots"}`)
	ns = a.waitNotes("the plain one", func(ns []shown) bool { return len(ns) == 2 })
	for _, x := range ns {
		if x.Tag == "chat" && (x != shown{Title: "New message", Body: "1 new message", Tag: "chat"}) {
			t.Errorf("hostile payload shown as %+v", x)
		}
	}
	deliver(`not json`)
	a.shot("notified")

	// The click: the DevTools protocol cannot click a notification, so the
	// page asks the service worker to do what its notificationclick does.
	click := `navigator.serviceWorker.ready.then(r => new Promise(res => {
	  navigator.serviceWorker.addEventListener("message", (ev) => { if (ev.data && ev.data.type === "clicked") res(ev.data.result); });
	  r.active.postMessage({type: "click", tag: "chat-` + bid + `"});
	}))`
	if got := a.evalAsync(click); got != "told" {
		t.Fatalf("click: the service worker %q, want it to tell the open window", got)
	}
	a.wait("the conversation with Bea", `!document.getElementById("chat-view").hidden &&
	  document.getElementById("chat-peer").textContent.includes("#`+bid+`")`)
	a.shot("clicked")
	if got := a.notifications(); len(got) != 1 || got[0].Tag != "chat" {
		t.Errorf("after the click, shown %+v: want only the plain one (the clicked one closes)", got)
	}

	// A window the service worker opens comes to /#chats/<from>.
	a.do(chromedp.Navigate(base + "/#chats/" + bid))
	a.wait("the conversation with Bea after a fresh load", `!document.getElementById("chat-view").hidden &&
	  document.getElementById("chat-peer").textContent.includes("#`+bid+`")`)
	if got := a.eval(`location.hash`); got != "" {
		t.Errorf("hash %q left after opening the conversation", got)
	}
	if subscribed {
		a.click("#tab-chats")
		a.wait("subscribed again after the login", `document.getElementById("push-box").dataset.state === "on"`)
		if got := len(s.devices(t, aid)); got != 1 {
			t.Errorf("%d devices after logging in again with the same subscription, want 1", got)
		}
	}
	a.noConsoleErrors("notifications and the click")

	// Logging out: push_unsubscribe, and the browser drops its
	// subscription.
	a.click("#tab-account")
	a.click("#logout-btn")
	a.waitAsync("the browser's subscription dropped", `navigator.serviceWorker.ready.then(r => r.pushManager.getSubscription()).then(s => s === null)`)
	if subscribed {
		deadline := time.Now().Add(10 * time.Second)
		for len(s.devices(t, aid)) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the server still keeps %q after logout", s.devices(t, aid))
			}
			time.Sleep(100 * time.Millisecond) // polling Redis
		}
	}
	if got := asked(); got != "1" {
		t.Errorf("asked %s times in all, want once", got)
	}
}
