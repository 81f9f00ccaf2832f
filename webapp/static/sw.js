// The occase service worker: it shows a push notification for new chat
// messages (docs/push.md) and, when one is clicked, brings the app to the
// conversation with the sender. It caches nothing and handles no fetch.
//
// Served at /sw.js so that its scope is the whole app ("/"). A classic
// script (not a module), so that every browser with Web Push can run it.
// The payload comes from the server through the push service; it is checked
// like anything else from the network before it is shown.

"use strict";

const MAX_NICK = 40;
const MAX_PREVIEW = 200;

// note turns the decrypted payload, {"type":"chat","from":"42","count":3,
// "nick":"Ana","preview":"Is it still available?"} (nick and preview absent
// when the operator turned previews off), into what the notification shows.
// Anything unusable still gives a notification (Chrome requires one for
// every push, userVisibleOnly), a plain one that opens the app.
function note(payload) {
  const p = payload && typeof payload === "object" && !Array.isArray(payload) ? payload : {};
  const from = typeof p.from === "string" && /^\d{1,20}$/.test(p.from) ? p.from
    : Number.isSafeInteger(p.from) && p.from >= 0 ? String(p.from) : "";
  const count = Number.isSafeInteger(p.count) && p.count > 0 ? p.count : 1;
  const nick = typeof p.nick === "string" ? p.nick.trim().slice(0, MAX_NICK) : "";
  const preview = typeof p.preview === "string" ? p.preview.trim().slice(0, MAX_PREVIEW) : "";
  const chat = p.type === "chat" && from !== "";
  return {
    title: nick || "New message",
    options: {
      body: preview || (count === 1 ? "1 new message" : `${count} new messages`),
      // Collapse by sender, as the server does (Topic chat-<from>): a later
      // message replaces the notification and alerts again.
      tag: chat ? `chat-${from}` : "chat",
      renotify: true,
      icon: "/assets/icon.svg",
      data: { from: chat ? from : "" },
    },
  };
}

function readPayload(data) {
  if (!data) return null;
  try {
    return data.json();
  } catch {
    return null;
  }
}

self.addEventListener("install", () => {
  // Nothing to cache: take over from an older version at once.
  self.skipWaiting();
});

self.addEventListener("activate", (ev) => {
  ev.waitUntil(self.clients.claim());
});

self.addEventListener("push", (ev) => {
  const n = note(readPayload(ev.data));
  ev.waitUntil(self.registration.showNotification(n.title, n.options));
});

// open brings the app to the conversation with from: an open window of the
// app is focused and told (a postMessage that push.js handles, so nothing is
// reloaded); without one, a new window opens at /#/chats/<from>. It returns
// what it did, for the tests.
async function open(from) {
  const id = typeof from === "string" && /^\d{1,20}$/.test(from) ? from : "";
  const wins = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  // Windows of the app (its page is "/"), not of other paths of the origin.
  const mine = wins.filter((w) => {
    const u = new URL(w.url);
    return u.origin === self.location.origin && u.pathname === "/";
  });
  // Prefer a focused one; else the first (Chrome lists the one used last
  // first).
  const win = mine.find((w) => w.focused) || mine[0];
  if (win) {
    try {
      await win.focus();
    } catch {
      // Focusing needs the click's user activation; without it (the tests'
      // simulated click) the window is still told.
    }
    win.postMessage({ type: "open_chat", from: id });
    return "told";
  }
  await self.clients.openWindow(id ? `/#/chats/${id}` : "/");
  return "opened";
}

self.addEventListener("notificationclick", (ev) => {
  ev.notification.close();
  ev.waitUntil(open(ev.notification.data && ev.notification.data.from));
});

// A page of this origin may ask for what a click on the notification with
// tag does ({"type":"click","tag":"chat-42"}): the DevTools protocol can
// deliver a push but cannot click a notification, so the browser tests go
// through here. It does nothing a click would not do.
self.addEventListener("message", (ev) => {
  const d = ev.data;
  if (!d || d.type !== "click" || typeof d.tag !== "string") return;
  const reply = (r) => { if (ev.source) ev.source.postMessage({ type: "clicked", tag: d.tag, result: r }); };
  ev.waitUntil(self.registration.getNotifications({ tag: d.tag }).then(async (ns) => {
    if (ns.length === 0) return reply("none");
    const n = ns[ns.length - 1];
    n.close();
    return reply(await open(n.data && n.data.from));
  }).catch((e) => reply(`error: ${e && e.message}`)));
});
