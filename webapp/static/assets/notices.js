// Notices (docs/protocol.md "Notices"): what the moderators tell this
// account, today that a listing of theirs was removed and why. The server
// keeps them until the app says they were seen (notices_seen); the app asks
// for them (notices) after a login_ack that counts some, and its login
// ("notices":true) has the server push new ones (notice). Everything in a notice comes from the network: each
// field is checked here, and the words are made with textContent only.

import * as safe from "./safe.js";

// The reasons the moderators give, in the words of the report dialog.
const reasonWords = {
  spam: "spam", scam: "scam or fraud", prohibited: "prohibited item", offensive: "offensive", other: "other",
};

// parse returns a notice the app can show, or null: an id, a kind it
// knows, a reason among the five, the rest cut to its bound.
export function parse(raw) {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) return null;
  if (!safe.isId(raw.id) || raw.kind !== "post_removed") return null;
  const reason = Object.hasOwn(reasonWords, raw.reason) ? raw.reason : "";
  if (!reason) return null;
  return {
    id: String(raw.id),
    post: safe.isId(raw.post) ? String(raw.post) : "",
    title: safe.text(raw.title, 100) || "",
    reason,
    note: safe.text(raw.note, 280) || "",
    at: safe.finite(raw.at) || 0,
  };
}

// merge adds the notices of list to have (by id, oldest first), at most 20.
export function merge(have, list) {
  const byId = new Map(have.map((n) => [n.id, n]));
  for (const raw of list) {
    const n = parse(raw);
    if (n) byId.set(n.id, n);
  }
  return [...byId.values()].sort((a, b) => (a.id.length - b.id.length) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).slice(-20);
}

// text is what the app says of notice n.
export function text(n) {
  const what = n.title ? `Your listing “${n.title}”` : "A listing of yours";
  return `${what} was removed by the moderators: ${reasonWords[n.reason]}` + (n.note ? ` — ${n.note}` : "");
}

// newest is the highest id of list ("" for none), for notices_seen.
export function newest(list) {
  return list.length ? list[list.length - 1].id : "";
}
