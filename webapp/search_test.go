package webapp

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// seedMarket stores n listings of seller 900: every third a "Golf GTI",
// the others helmets; prices scattered; every fifth sold.
func (s *fakeServer) seedMarket(t *testing.T, n int) {
	for i := 1; i <= n; i++ {
		title := fmt.Sprintf("Helmet size %d", i)
		if i%3 == 0 {
			title = fmt.Sprintf("Golf GTI number %d", i)
		}
		body, _ := json.Marshal(map[string]any{"title": title, "nick": "Seller", "price": (i * 37) % 1000})
		p, _ := json.Marshal(map[string]any{"body": string(body), "features": 2, "range_values": []int{(i * 37) % 1000, 2020, 0}})
		extra := ""
		if i%5 == 0 {
			extra = `,"status":"sold"`
		}
		s.seed(t, "900", string(p[:len(p)-1])+`,"to":[[[0,0,0]],[[0,0,0]]]`+extra+`}`)
	}
	s.mu.Lock()
	s.users["900"] = "seller-password"
	s.mu.Unlock()
}

// TestBrowserSearchAndSort is issue 15's search in Browse against the
// fake: a shared search URL, typing (debounced), no results, the price
// orders paged with the string cursor to the end, the "partial" note, and
// the filter that hides sold listings; at phone and desktop sizes.
func TestBrowserSearchAndSort(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := newFakeServer(t)
	srv.seedMarket(t, 45) // 15 golfs, 30 helmets, 9 sold
	shots := artifactDir(t, "search")
	n := 0
	browser := startBrowser(t)
	g := newTab(t, browser, "phone", 390, 844, shots, &n)
	cards := `document.querySelectorAll("#post-list [data-testid=post-card]").length`
	titles := `[...document.querySelectorAll("#post-list [data-testid=post-title]")].map(e => e.textContent)`
	prices := `[...document.querySelectorAll("#post-list [data-post-id]")].map(c => Number(/\d+/.exec(c.querySelector("[data-testid=post-price]").textContent.replace(/,/g, ""))[0]))`
	summary := `document.getElementById("browse-summary")`

	// A shared search URL, opened by a guest.
	g.do(chromedp.Navigate(srv.URL() + "/#/browse?q=golf"))
	g.wait("the golfs only", cards+` === 15 && `+titles+`.every(t => t.startsWith("Golf GTI")) && `+summary+`.dataset.state === "results"`)
	if got := g.eval(`document.getElementById("search-q").value`); got != "golf" {
		t.Errorf("the search box holds %q", got)
	}
	g.noConsoleErrors("a search URL")
	g.shot("shared-search")

	// Typing: one search once the typing stops, not one a letter.
	srv.mu.Lock()
	before := len(srv.searches)
	srv.mu.Unlock()
	g.eval(`(() => { const i = document.getElementById("search-q"); i.value = ""; return ""; })()`)
	g.typeInto("#search-q", "helmet siz")
	g.wait("the helmets, the last word a prefix", `location.hash === "#/browse?q=helmet+siz" && `+cards+` === 20 && `+titles+`.every(t => t.startsWith("Helmet"))`)
	srv.mu.Lock()
	typed := srv.searches[before:]
	srv.mu.Unlock()
	if len(typed) >= len("helmet siz") {
		t.Errorf("one search a letter: %q", typed)
	}

	// Price, low to high, paged to the end with the "<price>:<id>" cursor.
	g.eval(`(() => { const s = document.getElementById("search-sort"); s.value = "price_asc"; s.dispatchEvent(new Event("change")); return ""; })()`)
	g.wait("cheapest first", `location.hash === "#/browse?q=helmet+siz&sort=price_asc" && `+summary+`.dataset.state === "results" && `+cards+` === 20`)
	for i := 0; i < 5 && g.eval(`document.getElementById("load-more").hidden ? "done" : ""`) == ""; i++ {
		g.click("#load-more")
		g.wait("a page more", `!document.getElementById("load-more").disabled`)
	}
	g.wait("every helmet, in price order", cards+` === 30 && `+prices+`.every((p, i, a) => i === 0 || a[i-1] <= p)`)
	g.wait("said so", hasText("#more-status", "That is every match"))
	srv.mu.Lock()
	paged := strings.Join(srv.searches, " ")
	srv.mu.Unlock()
	if !strings.Contains(paged, "helmet siz|price_asc||") || !strings.Contains(paged, ":") {
		t.Errorf("price pages not asked with the string cursor: %s", paged)
	}
	g.shot("price-ascending")

	// Hide sold and reserved: status=available, no badge left.
	g.click("#search-avail")
	g.wait("only available helmets", `location.hash.includes("status=available") && `+summary+`.dataset.state === "results" && `+cards+` === 20 && !document.querySelector("#post-list [data-testid=status-badge]")`)

	// No results, said plainly.
	g.do(chromedp.Navigate(srv.URL() + "/#/browse?q=zzqx"))
	g.wait("no results", summary+`.dataset.state === "none" && `+summary+`.textContent.startsWith("No listings found for “zzqx”") && `+cards+` === 0`)
	g.shot("no-results")

	// A price order over more matches than the server sorts: "partial".
	srv.mu.Lock()
	srv.maxScan = 10
	srv.mu.Unlock()
	d := newTab(t, browser, "desktop", 1280, 800, shots, &n)
	d.do(chromedp.Navigate(srv.URL() + "/#/browse?sort=price_desc"))
	d.wait("dearest first, with the note", cards+` === 10 && `+prices+`.every((p, i, a) => i === 0 || a[i-1] >= p) && `+
		hasText("#search-note", "Sorted by price among the newest matching listings only")+` && !document.getElementById("search-note").hidden`)
	d.wait("sold ones marked", hasText("#post-list [data-testid=status-badge]", "Sold"))
	d.noConsoleErrors("a price order")
	d.shot("price-descending-partial")
	if got := d.eval(`document.body.dataset.renderFailures || ""`); got != "" {
		t.Errorf("render failures: %s", got)
	}
}

// TestBrowserSellerTools is issue 15's seller side against the fake: Renew
// only in the renewal window, Mark reserved seen live by a buyer who is
// searching, and Edit with photos kept, removed and added, where the
// image server answers 409 once (fresh names, one retry).
func TestBrowserSellerTools(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := newFakeServer(t)
	photos := srv.seedPhotos(t, 2)
	bike := srv.seedListing(t, "Red road bike", photos)
	lamp := srv.seedListing(t, "Old desk lamp", nil)
	var bikeID, lampID uint64
	fmt.Sscan(bike, &bikeID)
	fmt.Sscan(lamp, &lampID)
	srv.setAge(bikeID, 86400)    // a day old: renewal weeks away
	srv.setAge(lampID, 85*86400) // in its last week
	shots := artifactDir(t, "seller")
	n := 0
	browser := startBrowser(t)

	// The buyer searches for "road" and stays on the results.
	b := newTab(t, browser, "buyer", 390, 844, shots, &n)
	b.do(chromedp.Navigate(srv.URL() + "/"))
	b.click("#signup-btn")
	b.click("#register-btn")
	b.state("online")
	b.do(chromedp.Navigate(srv.URL() + "/#/browse?q=road"))
	b.wait("the bike found", `document.getElementById("browse-summary").dataset.state === "results" && `+exactText("#post-list [data-testid=post-title]", "Red road bike"))

	// The seller logs in on a desktop.
	s := newTab(t, browser, "seller", 1280, 800, shots, &n)
	s.do(chromedp.Navigate(srv.URL() + "/"))
	s.click("#signup-btn")
	s.typeInto("#login-id", "900")
	s.typeInto("#login-password", "seller-password")
	s.click("#login-btn")
	s.state("online")
	s.click("#tab-mine")
	card := func(id string) string { return `#mine-list [data-post-id="` + id + `"] ` }
	s.wait("both listings", `document.querySelectorAll("#mine-list [data-testid=post-card]").length === 2`)
	s.wait("Renew only in the window", `document.querySelector(`+js(card(bike)+"[data-testid=renew-post]")+`).disabled && !document.querySelector(`+js(card(lamp)+"[data-testid=renew-post]")+`).disabled`)
	s.wait("when renewing becomes possible", hasText(card(bike)+"[data-testid=renew-hint]", "can be renewed from"))
	s.shot("my-posts")
	// A listing opened from My listings keeps that tab selected, and Back
	// returns to it.
	s.click(card(lamp) + "[data-testid=post-link]")
	s.wait("the lamp's page under My listings", `!document.getElementById("post-view").hidden && document.getElementById("tab-mine").getAttribute("aria-selected") === "true" && document.getElementById("tab-browse").getAttribute("aria-selected") === "false"`)
	s.do(chromedp.NavigateBack())
	s.wait("back on My listings", `!document.getElementById("mine-view").hidden`)
	// A server whose window differs refuses; the time it names disables
	// Renew (for this page).
	srv.mu.Lock()
	srv.renewAt = time.Now().Unix() + 3*86400
	srv.mu.Unlock()
	s.click(card(lamp) + "[data-testid=renew-post]")
	s.wait("the refusal says when", hasText("#banner", "This listing can be renewed from")+` && document.querySelector(`+js(card(lamp)+"[data-testid=renew-post]")+`).disabled`)
	s.shot("renew-refused")
	srv.mu.Lock()
	srv.renewAt = 0
	srv.mu.Unlock()
	s.do(chromedp.Reload())
	s.state("online")
	s.click("#tab-mine")
	s.click(card(lamp) + "[data-testid=renew-post]")
	s.wait("renewed", hasText("#notice", "Renewed: your listing now runs until")+` && document.querySelector(`+js(card(lamp)+"[data-testid=renew-post]")+`).disabled`)

	// Reserved, seen live by the buyer in the search results.
	s.click(card(bike) + "[data-testid=mark-reserved]")
	s.wait("reserved", hasText(card(bike)+"[data-testid=status-badge]", "Reserved"))
	b.wait("the buyer sees it reserved", hasText(`#post-list [data-post-id="`+bike+`"] [data-testid=status-badge]`, "Reserved"))
	b.shot("reserved-live")

	// Edit: remove the first photo, add one; the image server says 409 once.
	srv.mu.Lock()
	srv.uploadSeq = []string{"409 exists"}
	srv.filenames = 0
	srv.mu.Unlock()
	s.click(card(bike) + "[data-testid=edit-post]")
	s.wait("the form holds both photos", `document.querySelectorAll("#pub-previews img").length === 2 && document.getElementById("pub-price").value === "12.5"`)
	s.click(`#pub-previews button[aria-label="Remove photo 1"]`)
	s.do(chromedp.SetUploadFiles(chromedp.CSS("#pub-photos"), []string{writePhoto(t)}))
	s.wait("one kept, one new", `document.querySelectorAll("#pub-previews img").length === 2`)
	s.eval(`(() => { const i = document.getElementById("pub-title"); i.value = "Red road bike, serviced"; i.dispatchEvent(new Event("input", {bubbles: true})); return ""; })()`)
	s.shot("editing")
	s.click("#pub-submit")
	s.wait("the edited page", `!document.getElementById("post-view").hidden && document.getElementById("post-heading").textContent === "Red road bike, serviced" && document.querySelectorAll("[data-testid=gallery-photo]").length === 2`)
	s.wait("still reserved", hasText("#post-detail [data-testid=status-badge]", "Reserved"))
	if got := s.eval(`document.body.dataset.renderFailures || ""`); got != "" {
		t.Errorf("render failures: %s", got) // the 409 itself is a console error of the browser's
	}
	s.shot("edited")
	srv.mu.Lock()
	var images []any
	for _, p := range srv.posts {
		if fmt.Sprint(u64(p["id"])) == bike {
			var doc map[string]any
			_ = json.Unmarshal([]byte(p["body"].(string)), &doc)
			images, _ = doc["images"].([]any)
		}
	}
	filenames, uploads := srv.filenames, srv.uploads
	srv.mu.Unlock()
	if filenames != 2 {
		t.Errorf("%d filenames asked, want 2 (fresh names after the 409)", filenames)
	}
	if len(images) != 2 || images[0] != photos[1] || images[1] == photos[0] {
		t.Errorf("the edited listing's photos are %v (kept %s)", images, photos[1])
	}
	_ = uploads
	b.wait("the buyer sees the edit in place", exactText("#post-list [data-testid=post-title]", "Red road bike, serviced")+
		` && document.querySelectorAll("#post-list [data-testid=post-card]").length === 1`)
	b.shot("edit-live")

	// New listings while searching: one that matches joins a list sorted by
	// date, one that does not stays out; under a price order they are
	// counted, to be shown on request.
	m := dialProto(t, srv.URL())
	m.mustOK(`{"cmd":"register"}`)
	pub := func(title string) {
		body, _ := json.Marshal(map[string]any{"title": title, "nick": "Mo", "price": 40, "images": []string{}})
		item, _ := json.Marshal(map[string]any{"body": string(body), "features": 2, "range_values": []int{40}})
		m.mustOK(`{"cmd":"publish","items":[` + string(item[:len(item)-1]) + `,"to":[[[0,0,0]],[[0,0,0]]]}]}`)
	}
	pub("Green lamp")
	pub("Blue road bike")
	b.wait("the matching one added at the top", `document.querySelector("#post-list [data-testid=post-title]").textContent === "Blue road bike" && document.querySelectorAll("#post-list [data-testid=post-card]").length === 2`)
	if b.ok(hasText("#post-list [data-testid=post-title]", "Green lamp")) {
		t.Error("a listing that does not match the search was added")
	}
	b.eval(`(() => { const s = document.getElementById("search-sort"); s.value = "price_asc"; s.dispatchEvent(new Event("change")); return ""; })()`)
	b.wait("cheapest first", `location.hash === "#/browse?q=road&sort=price_asc" && document.getElementById("browse-summary").dataset.state === "results"`)
	pub("Black road bike")
	b.wait("counted, not slipped in", `!document.getElementById("search-fresh").hidden && document.getElementById("search-fresh").textContent.startsWith("1 new listing") && document.querySelectorAll("#post-list [data-testid=post-card]").length === 2`)
	b.shot("new-while-sorted")
	b.click("#search-fresh")
	b.wait("shown on request", `document.querySelectorAll("#post-list [data-testid=post-card]").length === 3 && document.getElementById("search-fresh").hidden`)
}

// TestBrowserSearchLogic checks the modules behind search and the seller's
// changes: the server's word rules for live posts, the search URL, the
// renewal window, replacing a post by id, a post's status, and 409.
func TestBrowserSearchLogic(t *testing.T) {
	jsChecks(t, []struct{ name, js string }{
		{"live posts are matched with the server's word rules", `
const p = safe.post({id: 1, from: "2", body: JSON.stringify({title: "Café Golf-GTI", msg: "ﬁat São", nick: "Ana", images: []})});
const yes = ["golf", "GOLF gt", "cafe", "CAFÉ golf", "gti", "fiat sao", "ana", "g", "golf gti ", "sa"];
const no = ["golfe", "golf gt ", "polo", "golf polo", "images"];
for (const q of yes) if (!state.matchesQuery(p, q)) return "should match: " + q;
for (const q of no) if (state.matchesQuery(p, q)) return "should not match: " + q;
if (state.matchesQuery(safe.post({id: 2, from: "2", body: "[1]"}), "golf")) return "an unreadable post matched";
return "";`},
		{"the search URL round-trips and refuses what the server would", `
const f = state.parseFind("#/browse?q=golf%20gti&sort=price_asc&status=available");
if (S(f) !== S({q: "golf gti", sort: "price_asc", avail: true})) return "parsed " + S(f);
if (state.findHash(f) !== "?q=golf+gti&sort=price_asc&status=available") return "hash " + state.findHash(f);
if (state.findHash(state.parseFind("#/browse")) !== "") return "no search";
if (state.parseFind("#/browse?sort=evil&q=" + "x".repeat(500)).sort !== "date") return "a bad sort kept";
if (state.parseFind("#/browse?q=" + "x".repeat(500)).q.length !== 120) return "a long q not cut";
if (!state.queryProblem("a")) return "one letter accepted";
if (!state.queryProblem("aa bb cc dd ee ff gg hh ii")) return "9 words accepted";
if (state.queryProblem("golf gti") || state.queryProblem("")) return "a good query refused";
return "";`},
		{"the renewal window and the refused renewal's time", `
const codes = await import("/assets/codes.js");
const e = state.expiry({date: 1000, renewed: 5000});
if (e.expires !== 5000 + 90 * 86400 || e.renewFrom !== 5000 + 83 * 86400) return "expiry " + S(e);
if (codes.renewFrom("a post can be renewed in the last 168h0m0s before it expires; post 18 from 1777171200 (in 604800 s)") !== 1777171200) return "from";
const t = codes.renewFrom("try again in 60 s");
if (!(t >= Date.now() / 1000 + 59 && t <= Date.now() / 1000 + 61)) return "in N s " + t;
if (codes.renewFrom("") !== undefined) return "no time";
return "";`},
		{"a new version replaces the post by id everywhere", `
const u = store.emptyUser();
state.addPosts(u, [{id: 4, from: "1", body: '{"title":"Bike"}'}], "1");
u.chats["4:7"] = {key: "4:7", postId: 4, peer: "7", msgs: [], title: "Bike"};
const fetched = {"4": u.posts["4"]};
const p = state.replacePost(u, {id: 4, from: "1", body: '{"title":"Bike, serviced"}', status: "sold", edited: 99}, "1", fetched);
for (const [w, m] of [["posts", u.posts], ["mine", u.myPosts], ["fetched", fetched]]) {
  if (m["4"] !== p || m["4"].doc.title !== "Bike, serviced" || m["4"].status !== "sold") return w + " " + S(m["4"]);
}
if (u.chats["4:7"].title !== "Bike, serviced") return "chat title " + u.chats["4:7"].title;
if (Object.keys(u.posts).length !== 1) return "a second copy";
const other = state.replacePost(u, {id: 5, from: "9", body: "{}"}, "1");
if (!other || "5" in u.posts || "5" in u.myPosts) return "a post not held was added";
return "";`},
		{"status is one of three; 409 asks for fresh names", `
const codes = await import("/assets/codes.js");
for (const [v, want] of [["sold", "sold"], ["reserved", "reserved"], [undefined, "available"], ["<b>", "available"], [1, "available"]]) {
  const p = safe.post({id: 1, from: "2", body: "{}", status: v});
  if (p.status !== want) return "status " + S(v) + " -> " + p.status;
}
if (!codes.reasonText({reason: "rate_limited", detail: "too many changes to posts; try again in 7 s"}, "update").startsWith("You changed your listings many times")) return "edit rate words";
if (codes.reasonText({reason: "not_found"}, "set_status") !== "This listing does not exist any more (deleted or expired).") return "not_found words";
const a = codes.uploadAction(409, "exists", null);
if (!a.renew || !a.conflict || a.ok) return "409 " + S(a);
return "";`},
	})
}
