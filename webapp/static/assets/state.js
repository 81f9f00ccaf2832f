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
    u.posts[k] = p;
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
