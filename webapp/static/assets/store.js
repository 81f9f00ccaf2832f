// Everything the app keeps in the browser: the credentials, the data epoch
// they belong to, and per user the filter, the highest post id seen, the
// posts, the chats and the outgoing queue. localStorage is synchronous, so
// a chat line is on disk before it is on the wire. What is read back is
// checked again (safe.js): a value stored by an older version, or a hostile
// post kept before it was checked, must not break the page.

import { parse, stringify } from "./json.js";
import * as safe from "./safe.js";

const prefix = "occase.v1.";

function read(key, dflt) {
  try {
    const s = localStorage.getItem(prefix + key);
    return s == null ? dflt : parse(s);
  } catch {
    return dflt;
  }
}

function write(key, value) {
  try {
    localStorage.setItem(prefix + key, stringify(value));
  } catch {
    // Quota or privacy mode: the app keeps working from memory.
  }
}

function remove(key) {
  try {
    localStorage.removeItem(prefix + key);
  } catch {
    // As in write.
  }
}

export function loadCreds() {
  const c = read("creds", null);
  if (!c || typeof c !== "object") return null;
  const user = safe.userId(c.user);
  if (user == null || typeof c.password !== "string") return null;
  return { user, password: c.password };
}
export const saveCreds = (c) => write("creds", { user: c.user, password: c.password });
export const clearCreds = () => remove("creds");
// forgetAccount removes a deleted (or banned) account's credentials and
// everything kept for it (its conversations, listings seen, drafts); the
// stored credentials only if they are that account's.
export function forgetAccount(id) {
  const c = loadCreds();
  if (!c || c.user === String(id)) remove("creds");
  remove("user." + id);
  remove("drafts." + id);
}
export const loadNick = () => safe.text(read("nick", ""), safe.MAX_NICK) ?? "";
export const saveNick = (n) => write("nick", n);

// Epochs (PROTOCOL.md 1.1 §2): register_ack and login_ack name the
// deployment's data. When they name another epoch than the one this
// browser's ids came from, the server lost its data and those ids may now
// belong to strangers.
export const loadEpoch = () => safe.text(read("epoch", null), 200) ?? null;

// checkEpoch compares an ack's epoch with the stored one:
//   "none"    the ack has none (a server older than 1.1): nothing changes;
//   "same"    it is the stored one;
//   "adopted" nothing was stored (first contact, or data from before
//             epochs): it is stored, and everything else kept;
//   "reset"   it differs: every credential, id, conversation, listing and
//             draft of the old epoch is removed (the nick is kept), and the
//             new epoch stored.
export function checkEpoch(epoch) {
  if (typeof epoch === "number" && Number.isFinite(epoch)) epoch = String(epoch);
  if (typeof epoch !== "string" || epoch === "" || epoch.length > 200) return "none";
  const had = loadEpoch();
  if (had === epoch) return "same";
  if (had == null) {
    write("epoch", epoch);
    return "adopted";
  }
  dropAll();
  write("epoch", epoch);
  return "reset";
}

// dropAll removes everything but the nick.
export function dropAll() {
  try {
    const keys = [];
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i);
      if (k && k.startsWith(prefix) && k !== prefix + "nick") keys.push(k);
    }
    for (const k of keys) localStorage.removeItem(k);
  } catch {
    // Nothing stored, or storage unavailable.
  }
}

export function emptyUser() {
  return {
    filter: { loc: [], prod: [], features: 0, priceMin: "", priceMax: "" },
    lastPostId: 0,
    keep: 0,        // posts kept besides the newest 300, raised by "Load more"
    posts: {},      // id -> post as received, body parsed into .doc
    myPosts: {},    // id -> post I published
    chats: {},      // "postId:peer" -> chat
    outbox: [],     // message frames not yet acknowledged by the server
    seenMsgIds: [], // recent server msg_ids, to drop redeliveries
    pendingPublish: null,
    reported: [],   // ids (strings) of listings reported from this browser, oldest first
  };
}

// MAX_REPORTED bounds the listings remembered as reported: the oldest are
// forgotten first (their button then offers Report again, which the
// server takes as the same report).
export const MAX_REPORTED = 500;

function posts(obj) {
  const out = {};
  if (obj && typeof obj === "object") {
    for (const v of Object.values(obj)) {
      const p = safe.post(v);
      if (p) out[String(p.id)] = p;
    }
  }
  return out;
}

// cleanUser checks a stored user's state field by field; what does not
// have the expected shape is replaced by its empty value.
export function cleanUser(s) {
  const u = emptyUser();
  if (!s || typeof s !== "object") return u;
  const f = s.filter;
  if (f && typeof f === "object") {
    u.filter = {
      loc: safe.code(f.loc) || [], prod: safe.code(f.prod) || [],
      features: safe.isId(f.features) ? Number(f.features) : 0,
      priceMin: typeof f.priceMin === "string" ? f.priceMin : "",
      priceMax: typeof f.priceMax === "string" ? f.priceMax : "",
    };
  }
  if (safe.isId(s.lastPostId)) u.lastPostId = s.lastPostId;
  const keep = safe.finite(s.keep);
  if (keep !== undefined && keep > 0) u.keep = Math.min(5000, Math.trunc(keep));
  u.posts = posts(s.posts);
  u.myPosts = posts(s.myPosts);
  if (s.chats && typeof s.chats === "object") {
    for (const v of Object.values(s.chats)) {
      const c = safe.chat(v);
      if (c) u.chats[c.key] = c;
    }
  }
  if (Array.isArray(s.outbox)) {
    u.outbox = s.outbox.filter((o) => o && typeof o === "object" && o.frame && typeof o.frame === "object");
  }
  if (Array.isArray(s.seenMsgIds)) u.seenMsgIds = s.seenMsgIds.filter((x) => typeof x === "string");
  if (s.pendingPublish && typeof s.pendingPublish === "object" && s.pendingPublish.post) u.pendingPublish = s.pendingPublish;
  if (Array.isArray(s.reported)) {
    u.reported = [...new Set(s.reported.filter((x) => typeof x === "string" && /^\d{1,20}$/.test(x)))].slice(-MAX_REPORTED);
  }
  return u;
}

export function loadUser(id) {
  return cleanUser(read("user." + id, {}));
}

export function saveUser(id, u) {
  write("user." + id, u);
}

// Drafts of chat lines, per conversation key ("post:peer"), kept apart from
// the user's state so that typing does not rewrite it all.
export function loadDrafts(id) {
  const d = read("drafts." + id, {});
  const out = {};
  if (d && typeof d === "object" && !Array.isArray(d)) {
    for (const [k, v] of Object.entries(d).slice(0, 200)) {
      if (/^\d{1,20}:\d{1,20}$/.test(k) && typeof v === "string" && v) out[k] = v.slice(0, 4000);
    }
  }
  return out;
}
export const saveDrafts = (id, d) => write("drafts." + id, d);
