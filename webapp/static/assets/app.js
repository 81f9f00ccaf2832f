// The occase web app: account, browsing with a live subscription, selling
// with photos, and 1:1 chats with delivery ticks and a typing signal. It is a
// client of docs/PROTOCOL: every server interaction goes through Session
// (conn.js); all state lives in `app` and is saved through store.js.

import { Session, Offline, CloseAccountDeleted, CloseBanned } from "./conn.js";
import * as menu from "./menu.js";
import * as store from "./store.js";
import { parse } from "./json.js";
import * as safe from "./safe.js";
import * as state from "./state.js";
import * as codes from "./codes.js";
import * as push from "./push.js"; // notifications (issue 12)
import * as notices from "./notices.js";

const $ = (id) => document.getElementById(id);

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const k of kids.flat()) {
    if (k == null || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return el;
}

// Feature bits of a post. Condition is one choice, the others add up.
const CONDITION = [{ bit: 1, label: "New" }, { bit: 2, label: "Used" }];
const EXTRAS = [{ bit: 4, label: "Warranty" }, { bit: 8, label: "Trade-in accepted" }];
const FEATURES = [...CONDITION, ...EXTRAS];
const MAX_PHOTOS = safe.MAX_PHOTOS;
const TYPING_SHOW_MS = 5000;
const PRESENCE_EVERY_MS = 3000;

class UserError extends Error {}
class Cancelled extends Error {}

const app = {
  menu: null,
  creds: null,   // {user, password} once the server accepted them
  nick: "",
  u: null,       // the logged-in user's saved state (store.emptyUser)
  session: null,
  view: "browse-view",
  openChat: null,
  blocked: {},   // ids this account blocks (loadBlocks)
  typing: {},    // chat key -> time until which "typing…" shows
  lastPresence: {},
  photos: [],    // {blob, url, progress}
  draft: { loc: [], prod: [] },
  pub: { loc: [], prod: [] },
  remaining: null,
  subscribeError: "",
  inflight: null,
  publishing: false,
  lastLocalId: 0,
  more: { next: "", done: false, loading: false, error: "" }, // "Load more" over GET /api/posts
  signUpWhy: "",     // why the sign-up screen is shown to a guest
  afterLogin: null,  // what a guest asked for before signing up (write to a seller)
  postId: null,      // the listing shown in post-view
  fetched: {},       // id -> post | "loading" | "missing": listings read over /api/posts/{id}
  needToken: false,  // the server answered register with bad_token
  xhr: null,         // the photo upload in progress
  cancel: null,      // cancels the publishing in progress
  paused: "",        // why this tab is paused (another tab or device took over)
  connInfo: {},
  drafts: {},        // chat key -> the line being written (store.js drafts)
  find: { q: "", sort: "date", avail: false }, // the search in Browse (its URL)
  search: null,      // its results over GET /api/posts, when a search is active
  editing: null,     // the id (string) of the listing being edited in the Sell form
  renewAt: {},       // id -> Unix seconds from which the server allows a renewal
  banned: "",        // the id of this browser's account, banned by the moderators (close 4008)
  report: null,      // the listing the report dialog is about {id, from, title}
  notices: [],       // what the moderators told this account, not yet dismissed (notices.js)
};

// ---------------------------------------------------------------- words

// The words for the server's reasons, close codes and HTTP answers live in
// codes.js.
function reasonText(r, what) {
  return codes.reasonText(r, what);
}

let bannerTimer;
// showError shows text in the alert bar; a sticky one stays until dismissed.
// kind names what it is about ("login"), so a later success can clear it.
function showError(text, sticky = false, kind = "") {
  $("banner-text").textContent = text;
  $("banner").hidden = false;
  $("banner").dataset.kind = kind;
  clearTimeout(bannerTimer);
  if (!sticky) bannerTimer = setTimeout(() => { $("banner").hidden = true; }, 12000);
}

const RESET_TEXT = "The server's data was reset: your old account, listings and chats are gone. " +
  "Create a new account (or log in with one made since) to go on.";
const RESET_ACTED_TEXT = "The server's data was reset: the account, listings and chats this browser " +
  "kept from before are gone.";

let noticeTimer;
function notice(text) {
  $("notice").textContent = text;
  $("notice").hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { $("notice").hidden = true; }, 5000);
}

const money0 = new Intl.NumberFormat("en", { style: "currency", currency: "EUR", maximumFractionDigits: 0 });
const money2 = new Intl.NumberFormat("en", { style: "currency", currency: "EUR", minimumFractionDigits: 2, maximumFractionDigits: 2 });
const money = { format: (v) => (Number.isInteger(v) ? money0 : money2).format(v) };
const num = new Intl.NumberFormat("en");
// When a listing was published or edited: to the minute, seconds are noise.
const WHEN = { dateStyle: "medium", timeStyle: "short" };

// ---------------------------------------------------------------- boot

async function fetchJSON(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return parse(await r.text());
}

async function loadMenu() {
  try {
    const m = await fetchJSON("/api/menu");
    const locations = safe.menuTree(m && m.locations);
    const products = safe.menuTree(m && m.products);
    if (!locations || !products) throw new Error("menu without trees");
    app.menu = { locations, products };
  } catch {
    app.menu = menu.fallbackMenu;
    notice("Could not load the menu from the server; showing a sample one.");
  }
}

function wsURL() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

async function boot() {
  wireUI();
  await loadMenu();
  app.session = new Session(wsURL(), {
    onState, onLogin, onPush, onStale, onAuthFailed, onIdentifyFailed, onBanned,
  });
  push.init(app.session, openPeerChat);
  app.creds = store.loadCreds();
  app.nick = store.loadNick();
  if (app.creds) {
    enterUser(app.creds.user);
    app.session.start(app.creds);
  } else {
    enterGuest("browse-view");
  }
  $("boot-loading").hidden = true;
  applyRoute("replace");
  watchTabs();
}

// ---------------------------------------------------------------- routes
//
// Every view has a URL (hash routes: the db role serves the page only at
// "/"), kept in step through the history API, so Back, reload, bookmarks
// and shared links work:
//   #/browse  #/post/<id>  #/sell  #/mine  #/chats  #/chat/<post>/<user>
//   #/account  #/signup  #/chats/<user> (the newest conversation with user)
// The older links #chat/<post>/<user> and #chats/<user> are still understood.

const viewRoutes = {
  "browse-view": "#/browse", "publish-view": "#/sell", "mine-view": "#/mine",
  "chats-view": "#/chats", "settings-view": "#/account", "account-view": "#/signup",
};
const routeViews = Object.fromEntries(Object.entries(viewRoutes).map(([v, r]) => [r, v]));
const guestWhy = {
  "publish-view": "To sell something, create an account first: it takes one click.",
  "mine-view": "Create an account to publish listings of your own.",
  "chats-view": "Create an account to write to sellers and buyers.",
  "settings-view": "",
};

function routeOf() {
  if (app.view === "post-view" && app.postId != null) return `#/post/${app.postId}`;
  if (app.view === "publish-view" && app.editing) return `#/edit/${app.editing}`;
  if (app.view === "browse-view") return `#/browse${state.findHash(app.find)}`;
  if (app.view === "chat-view" && app.openChat) {
    const c = app.u && app.u.chats[app.openChat];
    if (c) return `#/chat/${c.postId}/${c.peer}`;
  }
  return viewRoutes[app.view] || "#/browse";
}

let appliedRoute = null;

// show switches to view; how is "push" (a new history entry), "replace" or
// "none" (the URL is already right: Back, Forward, a typed URL).
function show(view, extra = {}, how = "push") {
  saveDraft();
  if (app.editing && (view !== "publish-view" || extra.edit !== app.editing)) stopEdit();
  if (extra.edit) app.editing = extra.edit;
  app.view = view;
  // A listing's page belongs to the list it was opened from (its tab stays
  // selected); a shared link or a reload belongs to Browse.
  if (view === "browse-view" || view === "mine-view") app.listTab = view;
  else if (view !== "post-view") app.listTab = "";
  app.openChat = extra.chat ?? null;
  app.postId = extra.post ?? null;
  const url = routeOf();
  if (how === "push" && location.hash !== url) history.pushState({ inApp: true }, "", url);
  else if (how === "replace" || (how === "push" && location.hash === url)) history.replaceState(history.state, "", url);
  appliedRoute = location.hash;
  render();
}

// applyRoute shows the view the URL names.
function applyRoute(how = "none") {
  const h = location.hash;
  appliedRoute = h;
  let m = /^#\/?chat\/(\d{1,20})\/(\d{1,20})$/.exec(h);
  if (m) { openChatRoute(m[1], m[2], h.startsWith("#/") ? how : "replace"); return; }
  m = /^#\/post\/(\d{1,20})$/.exec(h);
  if (m) { openPost(m[1], how); return; }
  // Where a click on a push notification leads: the newest conversation
  // with that user (sw.js).
  m = /^#\/?chats\/(\d{1,20})$/.exec(h);
  if (m) {
    const peer = m[1];
    if (!app.creds) { askSignUp("Log in to read your messages.", () => openPeerChat(peer)); return; }
    show("chats-view", {}, "replace");
    openPeerChat(peer);
    return;
  }
  m = /^#\/edit\/(\d{1,20})$/.exec(h);
  if (m && app.creds) { startEdit(m[1], "replace"); return; }
  const path = h.split("?")[0];
  const view = routeViews[path] || "browse-view";
  if (view === "browse-view") {
    setFind(state.parseFind(h));
    show(view, {}, h === `#/browse${state.findHash(app.find)}` ? "none" : "replace");
    return;
  }
  if (!app.creds && view !== "browse-view" && view !== "account-view") {
    askSignUp(guestWhy[view] || "", () => show(view, {}, "replace"));
    return;
  }
  if (app.creds && view === "account-view") { show("settings-view", {}, "replace"); return; }
  show(view, {}, h === viewRoutes[view] ? "none" : "replace");
}

function openChatRoute(postId, peer, how) {
  if (!app.creds) {
    askSignUp("To write to this person, create an account first: it takes one click.", () => openChatRoute(postId, peer, "replace"));
    return;
  }
  if (peer === app.creds.user) { show("browse-view", {}, "replace"); return; }
  const c = ensureChat(parse(postId), peer, isMyPost(postId), "");
  save();
  openChat(c.key, how);
}

// openPost shows one listing on a page of its own; a listing this browser
// does not hold is read over GET /api/posts/{id} (guests too).
function openPost(id, how = "push") {
  id = String(id);
  show("post-view", { post: id }, how); // renderPost fetches what is not here
  scrollTo(0, 0);
}

function localPost(id) {
  if (!app.u) return null;
  const f = app.fetched[id];
  return app.u.posts[id] || app.u.myPosts[id] || (f && typeof f === "object" ? f : null);
}

async function fetchPost(id) {
  app.fetched[id] = "loading";
  try {
    const r = await fetch(`/api/posts/${encodeURIComponent(id)}`, { headers: { Accept: "application/json" } });
    if (r.status === 404 || r.status === 400) { app.fetched[id] = "missing"; return; }
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const p = safe.post(parse(await r.text()));
    app.fetched[id] = p && String(p.id) === id ? p : "missing";
  } catch {
    app.fetched[id] = "error";
  } finally {
    render();
  }
}

function goBack(fallback) {
  if (history.state && history.state.inApp) history.back();
  else show(fallback, {}, "replace");
}

// Drafts of chat lines are kept per conversation, across reloads.
function saveDraft() {
  if (!app.creds || !app.openChat || app.view !== "chat-view") return;
  const v = $("chat-input").value;
  if (v) app.drafts[app.openChat] = v.slice(0, 4000);
  else delete app.drafts[app.openChat];
  store.saveDrafts(app.creds.user, app.drafts);
}

// ---------------------------------------------------------------- other tabs
//
// Tabs of this browser say hello when they log in: a tab that the server
// then pauses (close 4001) knows it was another tab, not another device.
let tabs = null;
let lastHello = 0;
function watchTabs() {
  if (typeof BroadcastChannel !== "function") return;
  tabs = new BroadcastChannel("occase");
  tabs.onmessage = (ev) => {
    const d = ev.data;
    // Another tab of this browser learnt that the account was banned (a
    // paused tab has no connection to be told on).
    if (d && d.type === "banned" && app.creds && d.user === app.creds.user) accountBanned(d.user);
    if (d && d.type === "hello" && app.creds && d.user === app.creds.user) {
      // That tab's login closes this tab's connection (4001).
      lastHello = Date.now();
      setPaused("tab");
    }
  };
}

function helloTabs() {
  if (tabs && app.creds) tabs.postMessage({ type: "hello", user: app.creds.user });
}

function setPaused(where) {
  app.paused = where;
  render();
}

// enterGuest shows the listings to someone without an account, over the
// HTTP read API (no WebSocket): an account is asked for only to sell or to
// write. view is "browse-view", or "account-view" for the sign-up screen.
function enterGuest(view) {
  app.u = store.emptyUser(); // never saved: save() needs credentials
  app.draft = { loc: [], prod: [] };
  app.openChat = null;
  app.inflight = null;
  app.view = view;
  app.more = { next: "", done: false, loading: false, error: "" };
  if (findActive()) newSearch(); else loadMore();
}

// askSignUp shows the sign-up screen to a guest, saying why; then, once
// signed up, runs what they were doing.
function askSignUp(why, then = null) {
  saveDraft();
  app.signUpWhy = why;
  app.afterLogin = then;
  app.view = "account-view";
  app.openChat = null;
  render();
  $("nick-input").focus();
}

function enterUser(id) {
  app.u = store.loadUser(id);
  app.drafts = store.loadDrafts(id);
  app.draft = { loc: [...app.u.filter.loc], prod: [...app.u.filter.prod] };
  app.openChat = null;
  app.inflight = null;
  app.notices = [];
  app.view = "browse-view";
  app.more = { next: "", done: false, loading: false, error: "" };
  if (findActive()) newSearch();
}

function save() {
  if (app.u && app.creds) store.saveUser(app.creds.user, app.u);
}

// ---------------------------------------------------------------- session hooks

let wasOnline = false;
function onState(state, info) {
  app.connInfo = { ...info, at: Date.now() };
  if (state === "online") { wasOnline = true; app.paused = ""; }
  if (state === "replaced") app.paused = Date.now() - lastHello < 15000 ? "tab" : "device";
  renderConn();
  if (state === "replaced" || state === "online") render();
  // 4006: the server paused this app for sending too much; say so plainly.
  if (state === "offline" && info.held) {
    showError(`${info.words} It reconnects on its own in ${Math.ceil(info.retryIn / 1000)} s.`, false, "conn");
  }
  if (state === "online" && $("banner").dataset.kind === "conn") $("banner").hidden = true;
  // The account was deleted from another device or tab.
  if (state === "idle" && info.code === CloseAccountDeleted && app.creds) accountGone(codes.closeInfo(CloseAccountDeleted).words);
  // The moderators banned the account: refused at login, or closed live.
  if (state === "idle" && info.code === CloseBanned) accountBanned();
}

// renderConn is the header's word for the connection: never "Online" while
// the browser knows it is offline.
function renderConn() {
  const st = app.session ? app.session.state : "idle";
  const info = app.connInfo || {};
  const el = $("conn-status");
  let state = st;
  if (st === "online" && !navigator.onLine) state = "offline";
  el.dataset.state = state;
  let text;
  if (state === "offline") {
    // Said once per attempt, not counted down: the status is a live region.
    const left = Math.max(1, Math.ceil((info.retryIn || 0) / 1000));
    const why = info.code == null || info.code === 1006 ? "Server unreachable." : info.words || "";
    text = st === "online" ? "Offline" : `Offline · retrying in ${left} s`;
    el.title = st === "online" ? "This device has no network." : `${why} Reconnecting in ${left} s.`;
  } else {
    text = {
      idle: "Not connected", online: "Online", replaced: "Paused",
      connecting: wasOnline ? "Reconnecting…" : "Connecting…",
    }[state] || state;
  }
  if (!app.creds && st === "idle") text = "Browsing as a guest";
  if (state !== "offline") el.title = "";
  el.textContent = text;
  $("reconnect-btn").hidden = !(state === "offline" && st !== "online" && !info.held);
  const waiting = app.u && app.creds ? app.u.outbox.filter((o) => o.chat).length : 0;
  $("outbox-count").hidden = !(waiting && state !== "online");
  $("outbox-count").textContent = waiting ? `${waiting} unsent` : "";
  $("outbox-count").title = waiting ? `${waiting} message${waiting === 1 ? "" : "s"} waiting to be sent` : "";
}

// dropLocal forgets, in memory, everything of the old data epoch (store.js
// has already removed it from storage).
function dropLocal() {
  app.creds = null;
  app.u = null;
  app.inflight = null;
  app.openChat = null;
  app.typing = {};
  app.blocked = {};
  app.notices = [];
  app.remaining = null;
  app.afterLogin = null;
  app.view = "account-view";
}

// onLogin runs after register_ack or login_ack ok. acted says the person
// asked for this login (the register button, the login form) rather than
// the app logging in with what it had stored.
function onLogin(identity, ack, acted) {
  // What the last attempt said (wrong password, data reset) is answered now;
  // a stale login error never stays beside a successful login.
  if (acted || $("banner").dataset.kind === "login") $("banner").hidden = true;
  $("token-box").hidden = true;
  // A new account (or another one) after a ban: the banned account's
  // credentials and what was kept for it go (the same id: the ban was lifted).
  if (app.banned && app.banned !== identity.user) store.forgetAccount(app.banned);
  app.banned = "";
  app.needToken = false;
  helloTabs();
  if (store.checkEpoch(ack.epoch) === "reset") {
    dropLocal();
    if (!acted) {
      // These credentials came from the old data: whoever holds that id
      // now is someone else. Stop, and let the person start again.
      app.session.stop();
      enterGuest("account-view");
      showError(RESET_TEXT, true);
      render();
      return;
    }
    showError(RESET_ACTED_TEXT, true);
  }
  if (!app.creds || app.creds.user !== identity.user) {
    const view = app.view;
    app.creds = identity;
    store.saveCreds(identity);
    enterUser(identity.user);
    if (ack.cmd === "register_ack") {
      notice("Welcome! Your account is ready. Save your password under Account to use it on other devices.");
    } else {
      notice("You are logged in.");
    }
    // A guest reading a listing stays on it.
    if (view === "post-view") app.view = view;
    else if (!app.afterLogin) { show("browse-view", {}, "replace"); }
  }
  const rem = safe.finite(ack.remaining_posts);
  if (rem !== undefined) app.remaining = Math.max(0, Math.trunc(rem));
  subscribe();
  pump();
  loadBlocks();
  // Only when some wait: a server without notices never counts them, and
  // this login asked for new ones to be pushed ("notices":true).
  if (safe.finite(ack.notices) > 0) loadNotices();
  // A node that answers my_posts counts the account's listings in
  // login_ack; an older one never does, and is never asked.
  if (safe.finite(ack.my_posts) !== undefined) loadMine();
  app.signUpWhy = "";
  const then = app.afterLogin;
  app.afterLogin = null;
  render();
  if (then) then();
  push.loggedIn(identity.user);
}

// Blocking (docs/protocol.md "Blocking a user"): the ids this account
// blocks live on the server; the app reads them after each login (blocks)
// and keeps them in app.blocked (id -> true) to show. The server refuses a
// blocked person's messages to us; we show a conversation with them as
// blocked, with Unblock there and under Account.
async function loadBlocks() {
  let r;
  try {
    r = await app.session.request({ cmd: "blocks" });
  } catch {
    return; // offline: read again after the next login
  }
  if (r.result !== "ok" || !Array.isArray(r.users)) return;
  app.blocked = {};
  for (const id of r.users) if (safe.userId(id) != null) app.blocked[String(id)] = true;
  render();
}

// loadMine fills My listings from the server (docs/protocol.md "My
// listings"): every live listing of this account, whatever Browse's filter
// and wherever it was published, those under review marked. It replaces
// what this browser guessed from Browse and its own publishes: a listing
// the server no longer has leaves. Pages are read while the server gives a
// cursor (at most MINE_PAGES of them).
const MINE_PAGES = 50;
let mineRead = 0;
async function loadMine() {
  const read = ++mineRead;
  const u = app.u;
  const me = app.creds && app.creds.user;
  const before = new Set(Object.keys(u.myPosts));
  const items = [];
  let cursor = null;
  let whole = false;
  for (let i = 0; i < MINE_PAGES; i++) {
    let r;
    try {
      r = await app.session.request(cursor === null ? { cmd: "my_posts" } : { cmd: "my_posts", before: cursor });
    } catch {
      return; // offline: read again after the next login
    }
    // A newer login asked again, or another account is in.
    if (read !== mineRead || app.u !== u) return;
    if (r.result !== "ok" || !Array.isArray(r.items)) return;
    items.push(...r.items);
    if (!safe.isId(r.next)) { whole = true; break; }
    cursor = r.next;
  }
  // Cut at MINE_PAGES: add what was read, drop nothing.
  state.setMyPosts(u, items, me, whole ? before : new Set());
  save();
  render();
  scheduleReviewRefresh();
}

// loadNotices asks for what the moderators told this account (docs/protocol.md
// "Notices").
async function loadNotices() {
  let r;
  try {
    r = await app.session.request({ cmd: "notices" });
  } catch {
    return; // offline: asked again after the next login
  }
  if (r.result !== "ok" || !Array.isArray(r.notices)) return;
  addNotices(r.notices);
}

// addNotices shows notices; a removed listing leaves My listings.
function addNotices(list) {
  const before = app.notices.length;
  app.notices = notices.merge(app.notices, list);
  let changed = app.notices.length !== before;
  for (const n of app.notices) if (n.post && app.u && state.removePost(app.u, n.post)) changed = true;
  if (!changed) return;
  save();
  render();
}

// dismissNotices tells the server the notices shown were seen; they go.
async function dismissNotices() {
  const upto = notices.newest(app.notices);
  if (!upto) return;
  $("notices-status").hidden = true;
  let r;
  try {
    r = await app.session.request({ cmd: "notices_seen", upto: parse(upto) });
  } catch {
    r = { result: "fail", reason: "unavailable" };
  }
  if (r.result !== "ok") {
    $("notices-status").textContent = app.session.state !== "online"
      ? "You are offline. Connect, then try again." : reasonText(r, "notices_seen");
    $("notices-status").hidden = false;
    return;
  }
  app.notices = app.notices.filter((n) => BigInt(n.id) > BigInt(upto));
  render();
}

function renderNotices() {
  const box = $("notices");
  box.hidden = !(app.creds && app.notices.length);
  if (box.hidden) return;
  $("notices-title").textContent = app.notices.length === 1 ? "A message from the moderators" : `${app.notices.length} messages from the moderators`;
  syncList($("notices-list"), app.notices, (n) => n.id, (n) => notices.text(n), (n) =>
    h("li", { "data-testid": "notice-row", "data-notice": n.id }, notices.text(n)));
}

// setBlock blocks (block true) or unblocks peer; status is the element
// that says what went wrong.
async function setBlock(peer, block, status) {
  status.hidden = true;
  let r;
  try {
    r = await app.session.request({ cmd: block ? "block" : "unblock", user: String(peer) });
  } catch {
    r = { result: "fail", reason: "unavailable" };
  }
  if (r.result !== "ok") {
    status.textContent = r.reason === "unavailable" && app.session.state !== "online"
      ? "You are offline. Connect, then try again."
      : reasonText(r, block ? "block" : "unblock");
    status.hidden = false;
    return false;
  }
  if (block) app.blocked[String(peer)] = true;
  else delete app.blocked[String(peer)];
  render();
  return true;
}

function renderBlocked() {
  const ids = Object.keys(app.blocked).sort((a, b) => a.length - b.length || (a < b ? -1 : 1));
  $("blocked-empty").hidden = ids.length > 0;
  const names = {};
  for (const c of Object.values(app.u.chats)) if (c.peerNick) names[c.peer] = c.peerNick;
  syncList($("blocked-list"), ids, (id) => id, (id) => names[id] || "", (id) =>
    h("li", { "data-testid": "blocked-row", "data-user": id },
      h("span", {}, names[id] ? `${names[id]} (user ${id})` : `User ${id}`),
      h("button", { type: "button", "data-testid": "blocked-unblock", onclick: () => setBlock(id, false, $("blocked-status")) }, "Unblock")));
}

// deleteAccount sends delete_account (docs/protocol.md "Account deletion")
// with the stored password: the confirmation step is the guard here, the
// password the server's. On ok the account is gone: forget it and start
// afresh; the server closes the socket (4007), which the stopped session
// ignores.
async function deleteAccount() {
  if (!app.creds) return;
  const go = $("delete-acct-go");
  const status = $("delete-acct-status");
  go.disabled = true;
  status.hidden = false;
  status.textContent = "Deleting…";
  let r;
  try {
    r = await app.session.request({ cmd: "delete_account", password: app.creds.password });
  } catch {
    r = { result: "fail", reason: "unavailable" };
  } finally {
    go.disabled = false;
  }
  if (r.result !== "ok") {
    status.textContent = r.reason === "unavailable" && app.session.state !== "online"
      ? "You are offline. Connect, then try again."
      : reasonText(r, "delete_account");
    return;
  }
  accountGone("Your account was deleted.");
}

// accountGone forgets the account of this browser (deleted here, or on
// another device: close 4007) and returns to the start screen.
function accountGone(words) {
  const id = app.creds ? app.creds.user : "";
  push.loggedOut();
  app.session.stop();
  if (id) store.forgetAccount(id);
  else store.clearCreds();
  dropLocal();
  $("delete-acct-confirm").hidden = true;
  $("delete-acct-btn").hidden = false;
  enterGuest("account-view");
  show("account-view", {}, "replace");
  notice(words);
}

// Banned accounts (docs/protocol.md, close 4008): a login refused with
// "banned", or a live connection closed with 4008. As for 4003 and 4007 the
// session stops for good (no reconnect) and the start screen shows; unlike
// them the account is not forgotten on its own: the ban may be lifted, so
// the stored credentials stay (a reload tries them once more) until the
// person chooses "Forget this account on this device" or "Create a new
// account" in the bar, which stays on every view until then.
function onBanned(r, identity) {
  accountBanned(identity && identity.user);
}

// accountBanned says that account id (by default the one logged in) is
// banned. The refused login and the close after it both come here: said once.
function accountBanned(id = app.creds ? app.creds.user : "") {
  if (!id) return;
  if (app.creds && app.creds.user === id) {
    push.loggedOut(); // this browser's subscription: no notifications for it
    if (tabs) tabs.postMessage({ type: "banned", user: id });
  }
  app.session.stop();
  closeReport();
  dropLocal();
  // A notice of the account that is now banned ("Welcome! Your account is
  // ready") would stand above the ban's bar and contradict it.
  clearTimeout(noticeTimer);
  $("notice").hidden = true;
  app.banned = id;
  app.paused = "";
  enterGuest("account-view");
  show("account-view", {}, "replace");
  $("banned-new").focus();
}

// forgetBanned removes the banned account from this browser, as a deleted
// one is (accountGone); then shows the start screen or Browse.
function forgetBanned(view) {
  if (!app.banned) return;
  store.forgetAccount(app.banned);
  app.banned = "";
  if (view === "account-view") {
    askSignUp("");
    notice("The banned account was removed from this browser. Create a new account, or log in with another one.");
  } else {
    show("browse-view", {}, "replace");
    notice("The banned account was removed from this browser.");
  }
}

function onAuthFailed(r) {
  const reset = store.checkEpoch(r.epoch) === "reset";
  store.clearCreds();
  dropLocal();
  enterGuest("account-view");
  showError(reset ? RESET_TEXT : reasonText(r), reset, reset ? "" : "login");
  render();
}

function onIdentifyFailed(r, identity) {
  const register = identity && identity.register;
  if (register && r.reason === "bad_token") {
    app.needToken = true;
    $("token-box").hidden = false;
    const had = Boolean(identity.token);
    showError(had ? reasonText(r, "register") : "This server creates accounts only with a sign-up token. Paste yours and press “Create account” again.", true, "login");
    $("signup-token").setAttribute("aria-invalid", had ? "true" : "false");
    $("signup-token").focus();
    return;
  }
  showError(reasonText(r, register ? "register" : "login"), false, "login");
}

function onPush(f) {
  if (!app.u) return;
  if (f.cmd === "notice") { addNotices([f]); return; }
  if (f.cmd === "post" && Array.isArray(f.items)) onPosts(f.items);
  else if (f.cmd === "post_deleted") onPostDeleted(f);
  else if (f.cmd === "message") onMessage(f);
  else if (f.cmd === "presence") onPresence(f);
}

function onPostDeleted(f) {
  const s = app.search;
  let changed = false;
  if (s && safe.isId(f.id) && String(f.id) in s.posts) {
    delete s.posts[String(f.id)];
    s.ids = s.ids.filter((k) => k !== String(f.id));
    changed = true;
  }
  if (!state.removePost(app.u, f.id) && !changed) return;
  save();
  render();
}

// onStale handles a reply the server kept for us while we were away: a
// publish_ack tells us the id of the post we were publishing when the
// connection dropped.
function onStale(f) {
  if (!app.u) return;
  if (f.msg_id != null && seenMsg(f.msg_id)) return;
  if (f.cmd === "publish_ack" && f.result === "ok" && safe.isId(f.id) && app.u.pendingPublish) {
    adoptPublished(f, app.u.pendingPublish.post);
    app.u.pendingPublish = null;
    notice("Your listing was published.");
  }
  save();
  render();
}

// seenMsg reports whether a server msg_id was handled before, and records it.
function seenMsg(id) {
  if (!safe.isId(id)) return false;
  const k = String(id);
  const s = app.u.seenMsgIds;
  if (s.includes(k)) return true;
  s.push(k);
  if (s.length > 2000) s.splice(0, s.length - 2000);
  return false;
}

// ---------------------------------------------------------------- posts

function onPosts(items) {
  const me = app.creds && app.creds.user;
  state.addPosts(app.u, items, me);
  // A post frame whose id is held is a new version (docs/protocol.md
  // "Editing a listing"): replace it everywhere, search results included.
  for (const raw of Array.isArray(items) ? items : []) {
    const p = state.replacePost(app.u, raw, me, app.fetched);
    if (p) searchLive(p);
  }
  save();
  render();
  // A full catch-up page means there may be more: ask from the highest id.
  if (items.length >= 100) {
    clearTimeout(thinCheck);
    subscribe();
  }
}

function subscribeRequest() {
  const f = app.u.filter;
  const ranges = [];
  if (f.priceMin !== "" || f.priceMax !== "") {
    ranges.push(Number(f.priceMin || 0), f.priceMax === "" ? Number.MAX_SAFE_INTEGER : Number(f.priceMax));
  }
  return {
    cmd: "subscribe",
    channels: [menu.channelHashes(app.menu.locations, f.loc), menu.channelHashes(app.menu.products, f.prod)],
    any_of_features: f.features,
    last_post_id: app.u.lastPostId,
    ranges,
    // PROTOCOL.md 1.1 §4: post_deleted events. A 1.0 server ignores the
    // field, and then deleted listings stay until the list is reloaded.
    deletions: true,
  };
}

let subscribeRetry, thinCheck;
async function subscribe() {
  clearTimeout(subscribeRetry);
  try {
    const r = await app.session.request(subscribeRequest());
    // Shown in the list's summary rather than as an alarm: the rest of the
    // app (chat) works without posts.
    if (r.result === "ok") {
      app.subscribeError = "";
      // The subscription brings new listings, its catch-up right after
      // this ack. When that leaves less than a page, ask once for older
      // ones too, so that "Load more" shows only when there is more (and
      // goes when the list is all there is). A full catch-up page asks
      // again (onPosts), which puts this check off.
      clearTimeout(thinCheck);
      const u = app.u;
      thinCheck = setTimeout(() => {
        if (u === app.u && !app.more.done && !app.more.loading && Object.keys(u.posts).length < 20) loadMore();
      }, 1000);
    }
    else if (r.reason === "rate_limited") {
      // The earlier subscription stays; this one is asked again when the
      // server says it can be.
      app.subscribeError = reasonText(r, "subscribe");
      const secs = codes.secondsIn(r.detail);
      subscribeRetry = setTimeout(subscribe, Math.min(60, Math.max(1, secs ?? 5)) * 1000 + 200);
    } else app.subscribeError = `New listings cannot be followed right now. ${reasonText(r, "subscribe")}`;
    render();
  } catch (e) {
    if (!(e instanceof Offline)) throw e;
  }
}

function applyFilter(ev) {
  ev.preventDefault();
  const min = $("filter-price-min").value.trim();
  const max = $("filter-price-max").value.trim();
  if (min !== "" && max !== "" && Number(min) > Number(max)) {
    showError("The lowest price is above the highest one.");
    return;
  }
  let features = 0;
  for (const f of FEATURES) if ($(`filter-feat-${f.bit}`).checked) features |= f.bit;
  app.u.filter = { loc: [...app.draft.loc], prod: [...app.draft.prod], features, priceMin: min, priceMax: max };
  // A new filter starts a new list: older posts may match it now.
  app.u.posts = {};
  app.u.lastPostId = 0;
  app.u.keep = 0;
  app.more = { next: "", done: false, loading: false, error: "" };
  save();
  if (findActive()) newSearch();
  // On a phone the form would push the posts off screen: fold it away.
  if (matchMedia("(max-width: 30rem)").matches) $("filter-box").open = false;
  render();
  if (app.creds) subscribe();
  else loadMore();
}

// apiQuery is the filter as GET /api/posts parameters (docs/http-api.md).
function apiQuery(f) {
  const q = new URLSearchParams();
  const loc = menu.channelHashes(app.menu.locations, f.loc);
  const prod = menu.channelHashes(app.menu.products, f.prod);
  if (loc.length) q.set("location", loc.join(","));
  if (prod.length) q.set("product", prod.join(","));
  if (f.features) q.set("features", String(f.features));
  if (f.priceMin !== "" || f.priceMax !== "") {
    q.set("ranges", `${Number(f.priceMin || 0)},${f.priceMax === "" ? Number.MAX_SAFE_INTEGER : Number(f.priceMax)}`);
  }
  q.set("limit", "20");
  return q;
}

// loadMore fetches the next older page of listings over the HTTP read API:
// the whole list for a guest, older pages for a member (whose newest posts
// come live over the subscription).
async function loadMore() {
  const u = app.u;
  const more = app.more;
  if (!u || more.loading || more.done) return;
  const q = apiQuery(u.filter);
  const before = more.next || (app.creds ? state.oldestPostId(u) : "");
  if (before) q.set("before", before);
  more.loading = true;
  more.error = "";
  render();
  try {
    const r = await fetchJSON(`/api/posts?${q}`);
    if (u !== app.u || more !== app.more) return;
    state.addOlder(u, r && r.posts, app.creds && app.creds.user);
    const next = r && (typeof r.next === "string" || typeof r.next === "number") ? String(r.next) : "";
    more.next = /^\d{1,20}$/.test(next) ? next : "";
    more.done = more.next === "";
    save();
  } catch {
    more.error = "Could not load more listings. Please try again.";
  } finally {
    more.loading = false;
    render();
  }
}

// ---------------------------------------------------------------- search and sort

// A search (text, a price order, or "hide sold") is read over GET
// /api/posts with the filter, paged with the answer's next; its URL is
// #/browse?q=…&sort=…&status=available, so it can be shared and reloaded.
function findActive(f = app.find) {
  return Boolean(f.q.trim() || f.sort !== "date" || f.avail);
}

function setFind(f) {
  const same = f.q.trim() === app.find.q.trim() && f.sort === app.find.sort && f.avail === app.find.avail;
  app.find = f;
  if ($("search-q") !== document.activeElement) $("search-q").value = f.q;
  $("search-sort").value = f.sort;
  $("search-avail").checked = f.avail;
  if (!same && app.u) newSearch();
}

// findFromForm applies the search box, the order and the status filter.
function findFromForm() {
  const f = { q: $("search-q").value.replace(/\s+/g, " ").trimStart().slice(0, 120), sort: $("search-sort").value, avail: $("search-avail").checked };
  setFind(f);
  // On a phone the open filter would push the results off screen.
  if (findActive() && matchMedia("(max-width: 30rem)").matches) $("filter-box").open = false;
  if (app.view === "browse-view") show("browse-view", {}, "replace");
}

function newSearch() {
  app.search = findActive() ? {
    find: { ...app.find }, ids: [], posts: {}, next: "", done: false, loading: false, error: "",
    partial: false, fresh: 0, first: false, floor: app.u ? app.u.lastPostId : 0,
  } : null;
  if (app.search) searchMore();
  else render();
}

async function searchMore() {
  const s = app.search;
  if (!s || !app.u || s.loading || s.done) return;
  const f = s.find;
  const problem = state.queryProblem(f.q);
  if (problem) { s.done = true; s.first = true; s.error = problem; render(); return; }
  const q = apiQuery(app.u.filter);
  if (f.q.trim()) q.set("q", f.q.trim());
  if (f.sort !== "date") q.set("sort", f.sort);
  if (f.avail) q.set("status", "available");
  if (s.next) q.set("before", s.next);
  s.loading = true;
  s.error = "";
  render();
  try {
    const r = await fetchJSON(`/api/posts?${q}`);
    if (s !== app.search) return;
    for (const raw of r && Array.isArray(r.posts) ? r.posts : []) {
      const p = safe.post(raw);
      if (!p) continue;
      const k = String(p.id);
      if (!(k in s.posts)) s.ids.push(k);
      s.posts[k] = p;
    }
    const next = r && (typeof r.next === "string" || typeof r.next === "number") ? String(r.next) : "";
    // The price orders' cursor is "<price>:<id>", passed back as received.
    s.next = /^(\d{1,20}|[0-9.eE+-]{0,40}:\d{1,20})$/.test(next) ? next : "";
    s.done = s.next === "";
    if (r && r.partial === true) s.partial = true;
  } catch {
    if (s === app.search) s.error = "Could not search right now. Please try again.";
  } finally {
    s.loading = false;
    s.first = true;
    render();
  }
}

// searchLive applies a live post to the search shown: a new version of a
// result replaces it (or takes it out when it no longer matches); a new
// listing that matches joins a date-ordered list, and is counted ("N new
// listings") for a price order.
function searchLive(p) {
  const s = app.search;
  if (!s) return;
  const k = String(p.id);
  const fits = state.matchesQuery(p, s.find.q) && !(s.find.avail && p.status !== "available");
  if (k in s.posts) {
    if (fits) s.posts[k] = p;
    else { delete s.posts[k]; s.ids = s.ids.filter((x) => x !== k); }
    return;
  }
  if (!fits || !s.first || !(p.id > s.floor)) return;
  if (s.find.sort === "date" && !p.edited) {
    const i = s.ids.findIndex((x) => BigInt(x) < BigInt(k));
    if (i < 0 && !s.done) return; // older than what is loaded: Load more brings it
    s.posts[k] = p;
    s.ids.splice(i < 0 ? s.ids.length : i, 0, k);
  } else {
    s.fresh++;
  }
}

// ---------------------------------------------------------------- seller tools

function applyChanged(raw) {
  const p = state.replacePost(app.u, raw, app.creds && app.creds.user, app.fetched);
  if (p) searchLive(p);
  save();
  render();
  return p;
}

const statusWords = { sold: "Sold", reserved: "Reserved", available: "Available" };

async function setStatus(p, status) {
  try {
    const r = await app.session.request({ cmd: "set_status", id: p.id, status });
    if (r.result !== "ok") { showError(reasonText(r, "set_status")); return; }
    applyChanged(r.post && typeof r.post === "object" ? r.post : { ...rawOf(p), status });
    notice(status === "available" ? "Your listing is available again." : `Your listing is marked as ${statusWords[status].toLowerCase()}.`);
  } catch (e) {
    if (!(e instanceof Offline)) throw e;
    showError("You are offline. Try again when the app shows “Online”.");
  }
}

function dateText(unix) {
  return new Date(unix * 1000).toLocaleDateString([], { day: "numeric", month: "short", year: "numeric" });
}

function renewFrom(p) {
  const learned = app.renewAt[String(p.id)];
  return Math.max(state.expiry(p).renewFrom, learned || 0);
}

async function renewPost(p) {
  try {
    const r = await app.session.request({ cmd: "renew", id: p.id });
    if (r.result === "ok") {
      delete app.renewAt[String(p.id)];
      applyChanged(r.post && typeof r.post === "object" ? r.post : rawOf(p));
      const exp = safe.finite(r.expires);
      notice(exp ? `Renewed: your listing now runs until ${dateText(exp)}.` : "Your listing is renewed.");
      return;
    }
    const from = r.reason === "rate_limited" && /renew/.test(String(r.detail || "")) ? codes.renewFrom(r.detail) : undefined;
    if (from) {
      app.renewAt[String(p.id)] = from;
      render();
      showError(`This listing can be renewed from ${dateText(from)}, in its last week.`);
    } else showError(reasonText(r, "renew"));
  } catch (e) {
    if (!(e instanceof Offline)) throw e;
    showError("You are offline. Try again when the app shows “Online”.");
  }
}

// rawOf is a kept post in the shape of the wire (for a fallback when an ack
// carries no post).
function rawOf(p) {
  return { id: p.id, from: p.from, date: p.date, features: p.features, range_values: p.range_values, to: p.to,
    body: JSON.stringify(p.doc), status: p.status, renewed: p.renewed, edited: p.edited };
}

// sellerTools are the owner's buttons on a listing: Edit, the status, Renew.
function sellerTools(p) {
  const title = (!p.bad && p.doc.title) || "this listing";
  const box = h("div", { class: "seller-tools", "data-testid": "seller-tools" });
  if (!p.bad) box.append(h("button", { type: "button", "data-testid": "edit-post", "aria-label": `Edit ${title}`, onclick: () => startEdit(String(p.id)) }, "Edit"));
  for (const st of ["sold", "reserved", "available"]) {
    if (st === p.status) continue;
    box.append(h("button", { type: "button", "data-testid": `mark-${st}`, "aria-label": `Mark ${title} as ${st}`, onclick: (ev) => { ev.target.disabled = true; setStatus(p, st); } },
      st === "available" ? "Mark available" : `Mark ${st}`));
  }
  const from = renewFrom(p);
  const now = Date.now() / 1000;
  const exp = state.expiry(p).expires;
  box.append(h("button", { type: "button", "data-testid": "renew-post", disabled: now < from ? "" : null, "aria-describedby": `renew-${p.id}`,
    onclick: (ev) => { ev.target.disabled = true; renewPost(p); } }, "Renew"));
  box.append(h("p", { class: "help", id: `renew-${p.id}`, "data-testid": "renew-hint" },
    now < from ? `Runs until about ${dateText(exp)}; it can be renewed from ${dateText(from)}.` : `Runs until about ${dateText(exp)}: renew it to keep it listed.`));
  return box;
}

function statusBadge(p) {
  return p.status && p.status !== "available"
    ? h("span", { class: `status ${p.status}`, "data-testid": "status-badge" }, statusWords[p.status]) : null;
}

// ---------------------------------------------------------------- editing

// startEdit fills the Sell form with one of the person's listings; Save
// sends update with the same id. Photos are kept, removed or added.
function startEdit(id, how = "push") {
  const p = app.u && app.u.myPosts[id];
  if (!p || p.bad) {
    notice("That listing is not one of yours, or it is gone.");
    show("mine-view", {}, how === "replace" ? "replace" : "push");
    return;
  }
  if (app.editing !== id) {
    if (app.editing) stopEdit();
    resetPublishForm();
    app.editing = id;
    const d = p.doc;
    const rv = p.range_values;
    $("pub-title").value = d.title || "";
    $("pub-desc").value = d.msg || "";
    const price = d.price ?? rv[0];
    $("pub-price").value = price != null ? String(price) : "";
    $("pub-year").value = rv[1] ? String(rv[1]) : "";
    $("pub-km").value = rv[2] ? String(rv[2]) : "";
    const ch = d.channel || p.to || [];
    app.pub = { loc: [...((ch[0] && ch[0][0]) || [])].map(Number), prod: [...((ch[1] && ch[1][0]) || [])].map(Number) };
    for (const f of FEATURES) { const el = $(`pub-feat-${f.bit}`); if (el) el.checked = Boolean(Number(p.features) & f.bit); }
    const urls = photoURLs(p, true);
    app.photos = safe.images(d.images).map((path, i) => ({ kept: path, url: urls[i], progress: 1 }));
    renderPublishSelects();
    renderPreviews();
    renderCounts();
    setPubStatus("");
  }
  show("publish-view", { edit: id }, how);
  renderEditing();
  $("pub-title").focus();
}

function stopEdit() {
  app.editing = null;
  resetPublishForm();
  setPubStatus("");
  renderEditing();
}

function renderEditing() {
  const e = Boolean(app.editing);
  $("pub-heading").hidden = !e;
  $("pub-heading").textContent = e ? "Edit your listing" : "";
  $("pub-submit").textContent = e ? "Save changes" : "Publish";
  $("pub-edit-cancel").hidden = !e;
  renderPubReview();
}

// A listing under review refuses every publish (under_review): the Sell
// form says so before the seller fills it in and uploads photos. Edits
// of one's listings still work, so an edit shows no such note.
function renderPubReview() {
  const mine = (app.u && app.u.myPosts) || {};
  $("pub-under-review").hidden = Boolean(app.editing) || !Object.values(mine).some((p) => p && p.under_review);
}

function adoptPublished(ack, post) {
  const p = safe.post({ ...post, id: ack.id, date: ack.date, from: app.creds.user });
  if (!p) return;
  app.u.myPosts[String(p.id)] = p;
  if (typeof app.remaining === "number" && app.remaining > 0) app.remaining--;
}

async function deletePost(id) {
  try {
    const r = await app.session.request({ cmd: "delete", id });
    if (r.result === "ok" || r.reason === "not_found") {
      delete app.u.myPosts[String(id)];
      delete app.u.posts[String(id)];
      save();
      render();
      notice(r.result === "ok" ? "Listing deleted." : reasonText(r, "delete"));
    } else {
      showError(reasonText(r, "delete"));
    }
  } catch (e) {
    if (!(e instanceof Offline)) throw e;
    showError("You are offline. Try again when the app shows “Online”.");
  }
}

// ---------------------------------------------------------------- publishing

async function toJpeg(file) {
  const bmp = await createImageBitmap(file);
  const scale = Math.min(1, 1600 / Math.max(bmp.width, bmp.height));
  const w = Math.max(1, Math.round(bmp.width * scale));
  const hh = Math.max(1, Math.round(bmp.height * scale));
  const c = document.createElement("canvas");
  c.width = w;
  c.height = hh;
  c.getContext("2d").drawImage(bmp, 0, 0, w, hh);
  bmp.close();
  return new Promise((res, rej) => c.toBlob((b) => (b ? res(b) : rej(new Error("encode"))), "image/jpeg", 0.85));
}

async function addPhotos(ev) {
  const files = [...ev.target.files];
  ev.target.value = "";
  for (const f of files) {
    if (app.photos.length >= MAX_PHOTOS) {
      showError(`A listing can have at most ${MAX_PHOTOS} photos.`);
      break;
    }
    try {
      const blob = await toJpeg(f);
      if (blob.size > 10 * 1024 * 1024) throw new UserError(`“${f.name}” is too large even after shrinking it.`);
      app.photos.push({ blob, url: URL.createObjectURL(blob), progress: 0 });
    } catch (e) {
      showError(e instanceof UserError ? e.message : `“${f.name}” is not an image this browser can read.`);
    }
  }
  renderPreviews();
}

// upload sends one photo; it resolves with the image server's answer
// {status, body, retryAfter} and rejects with Cancelled when cancelled.
function upload(photo, path, onProgress) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    app.xhr = x;
    x.open("POST", `/${path}`);
    x.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    x.onload = () => {
      app.xhr = null;
      if (x.status === 200 || x.status === 201) onProgress(1);
      resolve({ status: x.status, body: String(x.responseText || "").slice(0, 100), retryAfter: x.getResponseHeader("Retry-After") });
    };
    x.onerror = () => { app.xhr = null; resolve({ status: 0, body: "", retryAfter: null }); };
    x.onabort = () => { app.xhr = null; reject(new Cancelled()); };
    x.send(photo.blob);
  });
}

// wait resolves after ms, or rejects with Cancelled when the person cancels.
function wait(ms) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { app.waitCancel = null; resolve(); }, ms);
    app.waitCancel = () => { clearTimeout(t); app.waitCancel = null; reject(new Cancelled()); };
  });
}

async function askNames(n) {
  const r = await app.session.request({ cmd: "filenames" });
  if (r.result !== "ok") throw new UserError(reasonText(r));
  const names = (Array.isArray(r.names) ? r.names : []).filter((x) => typeof x === "string" && safe.uploadName.test(x));
  if (names.length < n) throw new UserError("The server gave too few photo names.");
  return names;
}

const MAX_BUSY_RETRIES = 3;

// uploadPhotos uploads every photo (docs/protocol.md "img role, HTTP"):
// names that expired (410) are asked again once; a busy server (503) is
// asked again after its Retry-After, at most 3 times a photo.
async function uploadPhotos() {
  // Photos kept from the listing being edited are not uploaded again.
  const images = app.photos.map((ph) => ph.kept || null);
  const todo = app.photos.map((ph, i) => i).filter((i) => !app.photos[i].kept);
  if (!todo.length) return images;
  setPubStatus("Preparing the upload…");
  let names = await askNames(todo.length);
  let renewed = false;
  let conflicted = false;
  for (let j = 0; j < todo.length; j++) {
    const i = todo[j];
    const ph = app.photos[i];
    for (let busy = 0; ;) {
      if (app.cancelled) throw new Cancelled();
      setPubStatus(`Uploading photo ${j + 1} of ${todo.length}…`);
      const path = `${names[j]}.jpg`;
      const res = await upload(ph, path, (f) => { ph.progress = f; renderProgress(i); });
      const act = codes.uploadAction(res.status, res.body, res.retryAfter);
      if (act.ok) { images[i] = path; break; }
      // 410: the names expired; 409: a name is taken (perhaps by someone
      // else's picture, so it is never published). Either way: fresh
      // names, once each.
      if (act.renew && !(act.conflict ? conflicted : renewed)) {
        if (act.conflict) conflicted = true; else renewed = true;
        setPubStatus(act.conflict ? "A photo name was taken already; asking the server for new ones…"
          : "The photo names had expired; asking the server for new ones…");
        names = [...names.slice(0, j), ...(await askNames(todo.length - j))];
        continue;
      }
      if (act.renew) {
        throw new UserError(act.conflict ? "The image server refused new photo names twice as taken. Please try again."
          : "The server refused the photo names as expired twice. Please try again later.");
      }
      if (act.retryAfter !== undefined) {
        if (++busy > MAX_BUSY_RETRIES) throw new UserError("The image server is busy. Please try again in a minute.");
        setPubStatus(`The image server is busy; trying photo ${j + 1} again in ${act.retryAfter} s…`);
        await wait(act.retryAfter * 1000);
        continue;
      }
      throw new UserError(act.error);
    }
  }
  return images;
}

function leafCode(tree, code) {
  const n = menu.nodeAt(tree, code);
  return n && code.length > 0 && !(n.children && n.children.length);
}

const BAD_FIELDS = "Please correct the marked fields.";

function setPubStatus(t) {
  $("pub-status").textContent = t;
}

const TITLE_MAX = 80;
const DESC_MAX = 2000;

function renderCounts() {
  for (const [id, max] of [["pub-title", TITLE_MAX], ["pub-desc", DESC_MAX]]) {
    const n = [...$(id).value].length;
    const el = $(`${id}-count`);
    el.textContent = n > max ? `${n - max} character${n - max === 1 ? "" : "s"} too long (at most ${max})` : `${n} of ${max} characters`;
    el.classList.toggle("over", n > max);
  }
}

// fieldError shows msg next to a field (or clears it) and ties it to the
// field with aria-describedby and aria-invalid.
function fieldError(key, input, msg) {
  const err = $(`pub-${key}-err`);
  err.textContent = msg || "";
  err.hidden = !msg;
  if (!input) return;
  const ids = new Set((input.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean));
  if (msg) ids.add(err.id); else ids.delete(err.id);
  if (ids.size) input.setAttribute("aria-describedby", [...ids].join(" ")); else input.removeAttribute("aria-describedby");
  input.setAttribute("aria-invalid", msg ? "true" : "false");
}

// validatePublish checks the form, shows each problem next to its field,
// and returns the listing's values, or null. focus moves to the first bad
// field and scrolls it into view (on a phone the button is far below).
function validatePublish(focus = true) {
  const bad = [];
  const check = (key, input, msg) => { fieldError(key, input, msg); if (msg) bad.push(input); };
  const title = $("pub-title").value.trim();
  const tlen = [...title].length;
  check("title", $("pub-title"), !title ? "Please give a title." : tlen > TITLE_MAX ? `The title is too long: ${tlen} characters, at most ${TITLE_MAX}.` : "");
  check("loc", $("pub-loc-0") || $("pub-loc"), leafCode(app.menu.locations, app.pub.loc) ? "" : "Please choose where it is, down to the city.");
  check("prod", $("pub-prod-0") || $("pub-prod"), leafCode(app.menu.products, app.pub.prod) ? "" : "Please choose what it is, down to the model.");
  const cond = CONDITION.find((c) => $(`pub-feat-${c.bit}`).checked);
  check("cond", $(`pub-feat-${CONDITION[0].bit}`), cond ? "" : "Please say whether it is new or used.");
  const price = codes.parsePrice($("pub-price").value);
  check("price", $("pub-price"), price.error || "");
  const yearS = $("pub-year").value.trim();
  const maxYear = new Date().getFullYear() + 1;
  const year = yearS === "" ? 0 : /^\d{4}$/.test(yearS) && Number(yearS) >= 1900 && Number(yearS) <= maxYear ? Number(yearS) : NaN;
  check("year", $("pub-year"), Number.isNaN(year) ? `Give the year as four digits, 1900 to ${maxYear}, or leave it empty.` : "");
  const kmS = $("pub-km").value.trim().replace(/[\s,.]/g, "");
  const km = kmS === "" ? 0 : /^\d{1,7}$/.test(kmS) ? Number(kmS) : NaN;
  check("km", $("pub-km"), Number.isNaN(km) ? "Give the kilometres as a whole number up to 9,999,999, or leave it empty." : "");
  const desc = $("pub-desc").value.trim();
  const dlen = [...desc].length;
  check("desc", $("pub-desc"), dlen > DESC_MAX ? `The description is too long: ${dlen} characters, at most ${DESC_MAX}. Please shorten it.` : "");
  if (bad.length) {
    if (focus) {
      bad[0].focus({ preventScroll: true });
      bad[0].scrollIntoView({ block: "center" });
    }
    return null;
  }
  return { title, loc: [...app.pub.loc], prod: [...app.pub.prod], cond, price: price.value, year, km, desc };
}

async function publish(ev) {
  ev.preventDefault();
  if (app.publishing) return;
  // Nothing is uploaded before the form is valid.
  const v = validatePublish();
  if (!v) {
    setPubStatus(BAD_FIELDS);
    return;
  }
  let features = v.cond.bit;
  for (const x of EXTRAS) if ($(`pub-feat-${x.bit}`).checked) features |= x.bit;
  app.publishing = true;
  app.cancelled = false;
  app.cancel = () => {
    app.cancelled = true;
    if (app.xhr) app.xhr.abort();
    if (app.waitCancel) app.waitCancel();
  };
  $("pub-submit").disabled = true;
  $("pub-cancel").hidden = !app.photos.length;
  // The upload bars show only while photos upload: an empty (or, for the
  // photos an edit keeps, a full) bar before that reads as stuck.
  $("publish-form").classList.add("uploading");
  try {
    const images = app.photos.length ? await uploadPhotos() : [];
    if (app.cancelled) throw new Cancelled();
    $("pub-cancel").hidden = true;
    const editing = app.editing && app.u.myPosts[app.editing];
    const doc = {
      msg: v.desc, nick: (editing && editing.doc.nick) || app.nick || "", avatar: "",
      images, ex_details: [], in_details: [], channel: [[v.loc], [v.prod]], title: v.title, price: v.price,
    };
    // range_values are integers: the price in whole euros (rounded) for the
    // filters; the body's price keeps the cents.
    const post = {
      to: [[v.loc], [v.prod]], body: JSON.stringify(doc), features,
      range_values: [Math.round(v.price), v.year, v.km],
    };
    if (editing) {
      setPubStatus("Saving…");
      const r = await app.session.request({ cmd: "update", id: editing.id, items: [post] });
      if (r.result !== "ok") throw new UserError(reasonText(r, "update"));
      const id = String(editing.id);
      applyChanged(r.post && typeof r.post === "object" ? r.post
        : { ...rawOf(editing), body: post.body, to: post.to, features, range_values: post.range_values });
      stopEdit();
      if ($("banner").dataset.kind === "publish") $("banner").hidden = true;
      notice("Your changes are saved.");
      openPost(id);
      return;
    }
    setPubStatus("Publishing…");
    app.u.pendingPublish = { post };
    save();
    const r = await app.session.request({ cmd: "publish", items: [post] });
    app.u.pendingPublish = null;
    if (r.result !== "ok") throw new UserError(reasonText(r, "publish"));
    if (!safe.isId(r.id)) throw new UserError("The server's answer did not name the new listing.");
    adoptPublished(r, post);
    save();
    resetPublishForm();
    setPubStatus("Published! It is under “My listings”.");
    // The refusal of an earlier try is over: it would contradict this.
    if ($("banner").dataset.kind === "publish") $("banner").hidden = true;
    notice("Your listing is published.");
    render();
  } catch (e) {
    if (e instanceof Cancelled) {
      setPubStatus("Upload cancelled. Nothing was published; your form and photos are kept.");
    } else if (e instanceof Offline) {
      setPubStatus("The connection to the server was lost. If the listing is not in “My listings” once the app is online again, press Publish again.");
    } else if (e instanceof UserError) {
      setPubStatus(e.message);
      // A "published" notice from a publish before is not true of this one.
      $("notice").hidden = true;
      showError(e.message, false, "publish");
    } else {
      throw e;
    }
  } finally {
    app.publishing = false;
    app.cancel = null;
    $("publish-form").classList.remove("uploading");
    for (const p of app.photos) if (p.progress < 1) p.progress = 0;
    renderPreviews();
    $("pub-submit").disabled = false;
    $("pub-cancel").hidden = true;
  }
}

function resetPublishForm() {
  $("publish-form").reset();
  for (const p of app.photos) if (!p.kept) URL.revokeObjectURL(p.url);
  app.photos = [];
  app.pub = { loc: [], prod: [] };
  renderPublishSelects();
  renderPreviews();
  renderCounts();
  for (const k of ["title", "loc", "prod", "cond", "price", "year", "km", "desc"]) fieldError(k, null, "");
  for (const el of $("publish-form").querySelectorAll("[aria-invalid]")) el.setAttribute("aria-invalid", "false");
}

// ---------------------------------------------------------------- chat

function chatKey(postId, peer) {
  return `${postId}:${peer}`;
}

function isMyPost(postId) {
  return Boolean(app.u.myPosts[String(postId)]);
}

// ensureChat returns the chat about postId with peer, creating it; known is
// the post when the caller has it (a guest's listing, before signing up).
function ensureChat(postId, peer, iAmSeller, peerNick, known = null) {
  const key = chatKey(postId, peer);
  let c = app.u.chats[key];
  if (!c) {
    const p = app.u.posts[String(postId)] || app.u.myPosts[String(postId)] || known;
    c = app.u.chats[key] = {
      key, postId, peer: String(peer), peerNick: peerNick || "", iAmSeller,
      title: (p && !p.bad && (p.doc.title || p.doc.msg || "").slice(0, safe.MAX_TITLE)) || "A listing",
      msgs: [], unread: 0, peerIds: [], peerCids: [], last: Date.now(), removed: false,
    };
    if (!p) fillChatTitle(c);
  }
  if (peerNick) c.peerNick = peerNick;
  return c;
}

// fillChatTitle names a chat about a post this browser has not seen, from
// the HTTP read API when the server has one.
async function fillChatTitle(c) {
  try {
    const p = safe.post(await fetchJSON(`/api/posts/${encodeURIComponent(String(c.postId))}`));
    const t = p && !p.bad && (p.doc.title || p.doc.msg);
    if (!t || !app.u || app.u.chats[c.key] !== c) return;
    c.title = String(t).slice(0, 80);
    save();
    render();
  } catch {
    // No such post (deleted, or no read API): keep "A listing".
  }
}

function newLocalId() {
  // Unique per sender across browsers and restarts, exact as a JS number.
  app.lastLocalId = Math.max(Date.now() * 1000, app.lastLocalId + 1);
  return app.lastLocalId;
}

// newCid is a chat message's client id: 128 random bits in hex, unique per
// sender without counting on clocks or on one browser.
function newCid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function enqueue(frame, chat, id) {
  app.u.outbox.push({ frame, chat, id });
  save();
  pump();
}

// pump sends the head of the outbox and waits for its server_ack before
// the next one (stop-and-wait): a line is removed only once the server has
// stored it, and is resent after a reconnect otherwise. The receiver drops
// the copy it may already have by the line's id.
function pump() {
  if (app.inflight || !app.u || !app.session.loggedIn || app.u.outbox.length === 0) return;
  const u = app.u;
  const item = u.outbox[0];
  if (item.chat && !safe.cid(item.frame.cid)) {
    // A line queued by an older version of the app: it gets its cid now,
    // and keeps it through every resend.
    item.frame.cid = newCid();
    save();
  }
  app.inflight = item;
  app.session.request(item.frame).then((r) => {
    app.inflight = null;
    if (u !== app.u || u.outbox[0] !== item) return;
    if (r.result === "ok") {
      u.outbox.shift();
      markMine(item.chat, item.id, (m) => { if (m.status < 1) m.status = 1; });
    } else if (r.reason === "rate_limited" || r.reason === "unavailable") {
      setTimeout(pump, 2000);
      return;
    } else {
      // queue_full and recipient_inactive were not stored: the line is
      // kept, marked, with "Send again" (docs/protocol.md "Full queues").
      u.outbox.shift();
      markMine(item.chat, item.id, (m) => { m.failed = reasonText(r, "chat"); });
      if (item.chat && app.openChat !== item.chat) showError(reasonText(r, "chat"));
    }
    save();
    render();
    pump();
  }, () => {
    app.inflight = null; // resent after the next login
  });
}

// sendAgain queues a line that failed once more, under a new id and cid:
// the refused one was not stored.
function sendAgain(c, m) {
  const i = c.msgs.indexOf(m);
  if (i < 0) return;
  c.msgs.splice(i, 1);
  const id = newLocalId();
  c.msgs.push({ id, mine: true, text: m.text, date: Date.now(), status: 0 });
  c.last = Date.now();
  enqueue({
    cmd: "message", type: "chat", to: c.peer, msg: m.text, refers_to: -1,
    post_id: c.postId, is_sender_post: c.iAmSeller, nick: app.nick, id, cid: newCid(),
  }, c.key, id);
  render();
}

function markMine(key, id, fn) {
  const c = key && app.u.chats[key];
  if (!c) return;
  const m = c.msgs.find((x) => x.mine && x.id === id);
  if (m) fn(m);
}

function sendChat(ev) {
  ev.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  const c = app.u && app.u.chats[app.openChat];
  if (!text || !c) return;
  input.value = "";
  delete app.drafts[c.key];
  store.saveDrafts(app.creds.user, app.drafts);
  const id = newLocalId();
  c.msgs.push({ id, mine: true, text, date: Date.now(), status: 0 });
  c.last = Date.now();
  enqueue({
    cmd: "message", type: "chat", to: c.peer, msg: text, refers_to: -1,
    post_id: c.postId, is_sender_post: c.iAmSeller, nick: app.nick, id, cid: newCid(),
  }, c.key, id);
  render();
}

function sendReceipt(c, type, ids) {
  if (!ids.length) return;
  enqueue({ cmd: "message", type, to: c.peer, post_id: c.postId, is_sender_post: c.iAmSeller, ack_ids: ids });
}

// onMessage handles a chat line or a receipt from a peer. Every field is
// checked: a frame without a usable sender or post is dropped, a line whose
// text is not text is shown as unreadable.
function onMessage(f) {
  if (f.msg_id != null && seenMsg(f.msg_id)) return;
  const from = safe.userId(f.from);
  if (from == null || !safe.isId(f.post_id)) return;
  const lineId = safe.lineId(f.id);
  if (f.type === "chat" || f.type === "chat_redirected") {
    const iAmSeller = typeof f.is_sender_post === "boolean" ? !f.is_sender_post : isMyPost(f.post_id);
    const c = ensureChat(f.post_id, from, iAmSeller, safe.text(f.nick, safe.MAX_NICK) ?? "");
    // A copy of a line already shown, sent again by a sender that did not
    // learn it was stored: the same (from, cid) under another msg_id
    // (docs/protocol.md "Safe chat resends"). A chat is one sender's, so
    // its cids are kept with it.
    const cid = safe.cid(f.cid);
    if (cid !== undefined) {
      if (c.peerCids.includes(cid)) { save(); return; }
      c.peerCids.push(cid);
      if (c.peerCids.length > 1000) c.peerCids.splice(0, c.peerCids.length - 1000);
    }
    if (lineId !== undefined) {
      if (c.peerIds.includes(String(lineId))) { save(); return; } // resent by the sender
      c.peerIds.push(String(lineId));
      if (c.peerIds.length > 1000) c.peerIds.splice(0, c.peerIds.length - 1000);
    }
    const reading = app.openChat === c.key && !document.hidden;
    const text = safe.msgText(f.msg);
    c.msgs.push({
      id: lineId, mine: false, text: text ?? "This message could not be read.", bad: text == null,
      date: Date.now(), readSent: reading,
    });
    c.last = Date.now();
    if (!reading) c.unread++;
    delete app.typing[c.key];
    sendReceipt(c, reading ? "app_ack_read" : "app_ack_received", lineId !== undefined ? [lineId] : []);
  } else if (f.type === "app_ack_received" || f.type === "app_ack_read") {
    const c = app.u.chats[chatKey(f.post_id, from)];
    if (c) {
      const st = f.type === "app_ack_read" ? 3 : 2;
      const ids = Array.isArray(f.ack_ids) ? f.ack_ids.filter(safe.isId).map(String) : null;
      // Receipts are cumulative: everything of mine up to the newest line
      // they name (or, without ids, everything the server has).
      let upto = -1;
      c.msgs.forEach((m, i) => { if (m.mine && (ids ? ids.includes(String(m.id)) : m.status >= 1)) upto = i; });
      for (let i = 0; i <= upto; i++) {
        const m = c.msgs[i];
        if (m.mine && !(m.status >= st)) m.status = st;
      }
    }
  }
  save();
  render();
}

function onPresence(f) {
  const from = safe.userId(f.from);
  if (f.type !== "writing" || from == null || !safe.isId(f.post_id)) return;
  const key = chatKey(f.post_id, from);
  if (!app.u.chats[key]) return; // typing in a chat this browser does not have
  app.typing[key] = Date.now() + TYPING_SHOW_MS;
  render();
  setTimeout(render, TYPING_SHOW_MS + 100);
}

function typed() {
  const c = app.u && app.u.chats[app.openChat];
  if (!c) return;
  const now = Date.now();
  if (now - (app.lastPresence[c.key] || 0) < PRESENCE_EVERY_MS) return;
  if (app.session.send({ cmd: "presence", to: c.peer, type: "writing", post_id: c.postId, is_sender_post: c.iAmSeller })) {
    app.lastPresence[c.key] = now;
  }
}

function openChat(key, how = "push") {
  show("chat-view", { chat: key }, how);
  $("chat-input").value = app.drafts[key] || "";
  markRead();
  render();
  $("chat-input").focus();
}

// markRead tells the peer that everything shown in the open chat was read.
function markRead() {
  const c = app.u && app.u.chats[app.openChat];
  if (!c || document.hidden) return;
  const ids = [];
  for (const m of c.msgs) {
    if (!m.mine && !m.readSent) {
      m.readSent = true;
      if (m.id != null) ids.push(m.id);
    }
  }
  c.unread = 0;
  sendReceipt(c, "app_ack_read", ids);
  save();
}

function chatWithAuthor(p) {
  if (!app.creds) {
    askSignUp("To write to the seller, create an account first: it takes one click.", () => chatWithAuthor(p));
    return;
  }
  const c = ensureChat(p.id, p.from, false, p.doc.nick || "", p);
  save();
  openChat(c.key);
}

// openPeerChat opens the newest conversation with peer: a notification of
// their messages was clicked (push.js). Until there is one (the lines may
// still be on their way after the login), the Chats list shows, for 10 s.
function openPeerChat(peer, tries = 40) {
  if (!app.u || !app.creds || peer === app.creds.user) return;
  const c = Object.values(app.u.chats).filter((x) => x.peer === peer).sort((a, b) => b.last - a.last)[0];
  if (c) { openChat(c.key); return; }
  if (tries === 40) { app.openChat = null; app.view = "chats-view"; render(); }
  if (tries > 0) setTimeout(() => { if (app.view === "chats-view") openPeerChat(peer, tries - 1); }, 250);
}

// ---------------------------------------------------------------- rendering

// renderFailures counts items and panels that threw while rendering: the
// checks in safe.js should make it stay 0 (the browser tests read it from
// body[data-render-failures]); the try/catch around each is the safety net
// that keeps one bad item from stopping everything after it.
let renderFailures = 0;
function failed(what, e) {
  renderFailures++;
  document.body.dataset.renderFailures = String(renderFailures);
  console.warn(`occase: could not render ${what}:`, e);
}

// syncList keeps ul's children equal to items, rebuilding an item only when
// its signature changed (so images are not reloaded on every update). An
// item that cannot be built is shown as unreadable; the others are not
// affected.
function syncList(ul, items, keyOf, sigOf, build) {
  const old = new Map([...ul.children].map((li) => [li.dataset.key, li]));
  let i = 0;
  for (const it of items) {
    let k, sig, li;
    try {
      k = String(keyOf(it));
      sig = String(sigOf(it));
      li = old.get(k);
      if (li && li.dataset.sig === sig) {
        old.delete(k);
      } else {
        let fresh;
        try {
          fresh = build(it);
        } catch (e) {
          failed(`item ${k}`, e);
          fresh = h("li", { class: "unreadable", "data-testid": "unreadable" }, "This item could not be shown.");
        }
        fresh.dataset.key = k;
        fresh.dataset.sig = sig;
        if (li) { li.replaceWith(fresh); old.delete(k); }
        li = fresh;
      }
    } catch (e) {
      failed("an item", e);
      continue;
    }
    if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] || null);
    i++;
  }
  for (const li of old.values()) li.remove();
}

function placeText(p) {
  const code = (p.doc.channel && p.doc.channel[0] && p.doc.channel[0][0]) || (p.to && p.to[0] && p.to[0][0]);
  const pcode = (p.doc.channel && p.doc.channel[1] && p.doc.channel[1][0]) || (p.to && p.to[1] && p.to[1][0]);
  const where = menu.names(app.menu.locations, code).reverse().join(", ");
  const what = menu.names(app.menu.products, pcode).join(" › ");
  return [where, what].filter(Boolean).join(" · ");
}

// unreadableCard stands for a post whose body has fields of the wrong type:
// nothing of the body is shown, and there is nothing to act on.
function unreadableCard(p) {
  return h("li", { class: "card unreadable", "data-testid": "post-card", "data-post-id": String(p.id), "data-unreadable": "1" },
    h("div", { class: "body" },
      h("h3", { "data-testid": "post-title" }, "Unreadable listing"),
      h("p", { class: "meta" }, "This listing could not be read, so it is not shown.")));
}

function postCard(p, mine) {
  if (p.bad) return unreadableCard(p);
  const d = p.doc;
  const rv = Array.isArray(p.range_values) ? p.range_values : [];
  const price = d.price ?? rv[0];
  const facts = [];
  if (rv[1]) facts.push(String(rv[1]));
  if (rv[2]) facts.push(`${num.format(Number(rv[2]))} km`);
  for (const f of FEATURES) if (Number(p.features) & f.bit) facts.push(f.label);
  // safe.post let through only relative paths of the signed-name shape.
  const imgs = photoURLs(p, mine);
  const title = d.title || (d.msg ? d.msg.slice(0, 60) : "A listing");
  const when = p.date ? new Date(Number(p.date) * 1000).toLocaleString([], WHEN) : "";
  const href = `#/post/${p.id}`;
  const open = (ev) => { ev.preventDefault(); openPost(p.id); };
  return h("li", { class: "card", "data-testid": "post-card", "data-post-id": String(p.id) },
    imgs.length ? h("a", { class: "photos", href, onclick: open, "aria-label": `${title}: ${imgs.length} photo${imgs.length === 1 ? "" : "s"}`, tabindex: "-1" },
      h("img", { src: imgs[0], alt: `Photo 1 of ${imgs.length} of ${title}`, loading: "lazy", "data-testid": "post-photo" }),
      imgs.length > 1 ? h("span", { class: "count", "data-testid": "photo-count-badge" }, `1 / ${imgs.length}`) : null) : null,
    h("div", { class: "body" },
      p.status !== "available" ? h("p", { class: "state" }, statusBadge(p)) : null,
      h("h3", { "data-testid": "post-title" }, h("a", { href, onclick: open, "data-testid": "post-link" }, title)),
      price != null ? h("p", { class: "price", "data-testid": "post-price" }, money.format(Number(price))) : null,
      facts.length ? h("p", { class: "facts" }, facts.join(" · ")) : null,
      h("p", { class: "where" }, placeText(p)),
      d.msg ? h("p", { class: "desc" }, d.msg) : null,
      h("p", { class: "meta" }, `by ${d.nick || "someone"} · ${when}`),
      mine && p.under_review
        ? h("p", { class: "review", "data-testid": "under-review" },
          h("strong", {}, "Under review"),
          " — several people reported this listing, so buyers do not see it until a moderator has looked at it.")
        : null,
      mine
        ? h("div", { class: "actions" }, h("span", { class: "tag" }, "Your listing"))
        : h("div", { class: "actions" }, h("button", {
          type: "button", class: "primary", "data-testid": "chat-with-author",
          "aria-label": `Message the seller of ${title}`, onclick: () => chatWithAuthor(p),
        }, "Message seller"))));
}

// postSig changes with every new version of a post (so its card is built
// again), with whose it is, and with its review tokens (fresh ones replace
// expired ones).
function postSig(p, mine) {
  return `${mine ? 1 : 0}|${p.status}|${p.edited}|${p.renewed}|${p.under_review ? 1 : 0}|${app.renewAt[String(p.id)] || 0}|${reviewExp(p)}`;
}

// photoURLs returns the addresses of p's photos (paths of the signed-name
// shape only: safe.images). The img nodes withhold the photos of a listing
// under review from everyone; the author's copy carries a review token per
// photo (docs/protocol.md "The author's photos of a listing under review"),
// so the seller's own listing asks for them with "?review=<token>" while
// the token lasts (its shape checked by safe.post, as the operator page
// does). Nobody else's copy has tokens.
function photoURLs(p, mine) {
  const now = Date.now() / 1000;
  const review = mine ? reviewTokensOf(p) : [];
  return safe.images(p.doc.images).map((path, i) => {
    const t = review[i];
    return t && tokenExp(t) > now ? `/${path}?review=${t}` : `/${path}`;
  });
}

// reviewTokensOf is p's review tokens, one per photo ("" for none): those
// of the author's copy of a listing under review only.
function reviewTokensOf(p) {
  return p.under_review && Array.isArray(p.review) ? p.review : [];
}

// tokenExp is when review token t stops working (Unix s): its first part.
function tokenExp(t) {
  return Number(t.split(".")[0]);
}

// reviewExp is when the first review token of p stops working (Unix s),
// 0 when it has none.
function reviewExp(p) {
  const t = reviewTokensOf(p).find(Boolean);
  return t ? tokenExp(t) : 0;
}

// Review tokens last 10 minutes: while a listing of this account under
// review has photos, My listings is read again (my_posts) 30 s before the
// first token stops working, so the photos keep showing. Offline, the
// read after the next login brings fresh ones.
let reviewTimer = null;
function scheduleReviewRefresh() {
  clearTimeout(reviewTimer);
  reviewTimer = null;
  if (!app.u || !app.creds) return;
  let first = 0;
  for (const p of Object.values(app.u.myPosts)) {
    const e = reviewExp(p);
    if (e && (!first || e < first)) first = e;
  }
  if (!first) return;
  const wait = Math.max(5, first - 30 - Date.now() / 1000);
  reviewTimer = setTimeout(() => { reviewTimer = null; if (app.creds) loadMine(); }, wait * 1000);
}

function sortedPosts(obj) {
  return Object.values(obj).sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
}

function renderPosts() {
  const me = app.creds && app.creds.user;
  const s = app.search;
  const list = s ? s.ids.map((k) => s.posts[k]).filter(Boolean) : sortedPosts(app.u.posts);
  syncList($("post-list"), list, (p) => String(p.id), (p) => postSig(p, p.from === me), (p) => postCard(p, p.from === me));
  renderSearch(list);
  const f = app.u.filter;
  const where = menu.names(app.menu.locations, f.loc).join(" › ") || "everywhere";
  const what = menu.names(app.menu.products, f.prod).join(" › ") || "everything";
  const feats = FEATURES.filter((x) => f.features & x.bit).map((x) => x.label);
  const price = f.priceMin !== "" || f.priceMax !== "" ? `€${f.priceMin || 0}–${f.priceMax || "…"}` : "";
  $("filter-summary").textContent = `Filter: ${[where, what, feats.join("/"), price].filter(Boolean).join(" · ")}`;
  const live = app.creds ? "New ones appear here as they are published." : "Create an account to see new ones live, to sell, or to write to a seller.";
  // On a slow link say that listings are coming, not that there are none.
  const loading = list.length === 0 && (app.creds ? ["connecting", "offline"].includes(app.session.state) : app.more.loading);
  $("browse-summary").classList.toggle("loading", loading);
  if (loading) {
    $("browse-summary").replaceChildren(h("span", { class: "spinner", "aria-hidden": "true" }), " Loading listings…");
    $("browse-summary").dataset.state = "loading";
    return;
  }
  $("browse-summary").dataset.state = "ready";
  if (s) {
    const sorted = { date: "newest first", price_asc: "cheapest first", price_desc: "dearest first" }[s.find.sort];
    const q = s.find.q.trim();
    const what2 = [q ? `“${q}”` : "", s.find.avail ? "not sold or reserved" : ""].filter(Boolean).join(", ");
    const scope = [what !== "everything" ? ` in ${what}` : "", where !== "everywhere" ? ` in ${where}` : ""].join("");
    $("browse-summary").dataset.state = !s.first || s.loading && !list.length ? "searching" : list.length ? "results" : "none";
    $("browse-summary").textContent = !s.first || (s.loading && !list.length) ? "Searching…"
      : list.length ? `${list.length}${s.done ? "" : "+"} listing${list.length === 1 ? "" : "s"}${what2 ? ` for ${what2}` : ""}${scope}, ${sorted}.`
      : s.error ? s.error
      : s.done ? `No listings found${what2 ? ` for ${what2}` : ""}${scope}. Try other words or a wider filter.`
      : "None among the listings searched so far: press “Load more” to search older ones.";
    return;
  }
  const scope = [what !== "everything" ? ` in ${what}` : "", where !== "everywhere" ? ` in ${where}` : ""].join("");
  $("browse-summary").textContent = (app.creds && app.subscribeError) ||
    (list.length ? `${list.length} listing${list.length === 1 ? "" : "s"}${scope}. ${live}` : `No listings yet${scope}. ${live}`);
}

// renderSearch shows the search's notes: a price order that covers only the
// newest matches, and new listings that arrived meanwhile.
function renderSearch() {
  const s = app.search;
  $("search-note").hidden = !(s && s.partial);
  $("search-note").textContent = s && s.partial
    ? "Sorted by price among the newest matching listings only: the server sorts at most its newest 10,000 matches by price. Narrow the filter or the price range to see older ones." : "";
  $("search-fresh").hidden = !(s && s.fresh);
  $("search-fresh").textContent = s && s.fresh ? `${s.fresh} new listing${s.fresh === 1 ? ": show it" : "s: show them"}` : "";
}

function renderMore() {
  const s = app.search;
  if (s) {
    $("load-more").hidden = s.done;
    $("load-more").disabled = s.loading;
    $("load-more").textContent = s.loading ? "Loading…" : "Load more listings";
    $("more-status").textContent = s.error && s.ids.length ? s.error : s.done && s.ids.length ? "That is every match." : "";
    return;
  }
  const m = app.more;
  $("load-more").hidden = m.done;
  $("load-more").disabled = m.loading;
  $("load-more").textContent = m.loading ? "Loading…" : "Load more listings";
  $("more-status").textContent = m.error || (m.done && Object.keys(app.u.posts).length ? "That is every listing." : "");
}

function renderMine() {
  const list = sortedPosts(app.u.myPosts);
  syncList($("mine-list"), list, (p) => String(p.id), (p) => postSig(p, true), (p) => {
    const li = postCard(p, true);
    const btn = h("button", { type: "button", class: "danger", "data-testid": "delete-post", "aria-label": `Delete ${(!p.bad && p.doc.title) || "this listing"}` }, "Delete");
    btn.addEventListener("click", () => {
      if (btn.dataset.confirm) { btn.disabled = true; deletePost(p.id); return; }
      btn.dataset.confirm = "1";
      btn.textContent = "Really delete?";
    });
    // An unreadable card has no actions row; the owner may still delete it.
    (li.querySelector(".actions") || li.appendChild(h("div", { class: "actions" }))).append(btn);
    (li.querySelector(".body") || li).append(sellerTools(p));
    return li;
  });
  // A listing under review blocks publishing (under_review) whatever the
  // quota says.
  const review = list.filter((p) => p.under_review).length;
  const rem = review ? ` ${list.length === 1 ? "It is" : review === 1 ? "One is" : `${review} are`} under review: you can publish again once a moderator has looked at it.`
    : typeof app.remaining === "number" ? ` You can publish ${app.remaining} more right now.` : "";
  renderPubReview();
  $("mine-summary").textContent = (list.length ? `${list.length} listing${list.length === 1 ? "" : "s"}.` : "You have no listings right now. Press “Sell” to publish one.") + rem;
}

const tickWords = { 0: "Not sent yet", 1: "Sent", 2: "Delivered", 3: "Read" };
const tickNames = { 0: "pending", 1: "sent", 2: "received", 3: "read" };
const tickGlyph = { 0: "○", 1: "✓", 2: "✓✓", 3: "✓✓" };

function isTyping(key) {
  return (app.typing[key] || 0) > Date.now();
}

function renderChats() {
  const list = Object.values(app.u.chats).sort((a, b) => b.last - a.last);
  $("chats-empty").hidden = list.length > 0;
  syncList($("chat-list"), list, (c) => c.key,
    (c) => `${c.msgs.length}|${c.unread}|${isTyping(c.key)}|${c.peerNick}|${c.title}|${c.removed}`, (c) => {
      const last = c.msgs[c.msgs.length - 1];
      return h("li", {},
        h("button", { type: "button", class: "chatrow", "data-testid": "chat-row", "data-chat": c.key, onclick: () => openChat(c.key) },
          h("strong", {}, c.title),
          c.removed ? h("span", { class: "tag", "data-testid": "chat-row-removed" }, "listing removed") : null,
          h("span", { class: "peer" }, ` with ${c.peerNick || (c.iAmSeller ? "a buyer" : "the seller")}`),
          c.unread ? h("span", { class: "badge", "aria-label": `${c.unread} unread` }, String(c.unread)) : null,
          h("span", { class: "last" }, isTyping(c.key) ? "typing…" : last ? `${last.mine ? "You: " : ""}${last.text}` : "")));
    });
  const unread = list.reduce((n, c) => n + c.unread, 0);
  $("unread-count").hidden = unread === 0;
  $("unread-count").textContent = String(unread);
}

function renderChat() {
  const c = app.u.chats[app.openChat];
  if (!c) return;
  $("chat-title").textContent = c.title;
  $("chat-peer").textContent = `${c.iAmSeller ? "Buyer" : "Seller"}: ${c.peerNick || "no name given"}`;
  $("chat-typing").hidden = !isTyping(c.key);
  $("chat-removed").hidden = !c.removed;
  // An empty conversation says what to do rather than showing a blank page.
  $("chat-empty").hidden = c.msgs.length > 0;
  $("chat-empty").textContent = c.msgs.length ? "" : c.iAmSeller
    ? "No messages yet."
    : `No messages yet. Ask ${c.peerNick || "the seller"} about “${c.title}” below: they see it as soon as you send it.`;
  const blocked = Boolean(app.blocked[c.peer]);
  $("chat-blocked").hidden = !blocked;
  $("chat-block").hidden = blocked || !$("chat-block-confirm").hidden;
  if (blocked) $("chat-block-confirm").hidden = true;
  const ol = $("chat-messages");
  const atBottom = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 40;
  syncList(ol, c.msgs, (m) => `${m.mine ? "m" : "t"}${m.id ?? m.date + m.text}`, (m) => `${m.status}|${m.failed || ""}`, (m) =>
    h("li", { class: `msg ${m.mine ? "mine" : "theirs"}${m.bad ? " unreadable" : ""}${m.failed ? " failed" : ""}`, "data-testid": "chat-msg", "data-mine": m.mine ? "1" : "0" },
      h("span", { class: "text", "data-testid": "chat-text" }, m.text),
      h("span", { class: "time" }, new Date(m.date).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })),
      m.mine ? (m.failed
        ? h("span", { class: "fail" },
          h("span", { class: "tick failed", "data-testid": "tick", "data-status": "failed" }, `⚠ ${m.failed}`),
          h("button", { type: "button", class: "again", "data-testid": "send-again", onclick: () => sendAgain(c, m) }, "Send again"))
        : h("span", {
          class: `tick t${m.status || 0}`, "data-testid": "tick", "data-status": tickNames[m.status || 0],
          "aria-label": tickWords[m.status || 0], title: tickWords[m.status || 0],
        }, tickGlyph[m.status || 0])) : null));
  if (atBottom) ol.scrollTop = ol.scrollHeight;
}

// renderPost is a listing's page: the gallery (every photo, a count, a
// full-size view), the facts, the seller, and a link to share.
let renderedPost = "";
function renderPost() {
  const id = app.postId;
  const p = localPost(id);
  const f = app.fetched[id];
  const status = $("post-status");
  const art = $("post-detail");
  if (!p) {
    // Taken off the lists meanwhile (post_deleted): ask the server.
    if (f === undefined) { app.fetched[id] = "loading"; queueMicrotask(() => fetchPost(id)); }
    art.replaceChildren();
    renderedPost = "";
    $("post-heading").textContent = "Listing";
    status.textContent = f === "missing" ? "This listing is not available any more: it was removed, sold or has expired."
      : f === "error" ? "Could not load this listing. Check your connection and try again."
      : "Loading the listing…";
    status.dataset.state = f === "missing" || f === "error" ? f : "loading";
    return;
  }
  status.textContent = "";
  status.dataset.state = "ok";
  const mine = Boolean(app.creds && p.from === app.creds.user);
  const sig = `${id}|${mine}|${app.creds ? 1 : 0}|${isReported(id)}|${postSig(p, mine)}|${JSON.stringify(p.doc)}|${JSON.stringify(p.range_values)}|${p.features}`;
  if (sig === renderedPost) return;
  renderedPost = sig;
  if (p.bad) {
    $("post-heading").textContent = "Unreadable listing";
    art.replaceChildren(h("p", {}, "This listing could not be read, so it is not shown."));
    return;
  }
  const d = p.doc;
  const rv = Array.isArray(p.range_values) ? p.range_values : [];
  const price = d.price ?? rv[0];
  const imgs = photoURLs(p, mine);
  const title = d.title || (d.msg ? d.msg.slice(0, 60) : "A listing");
  $("post-heading").textContent = title;
  document.title = `${title} · occase`;
  const facts = [];
  if (rv[1]) facts.push(String(rv[1]));
  if (rv[2]) facts.push(`${num.format(Number(rv[2]))} km`);
  for (const x of FEATURES) if (Number(p.features) & x.bit) facts.push(x.label);
  const when = p.date ? new Date(Number(p.date) * 1000).toLocaleString([], WHEN) : "";
  const gallery = imgs.length ? h("div", { class: "gallery", "data-testid": "gallery" },
    h("p", { class: "count", "data-testid": "gallery-count" }, `${imgs.length} photo${imgs.length === 1 ? "" : "s"}`),
    h("ul", { class: "shots" }, imgs.map((src, i) => h("li", {},
      h("button", { type: "button", class: "shot", "data-testid": "gallery-photo", onclick: () => openPhoto(imgs, i, title),
        "aria-label": `Photo ${i + 1} of ${imgs.length}: show full size` },
      h("img", { src, alt: `Photo ${i + 1} of ${imgs.length} of ${title}`, loading: i ? "lazy" : "eager" })))))) : h("p", { class: "muted" }, "No photos.");
  const share = h("button", { type: "button", "data-testid": "share-link", onclick: async () => {
    const url = location.href;
    try { await navigator.clipboard.writeText(url); notice("Link copied. Anyone with it can see this listing."); }
    catch { notice(`The link to this listing: ${url}`); }
  } }, "Copy link");
  art.replaceChildren(
    gallery,
    h("div", { class: "body" },
      statusBadge(p) ? h("p", { "data-testid": "detail-status" }, statusBadge(p)) : null,
      price != null ? h("p", { class: "price", "data-testid": "detail-price" }, money.format(Number(price))) : null,
      facts.length ? h("p", { class: "facts" }, facts.join(" · ")) : null,
      h("p", { class: "where" }, placeText(p)),
      d.msg ? h("p", { class: "desc", "data-testid": "detail-desc" }, d.msg) : null,
      h("p", { class: "seller", "data-testid": "detail-seller" }, `Seller: ${d.nick || "no name given"}`, when ? ` · listed ${when}` : "",
        p.edited ? ` · edited ${new Date(Number(p.edited) * 1000).toLocaleString([], WHEN)}` : ""),
      h("div", { class: "actions" },
        mine ? h("span", { class: "tag" }, "Your listing")
          : h("button", { type: "button", class: "primary", "data-testid": "detail-chat", onclick: () => chatWithAuthor(p) }, "Message seller"),
        share,
        // One cannot report one's own listing (the server says bad_request).
        mine ? null : reportButton(p, title)),
      mine ? sellerTools(p) : null));
}

// ---------------------------------------------------------------- reports
//
// Reporting a listing to the moderators (docs/protocol.md, report): a
// dialog with the reason and an optional line, then report; the listings
// reported from this browser are remembered (store.js, bounded) so their
// button says "Reported". Reporting again is harmless (the server takes it
// as the same report), so "Reported" still opens nothing worse than a note.

const REPORT_TEXT_MAX = 280;

function isReported(id) {
  return Boolean(app.u && app.creds && app.u.reported.includes(String(id)));
}

function markReported(id) {
  const r = app.u.reported.filter((x) => x !== String(id));
  r.push(String(id));
  app.u.reported = r.slice(-store.MAX_REPORTED);
  save();
}

function reportButton(p, title) {
  if (isReported(p.id)) {
    return h("button", {
      type: "button", class: "reportbtn", "data-testid": "report-btn", "data-reported": "1", "aria-disabled": "true",
      title: "You reported this listing",
      onclick: () => notice("You reported this listing. Thanks — the moderators will look at it."),
    }, "Reported");
  }
  return h("button", {
    type: "button", class: "reportbtn", "data-testid": "report-btn", "aria-haspopup": "dialog",
    "aria-label": `Report ${title} to the moderators`, onclick: () => openReport(p, title),
  }, "Report…");
}

function openReport(p, title) {
  if (!app.creds) {
    askSignUp("To report a listing, create an account first: it takes one click.", () => { openPost(p.id, "replace"); openReport(p, title); });
    return;
  }
  if (app.creds.user === p.from) return;
  app.report = { id: String(p.id), from: p.from, title };
  $("report-form").reset();
  $("report-form").hidden = false;
  $("report-done").hidden = true;
  $("report-dialog").setAttribute("aria-labelledby", "report-title");
  $("report-post-title").textContent = `“${title}”`;
  $("report-status").hidden = true;
  $("report-reason-error").hidden = true;
  $("report-reasons").removeAttribute("aria-invalid");
  $("report-send").disabled = false;
  renderReportCount();
  $("report-dialog").showModal();
  $("report-reason-spam").focus();
}

// closeReport closes the dialog; the focus goes back to the listing's
// Report button (now perhaps "Reported": it stays focusable).
function closeReport() {
  if ($("report-dialog").open) $("report-dialog").close();
}

function renderReportCount() {
  const n = $("report-text").value.length;
  $("report-count").textContent = `${n} / ${REPORT_TEXT_MAX}`;
  $("report-count").classList.toggle("over", n > REPORT_TEXT_MAX);
}

async function sendReport(ev) {
  ev.preventDefault();
  const rp = app.report;
  if (!rp || $("report-send").disabled) return;
  const picked = $("report-form").querySelector("input[name=report-reason]:checked");
  const status = $("report-status");
  status.hidden = true;
  if (!picked) {
    $("report-reason-error").textContent = "Choose what is wrong with this listing.";
    $("report-reason-error").hidden = false;
    $("report-reasons").setAttribute("aria-invalid", "true");
    $("report-reason-spam").focus();
    return;
  }
  $("report-reason-error").hidden = true;
  $("report-reasons").removeAttribute("aria-invalid");
  const req = { cmd: "report", id: parse(rp.id), reason: picked.value };
  const text = $("report-text").value.trim().slice(0, REPORT_TEXT_MAX);
  if (text) req.text = text;
  $("report-send").disabled = true;
  status.textContent = "Sending…";
  status.dataset.reason = "";
  status.hidden = false;
  let r;
  try {
    r = await app.session.request(req);
  } catch {
    r = { result: "fail", reason: "unavailable" };
  } finally {
    $("report-send").disabled = false;
  }
  if (app.report !== rp) return; // closed meanwhile
  if (r.result !== "ok") {
    status.textContent = r.reason === "unavailable" && app.session.state !== "online"
      ? "You are offline, so the report was not sent. Connect, then press “Send report” again."
      : reasonText(r, "report");
    status.dataset.reason = String(r.reason || "");
    status.hidden = false;
    return;
  }
  markReported(rp.id);
  status.hidden = true;
  $("report-form").hidden = true;
  $("report-done").hidden = false;
  $("report-dialog").setAttribute("aria-labelledby", "report-done-title");
  // Blocking is about messages: offered when the seller has a conversation
  // with this account and is not blocked already.
  const talked = Object.values(app.u.chats).some((c) => c.peer === rp.from);
  $("report-block-box").hidden = !talked || Boolean(app.blocked[String(rp.from)]);
  $("report-block").hidden = false;
  $("report-block-status").hidden = true;
  $("report-done-title").focus();
  render();
}

let gallery = { imgs: [], i: 0, title: "" };
function openPhoto(imgs, i, title) {
  gallery = { imgs, i, title };
  stepPhoto(0);
  if (!$("photo-dialog").open) $("photo-dialog").showModal();
}

function stepPhoto(d) {
  const g = gallery;
  if (!g.imgs.length) return;
  g.i = (g.i + d + g.imgs.length) % g.imgs.length;
  // The image exists only while a photo is shown (an <img> without a
  // source would be one more thing to check).
  const img = $("photo-full") || $("photo-dialog").insertBefore(h("img", { id: "photo-full", "data-testid": "photo-full" }), $("photo-dialog").firstChild);
  img.src = g.imgs[g.i]; // photoURLs
  img.alt = `Photo ${g.i + 1} of ${g.imgs.length} of ${g.title}`;
  $("photo-count").textContent = `${g.i + 1} of ${g.imgs.length}`;
  $("photo-prev").hidden = $("photo-next").hidden = g.imgs.length < 2;
}

function renderPreviews() {
  const ul = $("pub-previews");
  ul.replaceChildren(...app.photos.map((p, i) => h("li", {},
    h("img", { src: p.url, alt: p.kept ? `Photo ${i + 1}, kept` : `Photo ${i + 1} to upload` }),
    h("progress", { max: "1", value: String(p.progress), "data-testid": "upload-progress", "aria-label": `Upload of photo ${i + 1}` }),
    h("button", {
      type: "button", "aria-label": `Remove photo ${i + 1}`, onclick: () => {
        if (app.publishing) {
          setPubStatus("A photo cannot be removed while the photos upload. Press “Cancel upload” first, then remove it.");
          return;
        }
        if (!p.kept) URL.revokeObjectURL(p.url);
        app.photos.splice(i, 1);
        renderPreviews();
      },
    }, "Remove"))));
}

function renderProgress(i) {
  const bar = $("pub-previews").querySelectorAll("progress")[i];
  if (bar) bar.value = app.photos[i].progress;
}

const levelNames = {
  loc: ["Country", "Region", "City", "District"],
  prod: ["Category", "Make", "Model", "Version"],
};

// cascade renders one select per level of a tree down the chosen code.
function cascade(container, tree, code, idPrefix, kind, anyLabel, onChange) {
  container.replaceChildren();
  let node = tree;
  for (let lvl = 0; node && node.children && node.children.length; lvl++) {
    const name = levelNames[kind][lvl] || `Level ${lvl + 1}`;
    const id = `${idPrefix}-${lvl}`;
    const sel = h("select", { id, "data-testid": id, "aria-label": name },
      h("option", { value: "" }, anyLabel(name)),
      node.children.map((c, i) => h("option", { value: String(i) }, c.name)));
    if (lvl < code.length) sel.value = String(code[lvl]);
    sel.addEventListener("change", () => {
      const next = code.slice(0, lvl);
      if (sel.value !== "") next.push(Number(sel.value));
      onChange(next);
    });
    container.append(sel);
    if (lvl >= code.length) break;
    node = node.children[code[lvl]];
  }
}

function renderFilterSelects() {
  cascade($("filter-loc"), app.menu.locations, app.draft.loc, "filter-loc", "loc", (n) => `Any ${n.toLowerCase()}`,
    (c) => { app.draft.loc = c; renderFilterSelects(); });
  cascade($("filter-prod"), app.menu.products, app.draft.prod, "filter-prod", "prod", (n) => `Any ${n.toLowerCase()}`,
    (c) => { app.draft.prod = c; renderFilterSelects(); });
}

function renderPublishSelects() {
  cascade($("pub-loc"), app.menu.locations, app.pub.loc, "pub-loc", "loc", (n) => `Choose ${n.toLowerCase()}`,
    (c) => { app.pub.loc = c; renderPublishSelects(); });
  cascade($("pub-prod"), app.menu.products, app.pub.prod, "pub-prod", "prod", (n) => `Choose ${n.toLowerCase()}`,
    (c) => { app.pub.prod = c; renderPublishSelects(); });
}

function renderFilterForm() {
  const f = app.u.filter;
  for (const x of FEATURES) $(`filter-feat-${x.bit}`).checked = Boolean(f.features & x.bit);
  $("filter-price-min").value = f.priceMin;
  $("filter-price-max").value = f.priceMax;
  renderFilterSelects();
}

let renderedU = null; // the state object the lists and forms were built for

function render() {
  if (!app.u) return; // before boot has chosen a user or a guest
  const member = Boolean(app.creds);
  if (!member && app.view !== "browse-view" && app.view !== "post-view") app.view = "account-view";
  $("account-view").hidden = app.view !== "account-view";
  $("account-why").textContent = app.signUpWhy;
  $("account-why").hidden = !app.signUpWhy;
  $("signup-btn").hidden = member;
  renderConn();
  $("me").textContent = member ? app.nick || "You" : "";
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== app.view;
  const owner = { "chat-view": "chats-view", "post-view": app.listTab || "browse-view", "account-view": "" }[app.view] ?? app.view;
  for (const t of document.querySelectorAll("#tabs [role=tab]")) {
    const sel = t.dataset.view === owner;
    t.setAttribute("aria-selected", String(sel));
    t.tabIndex = sel || (!owner && t.id === "tab-browse") ? 0 : -1;
  }
  // The chat fills the screen below the header and bars, whatever shows.
  document.body.classList.toggle("chat-open", app.view === "chat-view");
  $("paused").hidden = !(member && app.paused);
  $("paused-text").textContent = app.paused === "tab"
    ? "This account is now open in another tab of this browser, so this tab is paused: messages and listings are not updated here."
    : "This account was opened on another device or browser, so this tab is paused: messages and listings are not updated here.";
  document.body.classList.toggle("paused", Boolean(member && app.paused));
  $("banned").hidden = !app.banned;
  renderNotices();
  if (!member && $("nick-input") !== document.activeElement) $("nick-input").value = app.nick;
  if (renderedU !== app.u) {
    renderedU = app.u;
    for (const id of ["post-list", "mine-list", "chat-list", "chat-messages"]) $(id).replaceChildren();
    renderFilterForm();
    renderPublishSelects();
    $("acct-id").textContent = member ? app.creds.user : "";
    $("acct-nick").value = app.nick;
    $("acct-password").textContent = "••••••••••";
    $("acct-reveal").textContent = "Show";
  }
  // Each panel on its own: one that throws leaves the others working.
  const parts = [renderPosts, renderMore];
  if (member) parts.push(renderMine, renderChats, renderBlocked);
  // A guest (after a log-out or a deletion) has no chats: no count left over.
  else $("unread-count").hidden = true;
  if (member && app.view === "chat-view") parts.push(renderChat);
  if (app.view === "post-view") parts.push(renderPost);
  for (const f of parts) {
    try {
      f();
    } catch (e) {
      failed(f.name, e);
    }
  }
}

// ---------------------------------------------------------------- wiring

function featureBoxes(container, prefix, list, type, name) {
  container.replaceChildren(...list.map((f) => h("label", { class: "check" },
    h("input", { type, id: `${prefix}-${f.bit}`, "data-testid": `${prefix}-${f.bit}`, name: type === "radio" ? name : null, value: String(f.bit) }),
    ` ${f.label}`)));
}

function credsText() {
  return `occase account\nServer: ${location.origin}\nUser id: ${app.creds.user}\nPassword: ${app.creds.password}\n`;
}

async function copyCreds() {
  if (!app.creds) return;
  let ok = false;
  try {
    await navigator.clipboard.writeText(credsText());
    ok = true;
  } catch {
    // No clipboard (an http page, or denied): show the password to copy by hand.
    $("acct-password").textContent = app.creds.password;
    $("acct-reveal").textContent = "Hide";
  }
  const t = ok ? "Copied the user id and password. Paste them somewhere safe." : "Copying is not allowed here: the password is shown above; write it down.";
  $("acct-saved").textContent = t;
  notice(t);
}

function downloadCreds() {
  if (!app.creds) return;
  const url = URL.createObjectURL(new Blob([credsText()], { type: "text/plain" }));
  const a = h("a", { href: url, download: `occase-account-${location.hostname || "local"}.txt`, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  $("acct-saved").textContent = "Downloaded a file with the user id and password. Keep it somewhere safe.";
}

// takeOver makes this tab the one in use again; the other one is paused.
function takeOver() {
  if (!app.creds) return;
  app.paused = "";
  app.session.start(app.creds);
  render();
}

function wireUI() {
  featureBoxes($("filter-features"), "filter-feat", FEATURES, "checkbox");
  const pf = $("pub-features");
  featureBoxes(pf, "pub-feat", CONDITION, "radio", "condition");
  pf.append(...EXTRAS.map((f) => h("label", { class: "check" },
    h("input", { type: "checkbox", id: `pub-feat-${f.bit}`, "data-testid": `pub-feat-${f.bit}` }), ` ${f.label}`)));

  $("banner-close").addEventListener("click", () => { $("banner").hidden = true; });
  $("notices-ok").addEventListener("click", dismissNotices);
  $("reconnect-btn").addEventListener("click", () => {
    if (app.session.state === "replaced" && app.creds) takeOver();
    else app.session.reconnectNow();
  });
  $("takeover-btn").addEventListener("click", takeOver);
  $("register-btn").addEventListener("click", () => {
    app.nick = $("nick-input").value.trim();
    store.saveNick(app.nick);
    const token = $("signup-token").value.trim();
    if (app.needToken && !token) {
      $("signup-token").setAttribute("aria-invalid", "true");
      showError("Please paste your sign-up token first.", false, "login");
      $("signup-token").focus();
      return;
    }
    app.session.start(token ? { register: true, token } : { register: true }, true);
  });
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const user = $("login-id").value.trim();
    const password = $("login-password").value;
    if (!/^\d+$/.test(user)) { showError("The user id is a number, like 42."); return; }
    app.nick = $("nick-input").value.trim() || app.nick;
    store.saveNick(app.nick);
    app.session.start({ user, password }, true);
  });
  const tabList = [...document.querySelectorAll("#tabs [role=tab]")];
  const activate = (t) => {
    if (!app.creds && t.dataset.view !== "browse-view") { askSignUp(guestWhy[t.dataset.view] || ""); return; }
    show(t.dataset.view);
  };
  for (const t of tabList) {
    t.addEventListener("click", () => activate(t));
    // The tab widget pattern: arrows, Home and End move between tabs.
    t.addEventListener("keydown", (ev) => {
      const i = tabList.indexOf(t);
      const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabList.length - 1 }[ev.key];
      if (to === undefined) return;
      ev.preventDefault();
      const next = tabList[(to + tabList.length) % tabList.length];
      next.focus();
      activate(next);
    });
  }
  $("filter-form").addEventListener("submit", applyFilter);
  $("publish-form").addEventListener("submit", publish);
  $("pub-photos").addEventListener("change", addPhotos);
  $("chat-form").addEventListener("submit", sendChat);
  $("chat-block").addEventListener("click", () => {
    $("chat-block-status").hidden = true;
    $("chat-block-confirm").hidden = false;
    $("chat-block").hidden = true;
    $("chat-block-cancel").focus();
  });
  $("chat-block-cancel").addEventListener("click", () => {
    $("chat-block-confirm").hidden = true;
    $("chat-block").hidden = false;
    $("chat-block").focus();
  });
  $("chat-block-go").addEventListener("click", async () => {
    const c = app.u && app.u.chats[app.openChat];
    if (!c) return;
    $("chat-block-go").disabled = true;
    const ok = await setBlock(c.peer, true, $("chat-block-status"));
    $("chat-block-go").disabled = false;
    if (ok) $("chat-block-confirm").hidden = true;
  });
  $("chat-unblock").addEventListener("click", () => {
    const c = app.u && app.u.chats[app.openChat];
    if (c) setBlock(c.peer, false, $("chat-block-status"));
  });
  $("chat-input").addEventListener("input", () => { typed(); saveDraft(); });
  $("chat-back").addEventListener("click", () => goBack("chats-view"));
  $("post-back").addEventListener("click", () => goBack("browse-view"));
  $("acct-reveal").addEventListener("click", () => {
    const shown = $("acct-reveal").textContent === "Hide";
    $("acct-password").textContent = shown ? "••••••••••" : app.creds.password;
    $("acct-reveal").textContent = shown ? "Show" : "Hide";
  });
  $("acct-nick").addEventListener("change", () => {
    app.nick = $("acct-nick").value.trim();
    store.saveNick(app.nick);
    // Saved as it changes, with no button: say so, and what it changes.
    notice(app.nick ? "Name saved. Your next messages and new listings show it." : "Name removed. Your next messages and new listings show no name.");
    render();
  });
  $("acct-copy").addEventListener("click", copyCreds);
  $("logout-copy").addEventListener("click", copyCreds);
  $("acct-download").addEventListener("click", downloadCreds);
  $("logout-download").addEventListener("click", downloadCreds);
  $("logout-btn").addEventListener("click", () => {
    $("logout-confirm").hidden = false;
    $("logout-btn").hidden = true;
    $("logout-confirm").scrollIntoView({ block: "center" });
    $("logout-cancel").focus();
  });
  $("logout-cancel").addEventListener("click", () => {
    $("logout-confirm").hidden = true;
    $("logout-btn").hidden = false;
    $("logout-btn").focus();
  });
  $("logout-confirm-btn").addEventListener("click", () => {
    $("logout-confirm").hidden = true;
    $("logout-btn").hidden = false;
    push.loggedOut(); // before the socket stops: it sends push_unsubscribe
    app.session.stop();
    store.clearCreds();
    app.creds = null;
    enterGuest("browse-view");
    show("browse-view", {}, "replace");
  });
  $("delete-acct-btn").addEventListener("click", () => {
    $("delete-acct-id").textContent = app.creds ? app.creds.user : "";
    $("delete-acct-status").hidden = true;
    $("delete-acct-confirm").hidden = false;
    $("delete-acct-btn").hidden = true;
    $("delete-acct-confirm").scrollIntoView({ block: "center" });
    $("delete-acct-cancel").focus();
  });
  $("delete-acct-cancel").addEventListener("click", () => {
    $("delete-acct-confirm").hidden = true;
    $("delete-acct-btn").hidden = false;
    $("delete-acct-btn").focus();
  });
  $("delete-acct-go").addEventListener("click", deleteAccount);
  $("photo-close").addEventListener("click", () => $("photo-dialog").close());
  $("photo-dialog").addEventListener("close", () => { const i = $("photo-full"); if (i) i.remove(); });
  $("photo-prev").addEventListener("click", () => stepPhoto(-1));
  $("photo-next").addEventListener("click", () => stepPhoto(1));
  $("photo-dialog").addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowLeft") stepPhoto(-1);
    if (ev.key === "ArrowRight") stepPhoto(1);
  });
  $("report-form").addEventListener("submit", sendReport);
  $("report-text").addEventListener("input", renderReportCount);
  $("report-cancel").addEventListener("click", closeReport);
  $("report-close").addEventListener("click", closeReport);
  $("report-form").addEventListener("change", (ev) => {
    if (ev.target.name === "report-reason") { $("report-reason-error").hidden = true; $("report-reasons").removeAttribute("aria-invalid"); }
  });
  // Escape closes a modal <dialog> by itself (its "cancel"); either way the
  // focus returns to the listing's Report button.
  $("report-dialog").addEventListener("close", () => {
    // The event comes a task after the close: the dialog may be open again.
    if ($("report-dialog").open) return;
    app.report = null;
    const b = document.querySelector("#post-detail [data-testid=report-btn]");
    if (b && app.view === "post-view") b.focus();
  });
  $("report-block").addEventListener("click", async () => {
    const rp = app.report;
    if (!rp) return;
    $("report-block").disabled = true;
    const ok = await setBlock(rp.from, true, $("report-block-status"));
    $("report-block").disabled = false;
    if (ok) {
      $("report-block").hidden = true;
      $("report-block-status").textContent = "Blocked: they cannot send you messages any more. You can unblock them under Account.";
      $("report-block-status").hidden = false;
      $("report-close").focus();
    }
  });
  $("banned-new").addEventListener("click", () => forgetBanned("account-view"));
  $("banned-forget").addEventListener("click", () => forgetBanned("browse-view"));
  $("pub-cancel").addEventListener("click", () => { if (app.cancel) app.cancel(); });
  for (const id of ["pub-title", "pub-desc"]) $(id).addEventListener("input", renderCounts);
  // Once errors show, they follow what is typed (on input, not on blur: a
  // message that vanished on blur would move the field being clicked).
  $("publish-form").addEventListener("input", () => {
    if (!$("publish-form").querySelector("[aria-invalid=true]")) return;
    // Once every field is right, the summary below the button goes too.
    if (validatePublish(false) && $("pub-status").textContent === BAD_FIELDS) setPubStatus("");
  });
  $("signup-btn").addEventListener("click", () => askSignUp(""));
  renderCounts();
  $("load-more").addEventListener("click", () => (app.search ? searchMore() : loadMore()));
  let searchTimer;
  $("search-q").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(findFromForm, 400); });
  $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); clearTimeout(searchTimer); findFromForm(); $("search-q").blur(); });
  $("search-sort").addEventListener("change", findFromForm);
  $("search-avail").addEventListener("change", findFromForm);
  $("search-fresh").addEventListener("click", newSearch);
  $("pub-edit-cancel").addEventListener("click", () => {
    const id = app.editing;
    stopEdit();
    if (id) openPost(id); else show("publish-view");
  });
  addEventListener("popstate", () => applyRoute("none"));
  addEventListener("hashchange", () => { if (location.hash !== appliedRoute) applyRoute("none"); });
  addEventListener("pagehide", saveDraft);
  addEventListener("online", renderConn);
  addEventListener("offline", renderConn);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && app.view === "chat-view") { markRead(); render(); }
  });
}

boot();
