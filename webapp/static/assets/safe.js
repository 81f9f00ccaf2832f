// Every value that comes from the network (a post and its body, a chat
// line, a reply, the menu) or from localStorage is checked here before the
// app keeps or shows it: a string where text is expected (cut to a length),
// finite numbers, ids of the protocol's shape, image paths only of the
// signed-name shape (relative, so they can never name another origin or a
// javascript: URL). A post that cannot be keyed is skipped; one whose body
// has a field of the wrong type is kept as "unreadable", so that one hostile
// post costs one card, never the page. Nothing here touches the DOM.

export const MAX_TITLE = 200;
export const MAX_TEXT = 4000;
export const MAX_NICK = 40;
export const MAX_BODY = 64 * 1024; // bytes of body text parsed; the server allows 16 KiB
export const MAX_PHOTOS = 4;

const has = (o, k) => o != null && typeof o === "object" && Object.prototype.hasOwnProperty.call(o, k);

// text returns v when it is a string (cut to max code units), else undefined.
export function text(v, max = MAX_TEXT) {
  return typeof v === "string" ? v.slice(0, max) : undefined;
}

// finite returns v as a finite number, else undefined.
export function finite(v) {
  if (typeof v === "number") return Number.isFinite(v) ? v : undefined;
  if (typeof v === "bigint") return Number(v);
  return undefined;
}

const U64 = 2n ** 64n;

// isId reports whether v is an unsigned 64-bit integer as json.js reads
// one: a safe integer number, or a BigInt above that.
export function isId(v) {
  if (typeof v === "number") return Number.isSafeInteger(v) && v >= 0;
  if (typeof v === "bigint") return v >= 0n && v < U64;
  return false;
}

// userId returns a user id as its decimal string, or null.
export function userId(v) {
  if (typeof v === "string") return /^\d{1,20}$/.test(v) ? v : null;
  return isId(v) ? String(v) : null;
}

// Image paths as the image server hands them out: "<hex digest>/<name>.<ext>".
export const imagePath = /^[0-9a-f]{8,64}\/[A-Za-z0-9+_-]{1,64}\.(jpg|jpeg|png|webp)$/;
// An upload name from filenames_ack, before the extension is added.
export const uploadName = /^[0-9a-f]{8,64}\/[A-Za-z0-9+_-]{1,64}$/;

export function images(v) {
  if (!Array.isArray(v)) return [];
  return v.filter((s) => typeof s === "string" && imagePath.test(s)).slice(0, MAX_PHOTOS);
}

// reviewTokenShape is the shape of a review token (docs/protocol.md "The
// author's photos of a listing under review"): the Unix second it stops
// working, a dot, 64 hex digits of MAC. The operator page checks the same.
export const reviewTokenShape = /^\d{1,12}\.[0-9a-f]{64}$/;

// reviewTokens returns v's review tokens, one per photo path of the
// listing's images (those images() keeps), "" where none or not of the
// token's shape.
export function reviewTokens(v) {
  if (!Array.isArray(v)) return [];
  return v.slice(0, MAX_PHOTOS).map((t) => (typeof t === "string" && reviewTokenShape.test(t) ? t : ""));
}

// code returns a menu code (a path of small child indexes) or null.
export function code(v) {
  if (!Array.isArray(v) || v.length > 16) return null;
  const out = [];
  for (const x of v) {
    const n = typeof x === "bigint" ? NaN : x;
    if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) return null;
    out.push(n);
  }
  return out;
}

// channel returns [[location code], [product code]] or null.
export function channel(v) {
  if (!Array.isArray(v) || v.length !== 2) return null;
  const out = [];
  for (const side of v) {
    const c = Array.isArray(side) ? code(side[0]) : null;
    if (!c) return null;
    out.push([c]);
  }
  return out;
}

// parseDoc reads a post body (a JSON string, or an object already parsed)
// into the fields the app shows. bad is set when the body is not a JSON
// object or a field it has is of the wrong type.
export function parseDoc(body) {
  let d = body;
  if (typeof body === "string") {
    if (body.length > MAX_BODY) return { doc: {}, bad: true };
    try {
      d = JSON.parse(body);
    } catch {
      return { doc: {}, bad: true };
    }
  }
  if (d == null || typeof d !== "object" || Array.isArray(d)) return { doc: {}, bad: true };
  const doc = {};
  let bad = false;
  const str = (k, max) => {
    if (!has(d, k) || d[k] == null) return;
    const s = text(d[k], max);
    if (s === undefined) bad = true;
    else if (s !== "") doc[k] = s;
  };
  str("title", MAX_TITLE);
  str("msg", MAX_TEXT);
  str("nick", MAX_NICK);
  if (has(d, "price") && d.price != null) {
    const p = finite(d.price);
    if (p === undefined) bad = true;
    else doc.price = p;
  }
  if (has(d, "images") && d.images != null && !Array.isArray(d.images)) bad = true;
  doc.images = images(has(d, "images") ? d.images : []);
  const ch = has(d, "channel") ? channel(d.channel) : null;
  if (ch) doc.channel = ch;
  return { doc, bad };
}

// post returns the post the app keeps for a post of the wire (or one it
// stored earlier, whose body is the parsed doc), or null when it has no
// usable id or author.
export function post(raw) {
  if (raw == null || typeof raw !== "object" || Array.isArray(raw)) return null;
  if (!isId(raw.id)) return null;
  const from = userId(raw.from);
  if (from == null) return null;
  const { doc, bad } = parseDoc(has(raw, "body") ? raw.body : raw.doc);
  const rv = Array.isArray(raw.range_values)
    ? raw.range_values.slice(0, 8).map((x) => finite(x) ?? null) : [];
  return {
    id: raw.id,
    from,
    date: finite(raw.date) ?? 0,
    features: isId(raw.features) ? raw.features : 0,
    range_values: rv,
    to: channel(raw.to),
    doc,
    bad: bad || raw.bad === true,
    // Issue 15 (docs/protocol.md "Editing a listing"): set by the server
    // only; no member means available.
    status: raw.status === "sold" || raw.status === "reserved" ? raw.status : "available",
    renewed: finite(raw.renewed) ?? 0,
    edited: finite(raw.edited) ?? 0,
    // docs/protocol.md "Listings hidden pending review": only the
    // author's own copy of a hidden listing has it.
    under_review: raw.under_review === true,
    // The author's copy of a hidden listing only: a review token per
    // photo, so that the seller sees the photos the img nodes withhold
    // from everyone else ("review" when stored by this app).
    review: raw.under_review === true ? reviewTokens(has(raw, "images_review") ? raw.images_review : raw.review) : [],
  };
}

// msgText is a chat line's text, or null when it is not text.
export function msgText(v) {
  return text(v, MAX_TEXT) ?? null;
}

// lineId is a chat line's id (a safe integer, or a BigInt), or undefined.
export function lineId(v) {
  return isId(v) ? v : undefined;
}

// cid is a chat message's client id (docs/protocol.md "Safe chat resends"):
// 1 to 64 letters, digits, "-", "_", "." or ":"; otherwise undefined.
export function cid(v) {
  return typeof v === "string" && /^[A-Za-z0-9._:-]{1,64}$/.test(v) ? v : undefined;
}

// chat returns a stored conversation checked field by field, or null.
export function chat(c) {
  if (c == null || typeof c !== "object" || !isId(c.postId)) return null;
  const peer = userId(c.peer);
  if (peer == null) return null;
  const msgs = Array.isArray(c.msgs) ? c.msgs.filter((m) => m && typeof m === "object").map((m) => ({
    id: lineId(m.id),
    mine: m.mine === true,
    text: msgText(m.text) ?? "This message could not be read.",
    date: finite(m.date) ?? 0,
    status: finite(m.status) ?? 0,
    failed: text(m.failed, 300),
    readSent: m.readSent === true,
    bad: m.bad === true || typeof m.text !== "string",
  })) : [];
  return {
    key: `${c.postId}:${peer}`,
    postId: c.postId,
    peer,
    peerNick: text(c.peerNick, MAX_NICK) ?? "",
    iAmSeller: c.iAmSeller === true,
    title: text(c.title, MAX_TITLE) || `Post #${c.postId}`,
    msgs,
    unread: Math.max(0, Math.trunc(finite(c.unread) ?? 0)),
    peerIds: Array.isArray(c.peerIds) ? c.peerIds.filter((x) => typeof x === "string") : [],
    peerCids: Array.isArray(c.peerCids) ? c.peerCids.filter((x) => cid(x) !== undefined).slice(-1000) : [],
    last: finite(c.last) ?? 0,
    removed: c.removed === true,
  };
}

// menuTree returns a menu tree with string names and arrays of children
// only (at most `depth` levels), or null.
export function menuTree(t) {
  const walk = (n, lvl) => {
    if (n == null || typeof n !== "object") return null;
    const out = { name: text(n.name, 100) ?? "?" };
    if (Array.isArray(n.children) && lvl < 8) {
      out.children = n.children.slice(0, 5000).map((k) => walk(k, lvl + 1)).filter(Boolean);
    }
    return out;
  };
  if (t == null || typeof t !== "object" || !Array.isArray(t.children)) return null;
  const tree = walk(t, 0);
  const d = finite(t.depth);
  tree.depth = d >= 1 && d <= 4 ? Math.trunc(d) : 3;
  return tree;
}

// reason is a reply's reason code when it is one (snake_case), else "".
export function reason(v) {
  return typeof v === "string" && /^[a-z_]{1,64}$/.test(v) ? v : "";
}
