// Everything the app keeps in the browser: the credentials, and per user
// the filter, the highest post id seen, the posts, the chats and the
// outgoing queue. localStorage is synchronous, so a chat line is on disk
// before it is on the wire.

import { parse, stringify } from "./json.js";

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

export const loadCreds = () => read("creds", null);
export const saveCreds = (c) => write("creds", c);
export const clearCreds = () => localStorage.removeItem(prefix + "creds");
export const loadNick = () => read("nick", "");
export const saveNick = (n) => write("nick", n);

export function emptyUser() {
  return {
    filter: { loc: [], prod: [], features: 0, priceMin: "", priceMax: "" },
    lastPostId: 0,
    posts: {},      // id -> post as received, body parsed into .doc
    myPosts: {},    // id -> post I published
    chats: {},      // "postId:peer" -> chat
    outbox: [],     // message frames not yet acknowledged by the server
    seenMsgIds: [], // recent server msg_ids, to drop redeliveries
    pendingPublish: null,
  };
}

export function loadUser(id) {
  return Object.assign(emptyUser(), read("user." + id, {}));
}

export function saveUser(id, u) {
  write("user." + id, u);
}
