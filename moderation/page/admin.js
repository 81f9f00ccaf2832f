// The operator page of the moderation API (docs/http-api.md "Moderation
// API"). Every string that comes from users (post titles and text, report
// texts, ids, ban notes) is HOSTILE: it is only ever set with
// textContent, never parsed as markup. The token stays in this tab's
// sessionStorage. Three views: the review queue, the list of bans and
// the moderation log (who did what; its notes and names are text too).
"use strict";

const KEY = "occase-admin-token";
const BANS_PAGE = 20;
const LOG_PAGE = 50;
const MAX_NOTE = 280; // bytes of a note to the author (broker.MaxNoticeNote)
const $ = (id) => document.getElementById(id);
let view = "reports";
let bansOffset = 0;
let logOffset = 0;
// me: whose token this tab holds, from GET /admin/v1/whoami (name, role,
// can_act); null until asked. A viewer's token gets no action buttons
// (the node refuses its actions anyway, 403 forbidden_for_role).
let me = null;
// publicURL: the public site's address, from the API (--public-url), or
// "" when the node does not know it: then no photos and no links.
let publicURL = "";
// Photo paths as the image server hands them out (webapp safe.js
// imagePath; the node checks them too): relative, one slash, so that
// publicURL + "/" + path stays on the public site.
const IMAGE_PATH = /^[0-9a-f]{8,64}\/[A-Za-z0-9+_-]{1,64}\.(jpg|jpeg|png|webp)$/;
const MAX_PHOTOS = 4;
// A review token (images_review): the img nodes serve a photo they
// withhold (a hidden listing's) for "?review=<token>", for 10 minutes.
const REVIEW_TOKEN = /^\d{1,12}\.[0-9a-f]{64}$/;

// publicBase returns u when it is an http(s) URL with no query, fragment
// or user, without its trailing slash, else "".
function publicBase(u) {
  if (typeof u !== "string" || u === "") return "";
  let p;
  try { p = new URL(u); } catch { return ""; }
  if ((p.protocol !== "https:" && p.protocol !== "http:") || p.search || p.hash || p.username || p.password) return "";
  return p.origin + p.pathname.replace(/\/+$/, "");
}

// photos returns the thumbnails of a post, each a link to the photo at
// full size in a new tab, or null when it has none to show.
function photos(p) {
  if (!publicURL || !Array.isArray(p.images)) return null;
  const review = Array.isArray(p.images_review) ? p.images_review : [];
  const paths = [];
  p.images.forEach((s, i) => {
    if (typeof s === "string" && IMAGE_PATH.test(s) && paths.length < MAX_PHOTOS) {
      const t = review[i];
      paths.push(typeof t === "string" && REVIEW_TOKEN.test(t) ? s + "?review=" + t : s);
    }
  });
  if (!paths.length) return null;
  const box = el("div", "photos");
  box.dataset.testid = "report-photos";
  paths.forEach((path, i) => {
    const src = publicURL + "/" + path;
    const a = el("a");
    a.href = src;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    a.title = "Photo " + (i + 1) + " at full size (new tab)";
    const img = el("img");
    img.src = src;
    img.alt = "Photo " + (i + 1) + " of post " + p.id;
    img.loading = "lazy";
    img.width = 96;
    img.height = 96;
    img.referrerPolicy = "no-referrer";
    img.dataset.testid = "report-photo";
    a.append(img);
    box.append(a);
  });
  return box;
}

function token() { return sessionStorage.getItem(KEY) || ""; }

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function say(text, error) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", !!error);
}

function showSignin(message) {
  me = null;
  $("whoami").hidden = true;
  $("signin").hidden = false;
  $("queue").hidden = true;
  $("bans").hidden = true;
  $("log").hidden = true;
  $("views").hidden = true;
  $("signout").hidden = true;
  if (message) say(message, true);
  $("token").focus();
}

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: "Bearer " + token() }, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    throw { reason: "network", error: "the node did not answer" };
  }
  let data = null;
  try { data = await resp.json(); } catch (e) { /* not JSON */ }
  if (!resp.ok) {
    const err = data && data.reason ? data : { reason: "http_" + resp.status, error: "the node answered " + resp.status };
    if (err.reason === "unauthorized") {
      sessionStorage.removeItem(KEY);
      showSignin("The node refused the token: paste it again.");
    }
    if (err.reason === "forbidden_for_role") me = null; // the role changed: ask again

    throw err;
  }
  return data;
}

function reasonList(reasons) {
  const ul = el("ul", "reasons");
  Object.keys(reasons || {}).sort((a, b) => reasons[b] - reasons[a] || (a < b ? -1 : 1)).forEach((r) => {
    ul.append(el("li", null, r + " × " + reasons[r]));
  });
  return ul;
}

function whenMs(ms) {
  const d = new Date(ms);
  return !ms || isNaN(d) ? "" : d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

function when(at) {
  if (!at) return "";
  const d = new Date(at * 1000);
  return isNaN(d) ? "" : d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

function card(p) {
  const li = el("li", p.hidden === true ? "report hidden-post" : "report");
  li.dataset.post = String(p.id);
  li.dataset.testid = "report";
  const title = p.gone ? "(post gone)" : (p.title || "(no title)");
  const h = el("h3", null, title);
  h.dataset.testid = "report-title";
  li.append(h);
  if (p.hidden === true) {
    // Hidden automatically (--auto-hide-reports): the queue lists these
    // first; dismissing shows the post again, removing deletes it.
    const tag = el("p", "hidden-tag", p.deleted_by_author === true ?
      "Hidden from buyers pending your decision when its author deleted it; its author cannot publish until you dismiss or remove it." :
      "Hidden from buyers pending your decision: dismiss to show it again, or remove it. Its author cannot publish meanwhile.");
    tag.dataset.testid = "report-hidden";
    li.append(tag);
  }
  if (p.deleted_by_author === true) {
    // The author deleted it while it was reported: gone for everyone,
    // kept here as it was (its snapshot) until you dismiss or remove it.
    li.classList.add("deleted-post");
    const tag = el("p", "deleted-tag", "Deleted by its author while reported: gone for everyone; shown as it was when deleted. Dismiss or remove to close it.");
    tag.dataset.testid = "report-deleted";
    li.append(tag);
  }
  const n = p.reporters === 1 ? "1 reporter" : p.reporters + " reporters";
  const meta = el("p", "meta", "post " + p.id + " · author " + (p.author || "-") + " · " + n);
  meta.dataset.testid = "report-meta";
  li.append(meta);
  if (p.snippet) {
    const s = el("p", "snippet", p.snippet);
    s.dataset.testid = "report-snippet";
    li.append(s);
  }
  const ph = p.gone ? null : photos(p);
  if (ph) li.append(ph);
  if (p.deleted_by_author === true && p.snapshot && typeof p.snapshot.body === "string") {
    // The whole body as it was: the snippet is clipped, and there is no
    // listing left to open.
    const d = el("details", "snapshot");
    d.append(el("summary", null, "The listing as it was"));
    const pre = el("pre", null, p.snapshot.body);
    pre.dataset.testid = "report-snapshot";
    d.append(pre);
    li.append(d);
  }
  li.append(reasonList(p.reasons));
  const texts = el("ol", "texts");
  (p.latest || []).forEach((r) => {
    const t = el("li");
    t.append(el("span", null, r.reason + (r.text ? ": " : "")));
    if (r.text) {
      const tx = el("span", null, r.text);
      tx.dataset.testid = "report-text";
      t.append(tx);
    }
    t.append(el("span", "who", "  — user " + r.by + (r.at ? ", " + when(r.at) : "")));
    texts.append(t);
  });
  li.append(texts);
  const actions = el("div", "actions");
  const btn = (label, action, cls) => {
    const b = el("button", cls, label);
    b.type = "button";
    b.dataset.action = action;
    b.addEventListener("click", () => act(action, p));
    actions.append(b);
  };
  if (canAct()) {
    btn("Dismiss reports", "dismiss");
    if (!p.gone) btn("Remove post", "remove", "danger");
    if (p.author) btn("Ban author", "ban", "danger");
  }
  if (publicURL && !p.gone && p.deleted_by_author !== true && /^\d{1,20}$/.test(String(p.id))) {
    const open = el("a", "open", "Open listing");
    open.href = publicURL + "/#/post/" + String(p.id);
    open.target = "_blank";
    open.rel = "noopener noreferrer";
    open.dataset.testid = "report-open";
    actions.append(open);
  }
  li.append(actions);
  return li;
}

function showView(v) {
  view = v;
  $("signin").hidden = true;
  $("views").hidden = false;
  $("signout").hidden = false;
  $("queue").hidden = v !== "reports";
  $("bans").hidden = v !== "bans";
  $("log").hidden = v !== "log";
  document.querySelectorAll("#views button").forEach((b) => {
    if (b.dataset.view === v) b.setAttribute("aria-current", "page"); else b.removeAttribute("aria-current");
  });
}

function canAct() { return !!(me && me.can_act); }

// whoami learns the token's name and role once per token, and shows them.
async function whoami() {
  if (me) return true;
  try {
    me = await api("GET", "/admin/v1/whoami");
  } catch (e) {
    if (e.reason !== "unauthorized") say(e.error || "failed", true);
    return false;
  }
  const w = $("whoami");
  w.textContent = me.name + " · " + (me.can_act ? me.role : me.role + " (read only)");
  w.hidden = false;
  return true;
}

async function load() {
  if (!token()) { showSignin(); return; }
  if (!(await whoami())) return;
  return view === "bans" ? loadBans() : view === "log" ? loadLog() : loadReports();
}

function banCard(b) {
  const li = el("li", "ban");
  li.dataset.testid = "ban";
  li.dataset.user = String(b.user);
  const who = el("div", "who");
  who.append(el("h3", null, "User " + b.user));
  who.append(el("p", "meta", "Banned " + whenMs(b.at)));
  if (b.note) {
    const n = el("p", "note", "Note: " + b.note);
    n.dataset.testid = "ban-note";
    who.append(n);
  }
  li.append(who);
  if (canAct()) {
    const u = el("button", null, "Unban");
    u.type = "button";
    u.dataset.action = "unban";
    u.addEventListener("click", () => unban(b.user));
    li.append(u);
  }
  return li;
}

async function loadBans() {
  say("Loading…");
  let p;
  try {
    p = await api("GET", "/admin/v1/bans?limit=" + BANS_PAGE + "&offset=" + bansOffset);
    if (p.bans.length === 0 && bansOffset > 0) {
      // The page emptied (unbans, cleaned entries): the last one left.
      bansOffset = Math.max(0, Math.floor((p.total - 1) / BANS_PAGE) * BANS_PAGE);
      p = await api("GET", "/admin/v1/bans?limit=" + BANS_PAGE + "&offset=" + bansOffset);
    }
  } catch (e) {
    if (e.reason !== "unauthorized") say(e.error || "failed", true);
    return;
  }
  showView("bans");
  let sum = p.total === 0 ? "No banned users." : p.total + (p.total === 1 ? " banned user" : " banned users") + ", newest first";
  if (p.total > p.bans.length) sum += "; showing " + (p.offset + 1) + "–" + (p.offset + p.bans.length);
  $("bans-summary").textContent = p.total === 0 ? sum : sum + ".";
  $("ban-list").replaceChildren(...p.bans.map(banCard));
  $("bans-newer").hidden = p.offset === 0;
  $("bans-older").hidden = !p.next;
  $("bans-older").dataset.next = String(p.next || 0);
  say("");
}

async function unban(user) {
  const ok = await confirmAction("Unban user " + user + "?",
    "User " + user + " may log in again. Posts deleted with the ban do not come back.", "unban");
  if (!ok) return;
  try {
    const r = await api("POST", "/admin/v1/users/" + encodeURIComponent(user) + "/unban");
    say(r.was_banned ? "User " + r.user + " unbanned." : "User " + r.user + " was not banned.");
  } catch (e) {
    if (e.reason === "unauthorized") return;
    say(e.error || "failed", true);
  }
  const msg = $("status").textContent, err = $("status").classList.contains("error");
  await load();
  if (msg) say(msg, err);
}

// logCard is one entry of the moderation log: who, when, what, on what.
function logCard(e, told) {
  const li = el("li", "entry");
  li.dataset.testid = "log-entry";
  const what = { dismiss: "dismissed the reports of post", remove: "removed post", ban: "banned user", unban: "unbanned user",
    hide: "hid, pending review, post", resend: "sent the kept removal notice of post" }[e.action] || e.action;
  const h = el("p", "what");
  const by = el("strong", null, e.by || "?");
  by.dataset.testid = "log-by";
  h.append(by, el("span", null, " " + what + " " + e.target));
  li.append(h);
  let meta = whenMs(e.at) + (e.addr ? " · from " + e.addr : "") + " · " + (e.result === "ok" ? "done" : e.result);
  if (e.detail) meta += " · " + e.detail;
  if (e.reason) meta += " · reason " + e.reason;
  if (e.remove_posts) meta += " · posts removed";
  li.append(el("p", "meta", meta));
  if (e.note) li.append(el("p", "note", "Note: " + e.note));
  // A removal whose notice could not be written keeps it: removing the
  // post again sends it (the post is gone; the kept notice is what goes).
  if (canAct() && !told && e.action === "remove" && e.result === "author_not_told" && /^\d{1,20}$/.test(String(e.target))) {
    const r = el("button", null, "Send the notice again");
    r.type = "button";
    r.dataset.action = "resend";
    r.addEventListener("click", () => resend(String(e.target)));
    li.append(r);
  }
  return li;
}

async function resend(post) {
  try {
    const r = await api("POST", "/admin/v1/posts/" + post + "/remove", {});
    say(r.told ? "The author of post " + r.post + " was told why (" + r.reason + ")." :
      "The author of post " + r.post + " is gone: nobody to tell.");
  } catch (e) {
    if (e.reason === "unauthorized") return;
    say(notToldText(e) || e.error || "failed", true);
  }
  const msg = $("status").textContent, err = $("status").classList.contains("error");
  await load();
  if (msg) say(msg, err);
}

async function loadLog() {
  say("Loading…");
  let p;
  try {
    p = await api("GET", "/admin/v1/log?limit=" + LOG_PAGE + "&offset=" + logOffset);
  } catch (e) {
    if (e.reason !== "unauthorized") say(e.error || "failed", true);
    return;
  }
  showView("log");
  let sum = p.total === 0 ? "No moderation actions yet." : p.total + (p.total === 1 ? " action" : " actions") + " logged, newest first";
  if (p.total > p.entries.length) sum += "; showing " + (p.offset + 1) + "–" + (p.offset + p.entries.length);
  $("log-summary").textContent = p.total === 0 ? sum : sum + ".";
  // Entries come newest first: a removal told since (resent by an operator
  // or by the nodes) needs no button.
  const told = new Set();
  $("log-list").replaceChildren(...p.entries.map((e) => {
    const li = logCard(e, told.has(e.target));
    if ((e.action === "remove" || e.action === "resend") && e.result === "ok") told.add(e.target);
    return li;
  }));
  $("log-newer").hidden = p.offset === 0;
  $("log-older").hidden = p.offset + p.entries.length >= p.total;
  say("");
}

async function loadReports() {
  say("Loading…");
  let q;
  try {
    q = await api("GET", "/admin/v1/reports?limit=200&texts=5");
  } catch (e) {
    if (e.reason !== "unauthorized") say(e.error || "failed", true);
    return;
  }
  showView("reports");
  let sum = "Review queue: " + q.queued + " of at most " + q.queue_max + " reported posts";
  if (q.queued >= q.queue_max) sum += " — FULL: dismiss or remove to make room";
  $("queue-summary").textContent = sum;
  publicURL = publicBase(q.public_url);
  $("photos-off").hidden = !!publicURL;
  const list = $("reports");
  list.replaceChildren(...q.reports.map(card));
  say(q.reports.length ? "" : "No reported posts.");
}

// noteBytes is the UTF-8 length of the note, which the node bounds.
function noteBytes() { return new TextEncoder().encode($("remove-note").value).length; }

// removeFields keeps the removal's fields coherent: the reason and note
// only when the author is told, the counter, Confirm off past the bound.
function removeFields() {
  const tell = $("remove-tell").checked, n = noteBytes();
  $("remove-reason").disabled = !tell;
  $("remove-note").disabled = !tell;
  $("remove-why").setAttribute("aria-disabled", String(!tell));
  $("remove-count").textContent = n + " / " + MAX_NOTE;
  $("remove-count").classList.toggle("over", n > MAX_NOTE);
  $("confirm-ok").disabled = tell && n > MAX_NOTE;
}

// confirmAction asks in the page's own dialog (no window.confirm, which
// blocks the page) and resolves to the dialog's fields, or null when
// cancelled. kind ("ban", "remove", "unban", "dismiss") names the button;
// "ban" shows the ban's fields, "remove" the removal's,
// with the reason preset to reason.
function confirmAction(title, text, kind, reason) {
  const d = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("ban-fields").hidden = kind !== "ban";
  $("remove-fields").hidden = kind !== "remove";
  $("ban-note").value = "";
  $("ban-remove-posts").checked = false;
  $("remove-tell").checked = true;
  $("remove-reason").value = [...$("remove-reason").options].some((o) => o.value === reason) ? reason : "other";
  $("remove-note").value = "";
  $("confirm-ok").disabled = false;
  // The button says what it does; red only for what takes something away.
  const ok = { ban: "Ban", remove: "Remove", unban: "Unban", dismiss: "Dismiss" }[kind] || "Confirm";
  $("confirm-ok").textContent = ok;
  $("confirm-ok").classList.toggle("danger", kind === "ban" || kind === "remove");
  if (kind === "remove") removeFields();
  return new Promise((resolve) => {
    const done = (ok) => {
      $("confirm-form").onsubmit = null;
      $("confirm-cancel").onclick = null;
      d.onclose = null;
      if (d.open) d.close();
      resolve(ok ? {
        note: $("ban-note").value, remove_posts: $("ban-remove-posts").checked,
        tell: $("remove-tell").checked, reason: $("remove-reason").value, authorNote: $("remove-note").value,
      } : null);
    };
    $("confirm-form").onsubmit = (ev) => { ev.preventDefault(); done(true); };
    $("confirm-cancel").onclick = () => done(false);
    d.onclose = () => done(false);
    d.showModal();
  });
}

async function act(action, p) {
  const label = p.gone ? "post " + p.id : "“" + (p.title || "post " + p.id) + "” (post " + p.id + ")";
  let path, body, ok;
  if (action === "dismiss") {
    ok = await confirmAction("Dismiss the reports?", "The reports of " + label + " are cleared; the post stays.", "dismiss");
    path = "/admin/v1/posts/" + p.id + "/dismiss";
  } else if (action === "remove") {
    // The reason preset: the one most reporters gave.
    const top = Object.keys(p.reasons || {}).sort((a, b) => p.reasons[b] - p.reasons[a] || (a < b ? -1 : 1))[0];
    ok = await confirmAction("Remove the post?", p.deleted_by_author === true ?
      label + " was deleted by its author already: its snapshot and reports are cleared and the removal recorded." :
      label + " is deleted for everyone, with its reports.", "remove", top);
    path = "/admin/v1/posts/" + p.id + "/remove";
    body = {};
    if (ok && ok.tell) {
      body.reason = ok.reason;
      if (ok.authorNote.trim()) body.note = ok.authorNote;
    }
  } else {
    ok = await confirmAction("Ban user " + p.author + "?",
      "User " + p.author + " is logged out everywhere and cannot log in until unbanned.", "ban");
    path = "/admin/v1/users/" + encodeURIComponent(p.author) + "/ban";
    if (ok) body = { note: ok.note, remove_posts: ok.remove_posts };
  }
  if (!ok) return;
  try {
    const r = await api("POST", path, body);
    if (action === "dismiss") say("Dismissed the reports of post " + r.post + ".");
    else if (action === "remove") say("Removed post " + r.post + " of user " + r.author +
      (r.deleted_by_author ? " (deleted by its author before review)." : ".") +
      (r.told ? " The author was told why (" + r.reason + ")." :
        r.reason ? " The author's account is gone: nobody to tell." : " The author was not told."));
    else say("User " + r.user + (r.already ? " was banned already; ban renewed." : " banned.") +
      (r.remove_posts ? " " + r.posts_deleted + " posts deleted." : ""));
  } catch (e) {
    if (e.reason !== "unauthorized") say(notToldText(e) || e.error || "failed", true);
    if (e.reason === "unauthorized") return;
  }
  const msg = $("status").textContent, err = $("status").classList.contains("error");
  await load();
  if (msg) say(msg, err);
}

// notToldText words a removal whose notice is kept for this page: the
// node's own words ("remove post N again") name an action the page no
// longer offers once the post left the queue; its Log entry's button and
// the nodes' automatic resend are how the notice goes.
function notToldText(e) {
  const r = e && e.reason === "author_not_told" && e.result;
  if (!r || !r.notice_kept) return "";
  return "Post " + r.post + " is removed, but its author (user " + r.author + ") could not be told why. " +
    "The notice is kept: the nodes send it again on their own, or press “Send the notice again” on the removal's entry in the Log.";
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token").value.trim();
    if (!t) return;
    sessionStorage.setItem(KEY, t);
    $("token").value = "";
    load();
  });
  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    me = null;
    $("reports").replaceChildren();
    $("ban-list").replaceChildren();
    $("log-list").replaceChildren();
    view = "reports";
    say("");
    showSignin();
  });
  $("refresh").addEventListener("click", load);
  $("bans-refresh").addEventListener("click", load);
  $("view-reports").addEventListener("click", () => { view = "reports"; load(); });
  $("view-bans").addEventListener("click", () => { view = "bans"; bansOffset = 0; load(); });
  $("bans-newer").addEventListener("click", () => { bansOffset = Math.max(0, bansOffset - BANS_PAGE); loadBans(); });
  $("bans-older").addEventListener("click", () => { bansOffset = Number($("bans-older").dataset.next) || 0; loadBans(); });
  $("log-refresh").addEventListener("click", load);
  $("view-log").addEventListener("click", () => { view = "log"; logOffset = 0; load(); });
  $("log-newer").addEventListener("click", () => { logOffset = Math.max(0, logOffset - LOG_PAGE); loadLog(); });
  $("log-older").addEventListener("click", () => { logOffset += LOG_PAGE; loadLog(); });
  $("remove-tell").addEventListener("change", removeFields);
  $("remove-note").addEventListener("input", removeFields);
  if (token()) load(); else showSignin();
});
