// Changes to a user's state (store.emptyUser) caused by what the server
// pushes: posts arriving and posts deleted. Pure functions over plain
// objects, so that the module tests can drive them without a page.

import * as safe from "./safe.js";

export const MAX_POSTS = 300;

// addPosts checks and keeps the items of a `post` frame. An item without a
// usable id or author is skipped; one with an unreadable body is kept
// marked bad. It returns how many items were kept.
export function addPosts(u, items, me) {
  const kept = put(u, items, me);
  // Once the person paged back (keep above the default), new posts do not
  // push out the pages they asked for, up to MAX_KEPT.
  if ((u.keep || 0) > MAX_POSTS) u.keep = Math.min(MAX_KEPT, u.keep + kept);
  trimPosts(u);
  return kept;
}

function put(u, items, me) {
  if (!Array.isArray(items)) return 0;
  let kept = 0;
  let max = u.lastPostId;
  for (const raw of items) {
    const p = safe.post(raw);
    if (!p) continue;
    kept++;
    if (p.id > max) max = p.id;
    const k = String(p.id);
    // A listing under review is hidden from buyers: only My listings
    // keeps it (its author is the only one sent it).
    if (p.under_review) delete u.posts[k];
    else u.posts[k] = p;
    if (p.from === me) u.myPosts[k] = p;
  }
  u.lastPostId = max;
  return kept;
}

// trimPosts keeps the newest u.keep posts (MAX_POSTS, raised by each
// "Load more" so that older pages the person asked for stay).
function trimPosts(u) {
  const ids = Object.keys(u.posts);
  const keep = Math.max(MAX_POSTS, u.keep || 0);
  if (ids.length <= keep) return;
  ids.sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1));
  for (const id of ids.slice(0, ids.length - keep)) delete u.posts[id];
}

// oldestPostId is the smallest id in u.posts as a decimal string, or "".
export function oldestPostId(u) {
  let min = null;
  for (const k of Object.keys(u.posts)) if (min === null || BigInt(k) < min) min = BigInt(k);
  return min === null ? "" : String(min);
}

// addOlder keeps a page of older posts from GET /api/posts (newest first)
// without moving lastPostId, which pages the live subscription, and raises
// the number of posts kept so the page is not trimmed away.
export function addOlder(u, items, me) {
  const last = u.lastPostId;
  const n = put(u, items, me);
  u.lastPostId = last;
  u.keep = Math.min(MAX_KEPT, Math.max(MAX_POSTS, u.keep || 0) + n);
  trimPosts(u);
  return n;
}

export const MAX_KEPT = 5000;

// removePost applies {"cmd":"post_deleted","id":N} (PROTOCOL.md 1.1 §4):
// the listing leaves the lists, and every conversation about it is marked
// removed (kept, so that what was said stays readable). It reports whether
// anything changed; a frame without a valid id changes nothing.
export function removePost(u, id) {
  if (!safe.isId(id)) return false;
  const k = String(id);
  let changed = false;
  if (k in u.posts) { delete u.posts[k]; changed = true; }
  if (k in u.myPosts) { delete u.myPosts[k]; changed = true; }
  for (const c of Object.values(u.chats)) {
    if (String(c.postId) === k && !c.removed) { c.removed = true; changed = true; }
  }
  return changed;
}

// setMyPosts makes My listings the server's answer to my_posts (items: every
// live listing of this account, those under review marked): a listing the
// server no longer has leaves, whatever this browser guessed. A listing that
// arrived while the answer was on its way (a key not in before: a publish
// echoed meanwhile) stays. Items of another author are skipped. It returns
// how many listings My listings holds.
export function setMyPosts(u, items, me, before) {
  const mine = {};
  for (const raw of Array.isArray(items) ? items : []) {
    const p = safe.post(raw);
    if (!p || p.from !== me) continue;
    const k = String(p.id);
    mine[k] = p;
    if (p.under_review) delete u.posts[k];
    else if (k in u.posts) u.posts[k] = p;
  }
  for (const [k, p] of Object.entries(u.myPosts)) {
    if (!(k in mine) && !(before && before.has(k))) mine[k] = p;
  }
  u.myPosts = mine;
  return Object.keys(mine).length;
}

// replacePost applies a new version of a post (an edit, a status or a
// renewal: docs/protocol.md "Editing a listing"), from a live `post` frame
// or from an update/set_status/renew ack. A post is replaced by id wherever
// it is held (Browse, My listings, extra maps such as search results or posts
// read over HTTP), and conversations about it take its new title. It
// returns the checked post, or null.
export function replacePost(u, raw, me, ...maps) {
  const p = safe.post(raw);
  if (!p) return null;
  const k = String(p.id);
  if (p.under_review) delete u.posts[k];
  else if (k in u.posts) u.posts[k] = p;
  if (k in u.myPosts || p.from === me) u.myPosts[k] = p;
  for (const m of maps) if (m && k in m && m[k] && typeof m[k] === "object") m[k] = p;
  const t = !p.bad && (p.doc.title || p.doc.msg);
  if (t) for (const c of Object.values(u.chats)) if (String(c.postId) === k) c.title = String(t).slice(0, 80);
  return p;
}

// words splits text the way the server's search does (docs/http-api.md
// "Text search"): runs of letters and digits, accents dropped, lowercased,
// compatibility forms folded, cut after 32 letters.
export function words(s) {
  return String(s ?? "").normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase()
    .split(/[^\p{L}\p{N}]+/u).filter(Boolean).map((w) => [...w].slice(0, 32).join(""));
}

// matchesQuery reports whether a post's text holds every word of q (words
// of one letter ignored), the last one as a prefix unless q ends with a
// separator: the server's rule, used for live posts arriving while a
// search is shown.
export function matchesQuery(p, q) {
  const qw = words(q).filter((w) => [...w].length > 1);
  if (!qw.length) return true;
  if (!p || p.bad) return false;
  const d = p.doc || {};
  const have = new Set(words([d.title, d.msg, d.nick].filter((x) => typeof x === "string").join(" ")));
  const prefix = !/[^\p{L}\p{N}]$/u.test(String(q));
  return qw.every((w, i) => (prefix && i === qw.length - 1 ? [...have].some((x) => x.startsWith(w)) : have.has(w)));
}

// expiry is when a post expires and when it may be renewed, in Unix
// seconds, for the server's defaults (--post-expiry 90 days,
// --renew-window 7 days); a refused renew names the real time.
export const POST_EXPIRY = 90 * 86400;
export const RENEW_WINDOW = 7 * 86400;
export function expiry(p) {
  const from = Math.max(Number(p.date) || 0, Number(p.renewed) || 0);
  return { expires: from + POST_EXPIRY, renewFrom: from + POST_EXPIRY - RENEW_WINDOW };
}

// parseFind reads the search of a Browse URL (#/browse?q=…&sort=…&status=available).
export const SORTS = ["date", "price_asc", "price_desc"];
export function parseFind(hash) {
  const i = String(hash).indexOf("?");
  const p = new URLSearchParams(i >= 0 ? String(hash).slice(i + 1) : "");
  const sort = p.get("sort");
  return {
    q: (p.get("q") || "").replace(/\s+/g, " ").trimStart().slice(0, 120),
    sort: SORTS.includes(sort) ? sort : "date",
    avail: p.get("status") === "available",
  };
}

// findHash is the query part of a Browse URL for a search ("" for none).
export function findHash(f) {
  const p = new URLSearchParams();
  if (f.q.trim()) p.set("q", f.q.trim());
  if (f.sort !== "date") p.set("sort", f.sort);
  if (f.avail) p.set("status", "available");
  const s = p.toString();
  return s ? `?${s}` : "";
}

// queryProblem says why q cannot be searched (the server's rules), or "".
export function queryProblem(q) {
  if (!q.trim()) return "";
  const w = words(q);
  if (!w.some((x) => [...x].length > 1)) return "Type a word of two letters or more to search.";
  if (w.length > 8) return "Search with at most 8 words.";
  if (new TextEncoder().encode(q).length > 256) return "The search is too long.";
  return "";
}
