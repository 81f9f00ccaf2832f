package webapp

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
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
			sw := b.evalAsync(`navigator.serviceWorker.getRegistration("/").then(r => r ? JSON.stringify({scope: r.scope, active: r.active && r.active.state, waiting: !!r.waiting, installing: !!r.installing}) : "none")`)
			b.t.Fatalf("%s: waiting for %s; shown: %+v; service worker: %s", b.name, what, ns, sw)
		}
		time.Sleep(100 * time.Millisecond) // polling the browser, as chromedp.Poll does
	}
}

// redis runs f with a client of the server's Redis and its key prefix.
func (s *serveBinary) redis(t *testing.T, f func(ctx context.Context, c rueidis.Client, prefix string)) {
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
	f(ctx, c, prefix)
}

func (s *serveBinary) delKey(t *testing.T, key string) {
	t.Helper()
	s.redis(t, func(ctx context.Context, c rueidis.Client, prefix string) {
		if n, err := c.Do(ctx, c.B().Del().Key(prefix+key).Build()).AsInt64(); err != nil || n != 1 {
			t.Fatalf("redis DEL %s: %d, %v", prefix+key, n, err)
		}
	})
}

// loggedIn is the server's occase_connections{state="logged_in"}.
func (s *serveBinary) loggedIn(t *testing.T) int {
	t.Helper()
	r, err := http.Get("http://" + s.addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, `occase_connections{state="logged_in"} `); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("metric %q: %v", l, err)
			}
			return n
		}
	}
	t.Fatalf("no occase_connections{state=\"logged_in\"} in /metrics")
	return 0
}

// devices returns the push devices the server keeps for user, from its
// Redis (broker/push.go: <prefix>pd:{<user>}).
func (s *serveBinary) devices(t *testing.T, user string) []string {
	t.Helper()
	var vals []string
	s.redis(t, func(ctx context.Context, c rueidis.Client, prefix string) {
		var err error
		vals, err = c.Do(ctx, c.B().Hvals().Key(prefix+"pd:{"+user+"}").Build()).AsStrSlice()
		if err != nil {
			t.Fatalf("redis HVALS: %v", err)
		}
	})
	return vals
}

// stubPush stands in for the browser's push service when
// sessionStorage.stubPush is "1": headless chromium has none (it refuses in
// a browser context of its own, and in the profile it waits for Google's
// servers, which loopback cannot reach). The stand-in subscription has a
// real P-256 key and auth secret, so the server takes it as it would a real
// one, and an https endpoint no one answers at. Otherwise the browser's own
// PushManager runs.
const stubPush = `(() => {
  if (!("PushManager" in window)) return;
  const real = { subscribe: PushManager.prototype.subscribe, get: PushManager.prototype.getSubscription };
  const on = () => sessionStorage.getItem("stubPush") === "1";
  const load = () => JSON.parse(localStorage.getItem("stubSub") || "null");
  const make = (d) => d && {
    endpoint: d.endpoint,
    options: { userVisibleOnly: true, applicationServerKey: Uint8Array.from(atob(d.key), (c) => c.charCodeAt(0)).buffer },
    toJSON: () => ({ endpoint: d.endpoint, expirationTime: null, keys: { p256dh: %q, auth: %q } }),
    unsubscribe: async () => { localStorage.removeItem("stubSub"); return true; },
  };
  PushManager.prototype.getSubscription = function () {
    return on() ? Promise.resolve(make(load())) : real.get.call(this);
  };
  PushManager.prototype.subscribe = function (o) {
    if (!on()) return real.subscribe.call(this, o);
    const key = btoa(String.fromCharCode(...new Uint8Array(o.applicationServerKey.buffer || o.applicationServerKey)));
    const d = { endpoint: "https://push.example/sub/" + crypto.randomUUID(), key };
    localStorage.setItem("stubSub", JSON.stringify(d));
    return Promise.resolve(make(d));
  };
})()`

func stubScript(t *testing.T) string {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	_, _ = rand.Read(auth)
	enc := base64.RawURLEncoding.EncodeToString
	return fmt.Sprintf(stubPush, enc(k.PublicKey().Bytes()), enc(auth))
}

// endpointOf is the endpoint in a device record the server keeps.
func endpointOf(t *testing.T, rec string) string {
	var d struct {
		E string `json:"e"`
	}
	if err := json.Unmarshal([]byte(rec), &d); err != nil {
		t.Fatalf("device record %q: %v", rec, err)
	}
	return d.E
}

// TestBrowserPushAgainstServe is issue 12's web app in headless chromium
// against the real binary: the box that says why before anything is asked,
// the permission (granted over the DevTools protocol), what the app says
// when the browser cannot subscribe, the subscription the server keeps (and
// renews when the server's key changes), a push delivered to the service
// worker (ServiceWorker.deliverPushMessage), the notification it shows and
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
	var deadline time.Time
	n := 0
	browser := startBrowser(t)
	a := newTab(t, browser, "A", 1000, 800, shots, &n)
	for _, src := range []string{countAsks, stubScript(t)} {
		if _, err := chromedp.Call(a.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: src}); err != nil {
			t.Fatal(err)
		}
	}
	asked := func() string { return a.eval(`sessionStorage.getItem("asked") || "0"`) }
	boxState := func() string { return a.eval(`document.getElementById("push-box").dataset.state`) }
	pageEndpoint := func() string {
		return a.evalAsync(`navigator.serviceWorker.ready.then(r => r.pushManager.getSubscription()).then(s => s ? s.endpoint : "")`)
	}
	// stored waits until the server keeps exactly the page's subscription.
	stored := func(what, aid string) string {
		t.Helper()
		endpoint := pageEndpoint()
		deadline := time.Now().Add(waitFor)
		for {
			devs := s.devices(t, aid)
			if len(devs) == 1 && endpointOf(t, devs[0]) == endpoint && endpoint != "" {
				return endpoint
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the server keeps %q for user %s, want only the page's %q", what, devs, aid, endpoint)
			}
			time.Sleep(100 * time.Millisecond) // polling Redis
		}
	}

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
	// A reload logs in again: still nothing asked, nothing registered.
	a.do(chromedp.Reload())
	a.state("online")
	if got := asked(); got != "0" {
		t.Fatalf("the page asked for permission %s times before the click", got)
	}
	if got := a.evalAsync(`navigator.serviceWorker.getRegistration("/").then(r => String(!!r))`); got != "false" {
		t.Errorf("a service worker registered before the click")
	}
	a.noConsoleErrors("on load, before the click")
	a.click("#tab-chats")
	a.shot("push-box")

	// The person agrees (the browser's prompt, answered through the
	// DevTools protocol), then presses the button. This browser has no push
	// service: the box says so plainly and offers to try again.
	if _, err := chromedp.CallBrowser(a.ctx, grantPermissions, grantParams{
		Permissions: []string{"notifications"}, Origin: base,
		BrowserContextID: chromedp.FromContext(a.ctx).BrowserContextID,
	}); err != nil {
		t.Fatalf("Browser.grantPermissions: %v", err)
	}
	a.click("#push-btn")
	a.wait("the subscription done or refused", `["on", "error"].includes(document.getElementById("push-box").dataset.state)`)
	if got := asked(); got != "1" {
		t.Errorf("asked %s times, want once, in the click", got)
	}
	if boxState() == "on" {
		// A browser with a push service: the real subscription.
		t.Log("this browser subscribed with its own push service")
		stored("real subscription", aid)
	} else {
		status := a.eval(`document.getElementById("push-status").textContent`)
		t.Logf("headless chromium cannot subscribe to a push service here; the app says: %s", status)
		if !strings.HasPrefix(status, "Could not turn on notifications: ") || a.eval(`document.getElementById("push-btn").textContent`) != "Try again" {
			t.Errorf("after a failed subscription: %q, button %q", status, a.eval(`document.getElementById("push-btn").textContent`))
		}
		a.shot("push-failed")
		for _, e := range a.consoleErrors() {
			// Chrome's own line about its browser contexts, not the app's.
			if !strings.Contains(e, "does not support the Push API in incognito mode") {
				t.Errorf("console error when the subscription failed: %s", e)
			}
		}
		// The stand-in push service from here on.
		a.eval(`sessionStorage.setItem("stubPush", "1"), ""`)
		a.click("#push-btn")
		a.wait("notifications on", `document.getElementById("push-box").dataset.state === "on"`)
		stored("push_subscribe", aid)
	}
	a.shot("push-on")
	if got := a.eval(`document.getElementById("push-btn").textContent`); got != "Turn off notifications" {
		t.Errorf("button %q when on", got)
	}
	a.noConsoleErrors("turning notifications on")

	// The service worker is registered; find it for the DevTools protocol.
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

	// A push as the server sends it: the notification names Bea and shows
	// the preview.
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
	// A payload unlike the server's still shows a plain notification
	// (Chrome requires one per push) that names no one.
	deliver(`{"type":"chat","from":"../1","nick":{"x":1},"preview":7,"count":"lots"}`)
	deliver(`not json`)
	ns = a.waitNotes("the plain one", func(ns []shown) bool { return len(ns) == 2 })
	for _, x := range ns {
		if x.Tag != want.Tag && (x != shown{Title: "New message", Body: "1 new message", Tag: "chat"}) {
			t.Errorf("a hostile payload shown as %+v", x)
		}
	}
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
	// People never see ids; the URL names the conversation (#/chat/<post>/<user>).
	inChat := `!document.getElementById("chat-view").hidden &&
	  /^#\/chat\/\d+\/` + bid + `$/.test(location.hash)`
	a.wait("the conversation with Bea", inChat)
	a.shot("clicked")
	if got := a.notifications(); len(got) != 1 || got[0].Tag != "chat" {
		t.Errorf("after the click, shown %+v: want only the plain one (the clicked one closes)", got)
	}

	// A window the service worker opens comes to /#chats/<from>.
	a.click("#tab-browse")
	a.do(chromedp.Navigate("about:blank"))
	a.do(chromedp.Navigate(base + "/#chats/" + bid))
	a.wait("the conversation with Bea after a fresh load", inChat)
	if got := a.eval(`location.hash`); !strings.HasSuffix(got, "/"+bid) || !strings.HasPrefix(got, "#/chat/") {
		t.Errorf("hash %q after opening the conversation, want its route #/chat/<post>/%s", got, bid)
	}
	// Every login sends the subscription again; the server keeps one.
	a.click("#chat-back")
	a.wait("on after the login", `document.getElementById("push-box").dataset.state === "on"`)
	first := stored("after a new login", aid)
	a.noConsoleErrors("notifications and the click")

	// The server's key changes (its generated pair lost with Redis's copy):
	// after the reconnect, the app drops the old subscription, makes a new
	// one with the new key, and the server keeps only that.
	s.Stop(t)
	s.delKey(t, "vapid")
	s.Start(t)
	a.state("online")
	deadline = time.Now().Add(waitFor)
	for pageEndpoint() == first {
		if time.Now().After(deadline) {
			t.Fatal("the page kept the subscription made with the old key")
		}
		time.Sleep(100 * time.Millisecond) // polling the browser
	}
	stored("after the key changed", aid)
	for _, e := range a.consoleErrors() {
		// The reconnect's attempts while the server was down are expected.
		if !strings.Contains(e, "ERR_CONNECTION_REFUSED") {
			t.Errorf("console error around the key change: %s", e)
		}
	}

	// Turning them off: push_unsubscribe, the subscription dropped, and
	// the next login does not turn them on again; on again is one click.
	a.click("#tab-chats")
	a.click("#push-btn")
	a.wait("notifications off", `document.getElementById("push-box").dataset.state === "off"`)
	if got := len(s.devices(t, aid)); got != 0 {
		t.Errorf("%d devices kept after turning notifications off", got)
	}
	if got := pageEndpoint(); got != "" {
		t.Errorf("the browser kept its subscription %q after turning notifications off", got)
	}
	a.do(chromedp.Reload())
	a.state("online")
	a.click("#tab-chats")
	if got := boxState(); got != "off" {
		t.Errorf("after turning them off and a new login, the box is %q", got)
	}
	a.click("#push-btn")
	a.wait("notifications on again", `document.getElementById("push-box").dataset.state === "on"`)
	stored("on again", aid)

	// Alice is away when Cy writes; her click on the notification opens
	// the app, whose conversation with Cy comes only after the login. The
	// page she left (kept in the back/forward cache) must have closed its
	// socket: the server would count her live, send no notification, and
	// write Cy's line where no one reads it.
	live := s.loggedIn(t)
	a.do(chromedp.Navigate("about:blank"))
	deadline = time.Now().Add(waitFor)
	for s.loggedIn(t) != live-1 {
		if time.Now().After(deadline) {
			t.Fatalf("the page Alice left is still logged in (%d connections, %d before)", s.loggedIn(t), live)
		}
		time.Sleep(100 * time.Millisecond) // polling /metrics
	}
	c := dialProto(t, base)
	cid := fmt.Sprint(c.mustOK(`{"cmd":"register"}`)["id"])
	c.mustOK(`{"cmd":"message","type":"chat","to":"` + aid + `","msg":"Would you take 15?","post_id":` + gid + `,"id":1,"nick":"Cy","is_sender_post":true}`)
	a.do(chromedp.Navigate(base + "/#chats/" + cid))
	a.wait("the conversation with Cy, which came after the login", `!document.getElementById("chat-view").hidden &&
	  /^#\/chat\/\d+\/`+cid+`$/.test(location.hash)`)
	a.wait("Cy's line", hasText("#chat-messages [data-testid=chat-text]", "Would you take 15?"))
	a.shot("opened-from-away")

	// Logging out: push_unsubscribe, and the browser drops its
	// subscription.
	creds := a.eval(`localStorage.getItem("occase.v1.creds")`)
	a.click("#tab-account")
	a.click("#logout-btn")
	a.click("#logout-confirm-btn") // after the warning that the account is gone without its credentials
	a.waitAsync("the browser's subscription dropped", `navigator.serviceWorker.ready.then(r => r.pushManager.getSubscription()).then(s => s === null)`)
	deadline = time.Now().Add(waitFor)
	for len(s.devices(t, aid)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the server still keeps %q after logout", s.devices(t, aid))
		}
		time.Sleep(100 * time.Millisecond) // polling Redis
	}
	// Another account on this browser without a logout in between (a
	// wrong password, a data reset): its subscription must not be the one
	// sent for Alice, whose device would otherwise get Dan's notifications.
	a.eval(`localStorage.setItem("occase.v1.creds", ` + js(creds) + `), ""`)
	a.do(chromedp.Reload())
	a.state("online")
	alice := stored("Alice back", aid)
	d := dialProto(t, base)
	r := d.mustOK(`{"cmd":"register"}`)
	did := fmt.Sprint(r["id"])
	a.eval(`localStorage.setItem("occase.v1.creds", JSON.stringify({user: ` + js(did) + `, password: ` + js(fmt.Sprint(r["password"])) + `})), ""`)
	d.c.CloseNow()
	a.do(chromedp.Reload())
	a.state("online")
	a.wait("Dan logged in", `document.getElementById("acct-id").textContent === "`+did+`"`)
	a.click("#tab-chats")
	a.wait("notifications on for Dan", `document.getElementById("push-box").dataset.state === "on"`)
	if dan := stored("Dan's subscription", did); dan == alice {
		t.Errorf("Dan's notifications go to the subscription sent for Alice (%s)", alice)
	}

	if got := asked(); got != "3" {
		t.Errorf("asked %s times in all, want 3 (the three clicks that turn them on)", got)
	}
}

// setPermission is Browser.setPermission, which this cdproto version does
// not generate.
type setPermissionParams struct {
	Permission       map[string]string    `json:"permission"`
	Setting          string               `json:"setting"`
	Origin           string               `json:"origin,omitempty"`
	BrowserContextID cdp.BrowserContextID `json:"browserContextId,omitempty"`
}

var setPermission = cdp.Command[setPermissionParams, cdp.Empty]{Method: "Browser.setPermission"}

// TestBrowserPushDeniedAndUnsupported: blocked notifications and a browser
// without the Push API are said plainly, with no button and no prompt.
func TestBrowserPushDeniedAndUnsupported(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := newFakeServer(t)
	shots := artifactDir(t, "push-denied")
	n := 0
	browser := startBrowser(t)
	signUp := func(name, script string) *tab {
		x := newTab(t, browser, name, 390, 844, shots, &n)
		if _, err := chromedp.Call(x.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: script}); err != nil {
			t.Fatal(err)
		}
		x.do(chromedp.Navigate(srv.URL() + "/"))
		x.click("#signup-btn")
		x.do(chromedp.WaitVisible(chromedp.CSS("#register-btn")))
		x.click("#register-btn")
		x.state("online")
		x.click("#tab-chats")
		return x
	}
	box := func(x *tab, state, says string) {
		t.Helper()
		x.wait("the box "+state, `document.getElementById("push-box").dataset.state === `+js(state)+` && !document.getElementById("push-box").hidden`)
		if got := x.eval(`document.getElementById("push-status").textContent`); !strings.Contains(got, says) {
			t.Errorf("%s: the box says %q, want %q", x.name, got, says)
		}
		if x.eval(`String(document.getElementById("push-btn").hidden)`) != "true" {
			t.Errorf("%s: a button to turn on what cannot be turned on", x.name)
		}
		if got := x.eval(`sessionStorage.getItem("asked") || "0"`); got != "0" {
			t.Errorf("%s: asked for permission %s times", x.name, got)
		}
		x.shot(state)
		x.noConsoleErrors("showing the box")
	}

	x := signUp("X", countAsks)
	x.wait("the box", `document.getElementById("push-box").dataset.state === "off"`)
	if _, err := chromedp.CallBrowser(x.ctx, setPermission, setPermissionParams{
		Permission: map[string]string{"name": "notifications"}, Setting: "denied", Origin: srv.URL(),
		BrowserContextID: chromedp.FromContext(x.ctx).BrowserContextID,
	}); err != nil {
		t.Fatalf("Browser.setPermission: %v", err)
	}
	x.do(chromedp.Reload())
	x.state("online")
	x.click("#tab-chats")
	box(x, "denied", "Notifications are blocked for this site")

	y := signUp("Y", countAsks+`; delete window.PushManager;`)
	box(y, "unsupported", "This browser cannot show notifications from this app.")
}
