package webapp

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/chromedp/chromedp"
)

// jsChecks runs, in a browser page of the app, JavaScript test cases that
// import the app's modules. Each case is the body of an async function that
// returns "" when it passes or a sentence saying what is wrong.
func jsChecks(t *testing.T, cases []struct{ name, js string }) {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	browser := startBrowser(t)
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	defer cancel()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	tctx, cancel2 := context.WithTimeout(ctx, waitFor)
	defer cancel2()
	if err := chromedp.Do(tctx, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	const prelude = `const safe = await import("/assets/safe.js");
const store = await import("/assets/store.js");
const state = await import("/assets/state.js");
const json = await import("/assets/json.js");
const S = (v) => json.stringify(v);
`
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expr := "(async () => { try {\n" + prelude + tc.js + "\n} catch (e) { return `threw: ${e}`; } })()"
			got, err := chromedp.Run(tctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatalf("evaluate: %v", err)
			}
			if got != "" {
				t.Error(got)
			}
		})
	}
}

// TestBrowserSafe checks safe.js, the gate every post, chat line and stored
// value passes before the app keeps or shows it (issue 10 item 8).
func TestBrowserSafe(t *testing.T) {
	jsChecks(t, []struct{ name, js string }{
		{"a cid is 1 to 64 safe characters, or nothing", `
for (const ok of ["a", "0f3c2a9e7d1b4c559a0e2f6b1c8d4e7a", "dev:42.7_x-Y", "x".repeat(64)]) {
  if (safe.cid(ok) !== ok) return "refused " + S(ok);
}
for (const bad of ["", "x".repeat(65), "a b", "<b>", "é", 7, null, undefined, {toString: () => "a"}, ["a"]]) {
  if (safe.cid(bad) !== undefined) return "kept " + String(bad);
}
return "";`},
		{"a chat's stored cids are checked on load", `
const c = safe.chat({postId: 5, peer: "2", msgs: [], peerCids: ["sam-1", "a b", 5, null, "x".repeat(65), "ok"]});
if (S(c.peerCids) !== S(["sam-1", "ok"])) return "peerCids " + S(c.peerCids);
if (S(safe.chat({postId: 5, peer: "2"}).peerCids) !== S([])) return "a chat without cids";
return "";`},
		{"an object where the title goes makes the post unreadable, not a throw", `
const p = safe.post({id: 7, from: "3", body: '{"title":{"toString":1}}'});
if (!p || !p.bad) return "not marked unreadable: " + S(p);
if ("title" in p.doc) return "title kept";
return "";`},
		{"numbers, arrays and objects in text fields", `
for (const body of ['{"title":5}', '{"msg":["a"]}', '{"nick":{"a":1}}', '{"price":"free"}',
                    '{"images":"x.jpg"}', '{"price":{"valueOf":1}}']) {
  const p = safe.post({id: 1, from: "2", body});
  if (!p.bad) return body + " not marked unreadable";
}
return "";`},
		{"bodies that are not JSON objects", `
for (const body of ["not json", "[1,2]", "null", "7", '"text"', 5, null, ["a"]]) {
  const p = safe.post({id: 1, from: "2", body});
  if (!p || !p.bad) return S(body) + " not marked unreadable";
}
return "";`},
		{"posts that cannot be keyed are skipped", `
for (const raw of [null, 5, "x", [], {from: "2", body: "{}"}, {id: -1, from: "2"}, {id: 1.5, from: "2"},
                   {id: "7", from: "2"}, {id: 1, from: {x: 1}}, {id: 1, from: "abc"}, {id: 1}]) {
  if (safe.post(raw) !== null) return S(raw) + " kept";
}
return "";`},
		{"a good post keeps its fields; huge text is cut", `
const huge = "x".repeat(20000);
const p = safe.post({id: 9007199254740993n, from: "42", date: 1700000000, features: 3, range_values: [350, 2019, "x", 1e400],
  to: [[[0,0,0]],[[0,1,0]]], body: JSON.stringify({title: huge, msg: huge, nick: huge, price: 350,
  images: ["0123456789abcdef0123456789abcdef/aB3+x-9Qz.jpg", "javascript:alert(1)", "//evil.example/a.jpg",
           "../../../etc/passwd.jpg", "0123456789abcdef/x.jpg?y", {}, "0123456789abcdef/ok.png"], channel: [[[0,0,0]],[[0,1,0]]]})});
if (!p || p.bad) return "good post refused: " + S(p);
if (p.id !== 9007199254740993n) return "64-bit id changed";
if (p.doc.title.length !== safe.MAX_TITLE || p.doc.msg.length !== safe.MAX_TEXT || p.doc.nick.length !== safe.MAX_NICK) return "text not cut";
if (S(p.doc.images) !== S(["0123456789abcdef0123456789abcdef/aB3+x-9Qz.jpg", "0123456789abcdef/ok.png"])) return "images: " + S(p.doc.images);
if (S(p.range_values) !== S([350, 2019, null, null])) return "range_values: " + S(p.range_values);
if (S(p.to) !== S([[[0,0,0]],[[0,1,0]]])) return "to: " + S(p.to);
return "";`},
		{"a body over the size bound is not parsed", `
const p = safe.post({id: 1, from: "2", body: JSON.stringify({title: "a".repeat(safe.MAX_BODY)})});
return p.bad ? "" : "parsed a body over MAX_BODY";`},
		{"stored posts are checked again", `
const again = safe.post(safe.post({id: 1, from: "2", body: '{"title":"Bike","images":["00aa00aa/a.jpg"]}'}));
if (again.bad || again.doc.title !== "Bike" || again.doc.images.length !== 1) return "clean post changed: " + S(again);
const stored = safe.post({id: 1, from: "2", doc: {title: {toString: 1}}});
return stored.bad ? "" : "hostile stored doc not marked";`},
		{"menus keep string names only", `
const t = safe.menuTree({depth: 99, children: [{name: {toString: 1}, children: [{name: "ok"}, 5, null]}]});
if (t.depth !== 3) return "depth " + t.depth;
if (t.children[0].name !== "?" || t.children[0].children.length !== 1) return S(t);
return safe.menuTree({children: "x"}) === null ? "" : "tree without children accepted";`},
		{"upload names of the signed shape only", `
for (const n of ["//evil.example/x", "javascript:alert(1)", "../x", "0123456789abcdef/a b", ""])
  if (safe.uploadName.test(n)) return n + " accepted";
return safe.uploadName.test("671772238154af7fce237c8a217d2cd2/aB3+x-9Qz") ? "" : "a real name refused";`},
		{"reason codes", `
return safe.reason("constructor") === "constructor" && safe.reason({}) === "" && safe.reason("<b>") === "" ? "" : "reason";`},
	})
}

// TestBrowserStore checks what the browser keeps: hostile stored state is
// cleaned on load, and the data epoch (PROTOCOL.md 1.1 §2, issue 11 item 4)
// drops everything of another epoch.
func TestBrowserStore(t *testing.T) {
	jsChecks(t, []struct{ name, js string }{
		{"epoch: none, adopted, same, reset", `
localStorage.clear();
store.saveNick("Ana");
store.saveCreds({user: "1", password: "secret-pass"});
store.saveUser("1", {chats: {"5:2": {key: "5:2", postId: 5, peer: "2", title: "Bike", msgs: []}}, lastPostId: 5});
store.saveUser("3", {lastPostId: 9});
if (store.checkEpoch(undefined) !== "none") return "no epoch (a 1.0 server) must change nothing";
if (store.checkEpoch(123n) !== "none" || store.checkEpoch({}) !== "none") return "epoch of a wrong type must change nothing";
if (!store.loadCreds()) return "creds dropped without an epoch";
if (store.checkEpoch("e1") !== "adopted") return "first epoch not adopted";
if (!store.loadCreds() || Object.keys(store.loadUser("1").chats).length !== 1) return "adopting dropped data";
if (store.checkEpoch("e1") !== "same") return "same epoch";
if (store.checkEpoch(undefined) !== "none") return "no epoch after one";
if (store.checkEpoch("e2") !== "reset") return "new epoch not a reset";
if (store.loadCreds() !== null) return "credentials of the old epoch kept";
if (Object.keys(store.loadUser("1").chats).length !== 0 || store.loadUser("1").lastPostId !== 0) return "user 1's chats kept";
if (store.loadUser("3").lastPostId !== 0) return "another user's state kept";
if (store.loadNick() !== "Ana") return "the nick (not an id) should stay";
if (store.loadEpoch() !== "e2") return "new epoch not stored";
const left = Object.keys(localStorage).filter((k) => k.startsWith("occase.")).sort();
if (S(left) !== S(["occase.v1.epoch", "occase.v1.nick"])) return "left in storage: " + S(left);
if (store.checkEpoch("e2") !== "same") return "after reset";
localStorage.clear();
return "";`},
		{"hostile stored state is cleaned on load", `
localStorage.clear();
localStorage.setItem("occase.v1.user.1", JSON.stringify({
  filter: {loc: "x", prod: [0, {}], features: "1", priceMin: 5},
  lastPostId: "9", posts: {a: {id: 1, from: "2", doc: {title: {toString: 1}}}, b: {id: "x"}, c: 5},
  chats: {x: {postId: 5, peer: "2", title: {toString: 1}, msgs: [{text: {a: 1}, mine: "yes"}, null, 5]}, y: {postId: "z"}},
  outbox: [5, {frame: null}, {frame: {cmd: "message"}}], seenMsgIds: [1, "2"],
}));
localStorage.setItem("occase.v1.creds", JSON.stringify({user: {}, password: 5}));
localStorage.setItem("occase.v1.nick", JSON.stringify({toString: 1}));
const u = store.loadUser("1");
if (S(u.filter) !== S({loc: [], prod: [], features: 0, priceMin: "", priceMax: ""})) return "filter " + S(u.filter);
if (u.lastPostId !== 0) return "lastPostId " + S(u.lastPostId);
if (Object.keys(u.posts).length !== 1 || !u.posts["1"].bad) return "posts " + S(u.posts);
const c = u.chats["5:2"];
if (!c || Object.keys(u.chats).length !== 1) return "chats " + S(u.chats);
if (c.title !== "Post #5" || c.msgs.length !== 1 || c.msgs[0].mine !== false || typeof c.msgs[0].text !== "string" || !c.msgs[0].bad) return "chat " + S(c);
if (u.outbox.length !== 1 || S(u.seenMsgIds) !== S(["2"])) return "outbox/seen " + S(u);
if (store.loadCreds() !== null || store.loadNick() !== "") return "creds or nick of the wrong type loaded";
localStorage.clear();
return "";`},
		{"listings reported: ids only, no repeats, the newest MAX_REPORTED", `
localStorage.clear();
const many = Array.from({length: store.MAX_REPORTED + 20}, (_, i) => String(i + 1));
localStorage.setItem("occase.v1.user.1", JSON.stringify({reported: [5, "x", {}, "7", "7", "12345678901234567890123", ...many]}));
const r = store.loadUser("1").reported;
if (r.length !== store.MAX_REPORTED) return "kept " + r.length;
if (r.some((x) => typeof x !== "string" || !/^\d{1,20}$/.test(x))) return "not ids: " + S(r.slice(0, 5));
if (new Set(r).size !== r.length) return "repeats";
if (r[r.length - 1] !== String(store.MAX_REPORTED + 20)) return "newest dropped: " + r[r.length - 1];
localStorage.setItem("occase.v1.user.1", JSON.stringify({reported: "5"}));
if (S(store.loadUser("1").reported) !== "[]") return "a string taken as a list";
localStorage.clear();
return "";`},
	})
}

// TestBrowserPostState checks what the app does with pushed posts and
// post_deleted (PROTOCOL.md 1.1 §4, issue 11 item 5).
func TestBrowserPostState(t *testing.T) {
	jsChecks(t, []struct{ name, js string }{
		{"hostile items are skipped or kept unreadable, the rest kept", `
const u = store.emptyUser();
const n = state.addPosts(u, [null, {id: "x"}, {id: 3, from: "9", body: '{"title":{"toString":1}}'},
  {id: 4, from: "7", body: '{"title":"Bike"}'}, {id: 5, from: "1", body: '{"title":"Mine"}'}], "1");
if (n !== 3) return "kept " + n;
if (!u.posts["3"].bad || u.posts["4"].doc.title !== "Bike" || !u.myPosts["5"] || u.myPosts["4"]) return S(u);
if (u.lastPostId !== 5) return "lastPostId " + u.lastPostId;
if (state.addPosts(u, {items: 1}, "1") !== 0) return "a non-array accepted";
return "";`},
		{"post_deleted removes the listing and marks its chats", `
const u = store.emptyUser();
state.addPosts(u, [{id: 4, from: "7", body: '{"title":"Bike"}'}, {id: 6, from: "7", body: '{"title":"Car"}'}], "1");
u.myPosts["4"] = u.posts["4"];
u.chats["4:7"] = {key: "4:7", postId: 4, peer: "7", msgs: [{text: "hi"}], removed: false};
u.chats["6:7"] = {key: "6:7", postId: 6, peer: "7", msgs: [], removed: false};
if (!state.removePost(u, 4)) return "nothing changed";
if ("4" in u.posts || "4" in u.myPosts || !("6" in u.posts)) return "lists " + S(Object.keys(u.posts));
if (!u.chats["4:7"].removed || u.chats["4:7"].msgs.length !== 1) return "chat about it not marked, or its lines lost";
if (u.chats["6:7"].removed) return "another chat marked";
if (state.removePost(u, 4)) return "a second post_deleted changed something";
for (const bad of [undefined, "6", -6, 6.5, {}, null]) if (state.removePost(u, bad)) return "id " + S(bad) + " accepted";
if (!("6" in u.posts)) return "a bad id removed a post";
return "";`},
		{"older pages are kept beyond the newest 300 and do not move the live cursor", `
const u = store.emptyUser();
const page = (from, to) => { const out = []; for (let i = from; i <= to; i++) out.push({id: i, from: "7", body: "{}"}); return out; };
state.addPosts(u, page(101, 400), "1");
if (Object.keys(u.posts).length !== 300 || u.lastPostId !== 400) return "live " + Object.keys(u.posts).length;
if (state.oldestPostId(u) !== "101") return "oldest " + state.oldestPostId(u);
state.addOlder(u, page(81, 100).reverse(), "1");
if (Object.keys(u.posts).length !== 320 || u.lastPostId !== 400 || state.oldestPostId(u) !== "81") return "older " + S([Object.keys(u.posts).length, u.lastPostId]);
state.addPosts(u, page(401, 401), "1");
if (Object.keys(u.posts).length !== 321) return "a live post trimmed an older page: " + Object.keys(u.posts).length;
if (u.keep !== 321) return "keep " + u.keep;
if (state.oldestPostId(store.emptyUser()) !== "") return "oldest of none";
return "";`},
		{"my_posts replaces My listings: gone ones leave, hidden ones are marked and out of Browse, new arrivals stay", `
const u = store.emptyUser();
state.addPosts(u, [{id: 4, from: "1", body: '{"title":"Old bike"}'}, {id: 6, from: "1", body: '{"title":"Car"}'}, {id: 7, from: "9", body: "{}"}], "1");
const before = new Set(Object.keys(u.myPosts));
u.myPosts["12"] = {id: 12, from: "1", doc: {title: "Just published"}, body: "{}"};
const n = state.setMyPosts(u, [{id: 9, from: "1", body: '{"title":"Lamp"}', under_review: true},
  {id: 6, from: "1", body: '{"title":"Car, sold"}', status: "sold"}, {id: 8, from: "9", body: "{}"}, null], "1", before);
if (n !== 3) return "kept " + n + ": " + S(Object.keys(u.myPosts));
if ("4" in u.myPosts) return "a listing the server no longer has stayed";
if (!("12" in u.myPosts)) return "a listing published meanwhile left";
if ("8" in u.myPosts) return "another author's listing kept";
if (!u.myPosts["9"].under_review || "9" in u.posts) return "the hidden listing: " + S(u.myPosts["9"]);
if (u.myPosts["6"].doc.title !== "Car, sold" || u.posts["6"].doc.title !== "Car, sold") return "not the server's version";
if (!("7" in u.posts)) return "Browse lost another author's listing";
state.setMyPosts(u, [], "1", new Set());
if (Object.keys(u.myPosts).length !== 3) return "a cut answer dropped listings";
return "";`},
		{"post_deleted for a post only a chat knows", `
const u = store.emptyUser();
u.chats["9007199254740993:7"] = {key: "9007199254740993:7", postId: 9007199254740993n, peer: "7", msgs: [], removed: false};
return state.removePost(u, json.parse('9007199254740993')) && u.chats["9007199254740993:7"].removed ? "" : "64-bit id not matched";`},
	})
}
