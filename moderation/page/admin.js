// The operator page of the moderation API (docs/http-api.md "Moderation
// API"). Every string that comes from users (post titles and text, report
// texts, ids) is HOSTILE: it is only ever set with textContent, never
// parsed as markup. The token stays in this tab's sessionStorage.
"use strict";

const KEY = "occase-admin-token";
const $ = (id) => document.getElementById(id);

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
  $("signin").hidden = false;
  $("queue").hidden = true;
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

function when(at) {
  if (!at) return "";
  const d = new Date(at * 1000);
  return isNaN(d) ? "" : d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

function card(p) {
  const li = el("li", "report");
  li.dataset.post = String(p.id);
  li.dataset.testid = "report";
  const title = p.gone ? "(post gone)" : (p.title || "(no title)");
  const h = el("h3", null, title);
  h.dataset.testid = "report-title";
  li.append(h);
  const n = p.reporters === 1 ? "1 reporter" : p.reporters + " reporters";
  const meta = el("p", "meta", "post " + p.id + " · author " + (p.author || "-") + " · " + n);
  meta.dataset.testid = "report-meta";
  li.append(meta);
  if (p.snippet) {
    const s = el("p", "snippet", p.snippet);
    s.dataset.testid = "report-snippet";
    li.append(s);
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
  btn("Dismiss reports", "dismiss");
  if (!p.gone) btn("Remove post", "remove", "danger");
  if (p.author) btn("Ban author", "ban", "danger");
  li.append(actions);
  return li;
}

async function load() {
  if (!token()) { showSignin(); return; }
  say("Loading…");
  let q;
  try {
    q = await api("GET", "/admin/v1/reports?limit=200&texts=5");
  } catch (e) {
    if (e.reason !== "unauthorized") say(e.error || "failed", true);
    return;
  }
  $("signin").hidden = true;
  $("queue").hidden = false;
  $("signout").hidden = false;
  let sum = "Review queue: " + q.queued + " of at most " + q.queue_max + " reported posts";
  if (q.queued >= q.queue_max) sum += " — FULL: dismiss or remove to make room";
  $("queue-summary").textContent = sum;
  const list = $("reports");
  list.replaceChildren(...q.reports.map(card));
  say(q.reports.length ? "" : "No reported posts.");
}

// confirmAction asks in the page's own dialog (no window.confirm, which
// blocks the page) and resolves to the ban fields, or null when cancelled.
function confirmAction(title, text, ban) {
  const d = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("ban-fields").hidden = !ban;
  $("ban-note").value = "";
  $("ban-remove-posts").checked = false;
  return new Promise((resolve) => {
    const done = (ok) => {
      $("confirm-form").onsubmit = null;
      $("confirm-cancel").onclick = null;
      d.onclose = null;
      if (d.open) d.close();
      resolve(ok ? { note: $("ban-note").value, remove_posts: $("ban-remove-posts").checked } : null);
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
    ok = await confirmAction("Dismiss the reports?", "The reports of " + label + " are cleared; the post stays.");
    path = "/admin/v1/posts/" + p.id + "/dismiss";
  } else if (action === "remove") {
    ok = await confirmAction("Remove the post?", label + " is deleted for everyone, with its reports.");
    path = "/admin/v1/posts/" + p.id + "/remove";
    body = {};
  } else {
    ok = await confirmAction("Ban user " + p.author + "?",
      "User " + p.author + " is logged out everywhere and cannot log in until unbanned.", true);
    path = "/admin/v1/users/" + encodeURIComponent(p.author) + "/ban";
    if (ok) body = { note: ok.note, remove_posts: ok.remove_posts };
  }
  if (!ok) return;
  try {
    const r = await api("POST", path, body);
    if (action === "dismiss") say("Dismissed the reports of post " + r.post + ".");
    else if (action === "remove") say("Removed post " + r.post + " of user " + r.author + ".");
    else say("User " + r.user + (r.already ? " was banned already; ban renewed." : " banned.") +
      (r.remove_posts ? " " + r.posts_deleted + " posts deleted." : ""));
  } catch (e) {
    if (e.reason !== "unauthorized") say(e.error || "failed", true);
    if (e.reason === "unauthorized") return;
  }
  const msg = $("status").textContent, err = $("status").classList.contains("error");
  await load();
  if (msg) say(msg, err);
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
    $("reports").replaceChildren();
    say("");
    showSignin();
  });
  $("refresh").addEventListener("click", load);
  if (token()) load(); else showSignin();
});
