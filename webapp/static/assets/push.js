// Push notifications in the browser (docs/push.md, "The web app"): the
// "Get notified of new messages" box, the service worker (/sw.js), the
// browser's push subscription and push_subscribe / push_unsubscribe.
//
// Permission is asked for only when the person presses the button, which
// says why. After that, every login sends the subscription again
// (subscribing anew when the server's VAPID key changed), and logging out
// sends push_unsubscribe and drops the browser's subscription, so that the
// next person on this browser never gets the last one's notifications.
//
// The app gives init its Session and a function that opens the newest
// conversation with a user; it calls loggedIn after every login and
// loggedOut before it stops the session. The box is the element #push-box
// with #push-status and #push-btn; without them this module still
// subscribes, it just shows nothing.

const $ = (id) => document.getElementById(id);

const SW_PATH = "/sw.js";
const KEY_PATH = "/api/push/vapid-public-key";
const PREF = "occase.v1.push"; // "on" (asked for), "off" (turned off here)
const OWNER = "occase.v1.push.user"; // the account the subscription was sent for

const st = {
  session: null,
  openPeer: null,
  user: null,       // logged in as (null: a guest, or logged out)
  state: "off",     // what the box shows: unsupported, denied, off, busy, on, error
  error: "",
  endpoint: "",     // of the subscription the server acknowledged
  chain: Promise.resolve(), // subscription changes, one at a time
  pendingPeer: "",  // from /#chats/<id>: opened after the login
};

export function supported() {
  return typeof window !== "undefined" && window.isSecureContext === true &&
    "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

function pref(key = PREF) {
  try {
    return localStorage.getItem(key) || "";
  } catch {
    return "";
  }
}

function setPref(v, key = PREF) {
  try {
    localStorage.setItem(key, v);
  } catch {
    // Privacy mode: it holds for this page only.
  }
}

class PushError extends Error {}

// ---------------------------------------------------------------- the box

function render() {
  const box = $("push-box");
  const status = $("push-status");
  const btn = $("push-btn");
  if (!box || !status || !btn) return;
  box.hidden = st.user == null;
  let s = st.state;
  if (!supported()) s = "unsupported";
  else if (Notification.permission === "denied") s = "denied";
  box.dataset.state = s;
  const words = {
    unsupported: window.isSecureContext === false
      ? "Notifications need this app to be served over HTTPS."
      : "This browser cannot show notifications from this app.",
    denied: "Notifications are blocked for this site. To get them, allow notifications in your browser's settings for this site.",
    off: "Get a notification when someone writes to you while this app is closed.",
    busy: "Turning on notifications…",
    on: "You will be notified of new messages while this app is closed.",
    error: `Could not turn on notifications: ${st.error}`,
  };
  status.textContent = words[s];
  btn.hidden = s === "unsupported" || s === "denied";
  btn.disabled = s === "busy";
  btn.textContent = s === "on" ? "Turn off notifications" : s === "error" ? "Try again" : "Get notified of new messages";
  btn.dataset.action = s === "on" ? "off" : "on";
}

function clicked() {
  if (!supported() || st.user == null) return;
  if ($("push-btn").dataset.action === "off") {
    setPref("off");
    queue(turnOff);
    return;
  }
  setPref("on");
  // Asked here, in the click, and nowhere else (when it was granted
  // already, the browser answers at once without a prompt).
  st.state = "busy";
  render();
  Promise.resolve(Notification.requestPermission()).then((p) => {
    if (p === "granted") queue(turnOn);
    else {
      st.state = "off"; // denied shows from Notification.permission; "default": closed the prompt
      render();
    }
  }, () => {
    st.state = "off";
    render();
  });
}

// ---------------------------------------------------------------- the subscription

function queue(step) {
  st.chain = st.chain.then(step).catch((e) => {
    st.state = "error";
    st.error = e instanceof PushError ? e.message : `${(e && e.name) || "Error"}: ${(e && e.message) || e}`;
  }).then(render);
}

async function registration() {
  await navigator.serviceWorker.register(SW_PATH, { scope: "/" });
  return navigator.serviceWorker.ready;
}

function b64url(bytes) {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// vapidKey is the server's VAPID public key: an uncompressed P-256 point.
async function vapidKey() {
  let r;
  try {
    r = await fetch(KEY_PATH, { cache: "no-store", headers: { Accept: "text/plain" } });
  } catch {
    throw new PushError("the server cannot be reached; try again later.");
  }
  if (r.status === 404) throw new PushError("this server does not send notifications.");
  if (!r.ok) throw new PushError(`the server answered HTTP ${r.status}; try again later.`);
  const text = (await r.text()).trim().replace(/=+$/, "");
  if (!/^[A-Za-z0-9_-]{87}$/.test(text)) throw new PushError("the server's key is not usable.");
  const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  const key = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  if (key[0] !== 4) throw new PushError("the server's key is not usable.");
  return key;
}

// SUBSCRIBE_MS bounds the wait for the browser's push service: without a
// network path to it, Chrome keeps trying for minutes.
const SUBSCRIBE_MS = 30000;

// subscription is this browser's push subscription for key: the one it has
// when it was made with that key for this account, else a new one (a server
// whose key changed can no longer sign for the old one). old is the
// endpoint of a subscription of this account it dropped, "" if none.
//
// A subscription sent for another account (one that ended without a
// logout here: wrong password, a data reset) is dropped without a word to
// the server: the push service then answers 410 for it and the server
// removes that account's device, so its notifications never reach the
// next person on this browser.
async function subscription(reg, key, user) {
  let sub = await reg.pushManager.getSubscription();
  let old = "";
  if (sub) {
    const had = sub.options && sub.options.applicationServerKey;
    const owner = pref(OWNER);
    if (owner !== user || !had || b64url(had) !== b64url(key)) {
      if (owner === user) old = sub.endpoint;
      await sub.unsubscribe().catch(() => {});
      sub = null;
    }
  }
  if (!sub) {
    let timer;
    try {
      sub = await Promise.race([
        reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new PushError("the browser's push service did not answer; try again later.")), SUBSCRIBE_MS);
        }),
      ]);
    } catch (e) {
      if (e instanceof PushError) throw e;
      if (e && e.name === "NotAllowedError") throw new PushError("the browser did not allow notifications.");
      throw new PushError(`the browser could not subscribe with its push service (${(e && e.message) || e}).`);
    } finally {
      clearTimeout(timer);
    }
  }
  return { sub, old };
}

const refused = {
  too_many: "this account already gets notifications on the most devices allowed; turn them off on one you no longer use.",
  unavailable: "this server does not send notifications right now; try again later.",
  rate_limited: "too many changes in a short time; try again in a minute.",
};

async function turnOn() {
  if (st.user == null || !st.session) return;
  st.state = "busy";
  render();
  const user = st.user;
  const reg = await registration();
  const key = await vapidKey();
  const { sub, old } = await subscription(reg, key, user);
  setPref(user, OWNER);
  const j = sub.toJSON();
  let r;
  try {
    // The server's key changed: the old subscription is dead.
    if (old) await st.session.request({ cmd: "push_unsubscribe", webpush: { endpoint: old } });
    r = await st.session.request({
      cmd: "push_subscribe",
      webpush: { endpoint: j.endpoint, keys: { p256dh: j.keys.p256dh, auth: j.keys.auth } },
    });
  } catch {
    // Offline: the next login sends it.
    st.state = "off";
    return;
  }
  if (st.user !== user) return; // logged out meanwhile: loggedOut cleaned up
  if (r.result !== "ok") {
    throw new PushError(refused[r.reason] || `the server refused it (${r.reason || "no reason given"}).`);
  }
  st.endpoint = j.endpoint;
  st.state = "on";
}

async function turnOff() {
  st.state = "busy";
  render();
  const reg = await navigator.serviceWorker.getRegistration("/");
  const sub = reg && await reg.pushManager.getSubscription();
  const endpoint = (sub && sub.endpoint) || st.endpoint;
  if (endpoint && st.session) {
    const r = await st.session.request({ cmd: "push_unsubscribe", webpush: { endpoint } }).catch(() => null);
    if (r && r.result !== "ok" && r.reason === "rate_limited") throw new PushError(refused.rate_limited);
  }
  // Even if the server did not hear it: a dropped subscription makes the
  // push service answer 410, and the server removes the device then.
  if (sub) await sub.unsubscribe().catch(() => {});
  st.endpoint = "";
  st.state = "off";
}

// ---------------------------------------------------------------- the app's hooks

// init wires the box and the service worker's messages. openPeer(id) opens
// the newest conversation with user id.
export function init(session, openPeer) {
  st.session = session;
  st.openPeer = openPeer;
  const btn = $("push-btn");
  if (btn) btn.addEventListener("click", clicked);
  // A window opened by a click on a notification: /#chats/<id>.
  linked();
  addEventListener("hashchange", () => {
    linked();
    if (st.user != null && st.pendingPeer) {
      const peer = st.pendingPeer;
      st.pendingPeer = "";
      st.openPeer(peer);
    }
  });
  if (supported()) {
    // An open window is told by the service worker instead.
    navigator.serviceWorker.addEventListener("message", (ev) => {
      const d = ev.data;
      if (!d || typeof d !== "object" || d.type !== "open_chat") return;
      const id = typeof d.from === "string" && /^\d{1,20}$/.test(d.from) ? d.from : "";
      if (st.user == null) return;
      if (id) st.openPeer(id);
    });
    navigator.serviceWorker.startMessages();
  }
  render();
}

// linked takes /#chats/<id> off the address, to open after the login.
function linked() {
  const m = /^#chats\/(\d{1,20})$/.exec(location.hash);
  if (!m) return;
  st.pendingPeer = m[1];
  history.replaceState(null, "", location.pathname + location.search);
}

// loggedIn runs after every login: it sends the subscription again when
// notifications are on here (the permission granted, and not turned off in
// this browser), and opens the conversation a notification asked for.
export function loggedIn(user) {
  st.user = String(user);
  if (st.pendingPeer) {
    const peer = st.pendingPeer;
    st.pendingPeer = "";
    st.openPeer(peer);
  }
  if (supported() && Notification.permission === "granted" && pref() !== "off") {
    queue(turnOn);
  } else if (st.state !== "busy") {
    st.state = "off";
  }
  render();
}

// loggedOut runs before the app stops its session: push_unsubscribe goes
// out on the connection still open, and the browser's subscription is
// dropped (so the next account here subscribes afresh).
export function loggedOut() {
  const endpoint = st.endpoint;
  if (endpoint && st.session) st.session.send({ cmd: "push_unsubscribe", webpush: { endpoint } });
  st.user = null;
  st.endpoint = "";
  st.state = "off";
  render();
  if (!supported()) return;
  st.chain = st.chain.then(async () => {
    const reg = await navigator.serviceWorker.getRegistration("/");
    const sub = reg && await reg.pushManager.getSubscription();
    if (sub && st.user == null) await sub.unsubscribe();
  }).catch(() => {});
}
