// Session: one WebSocket to the realtime engine, logged in, reopened with
// backoff whenever the server or the network goes away. Requests are
// answered in order, one reply each (PROTOCOL.md §1); replies are matched to
// the oldest waiting request of the same kind, so that an unsolicited frame
// or a reply the server replays after a reconnect never answers the wrong
// request.

import { parse, stringify } from "./json.js";
import * as safe from "./safe.js";
import { closeInfo, reconnectDelay } from "./codes.js";

const ackKind = {
  register_ack: "register", login_ack: "login", subscribe_ack: "subscribe",
  publish_ack: "publish", delete_ack: "delete", filenames_ack: "filenames",
  push_subscribe_ack: "push_subscribe", push_unsubscribe_ack: "push_unsubscribe",
  // Issue 15: a seller's changes (docs/protocol.md "Editing a listing").
  update_ack: "update", set_status_ack: "set_status", renew_ack: "renew",
  delete_account_ack: "delete_account",
  block_ack: "block", unblock_ack: "unblock", blocks_ack: "blocks",
  report_ack: "report",
  notices_ack: "notices", notices_seen_ack: "notices_seen",
  my_posts_ack: "my_posts",
};

// Close codes the session acts on; what every code means (reconnect or
// not, the least delay, the words) is codes.js's closeCodes.
export const CloseReplaced = 4001;
export const CloseBadCredentials = 4003;
export const CloseRateExceeded = 4006;
export const CloseAccountDeleted = 4007;
export const CloseBanned = 4008;

export class Offline extends Error {
  constructor() { super("not connected"); this.name = "Offline"; }
}

export class Session {
  // hooks: onState(state, info), onLogin(identity, ack, acted), onPush(frame),
  // onStale(frame), onAuthFailed(reply), onIdentifyFailed(reply),
  // onBanned(reply, identity)
  constructor(url, hooks) {
    this.url = url;
    this.hooks = hooks;
    this.ws = null;
    this.pending = [];
    this.identity = null;
    this.stopped = true;
    this.attempt = 0;
    this.timer = null;
    this.state = "idle";
    this.loggedIn = false;
    this.strikes = 0;     // 4006 closes in a row
    this.holdUntil = 0;   // no reconnect before this time (after 4006)
    this.onlineSince = 0;
    addEventListener("online", () => {
      if (!this.stopped && !this.ws && Date.now() >= this.holdUntil) this.open();
    });
    // A page left for another keeps its socket open in the back/forward
    // cache, where it reads nothing: the server would count it live (no
    // push notification) and write chat lines into it that no one sees.
    // Close it, and reconnect if the page is shown again.
    addEventListener("pagehide", (ev) => {
      if (!ev.persisted || !this.ws) return;
      const ws = this.ws;
      this.ws = null;
      this.loggedIn = false;
      clearTimeout(this.timer);
      this.failPending();
      ws.close(1000);
    });
    addEventListener("pageshow", (ev) => {
      if (ev.persisted && !this.stopped && !this.ws) {
        this.attempt = 0;
        this.open();
      }
    });
  }

  // start connects as identity: {register: true} or {user, password}.
  // acted says a person asked for it (rather than the app, with what it had
  // stored); it is passed to the first onLogin only, not to the logins of
  // later reconnects.
  start(identity, acted = false) {
    this.stop();
    this.identity = identity;
    this.acted = acted;
    this.stopped = false;
    this.attempt = 0;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    this.loggedIn = false;
    this.failPending();
    if (ws) ws.close(1000);
    this.setState("idle");
  }

  reconnectNow() {
    if (this.stopped || this.ws || Date.now() < this.holdUntil) return;
    this.attempt = 0;
    this.open();
  }

  setState(state, info = {}) {
    this.state = state;
    this.hooks.onState(state, info);
  }

  open() {
    clearTimeout(this.timer);
    this.setState("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      const id = this.identity;
      const req = id.register ? { cmd: "register" }
        : { cmd: "login", user: id.user, password: id.password };
      // docs/protocol.md "Notices": this app shows them, so the server may
      // push them (an older server ignores the member).
      req.notices = true;
      // docs/protocol.md "Registration": an operator may require a token.
      if (id.register && id.token) req.signup_token = id.token;
      this.request(req, true).then((r) => this.identified(r, ws), () => {});
    };
    ws.onmessage = (ev) => this.frame(ev.data);
    ws.onclose = (ev) => this.closed(ev, ws);
    ws.onerror = () => {}; // a close event always follows
  }

  identified(r, ws) {
    if (ws !== this.ws) return;
    if (r.result === "ok") {
      if (this.identity.register) {
        const user = safe.userId(r.id);
        if (user == null || typeof r.password !== "string" || !/^[\x21-\x7e]{1,200}$/.test(r.password)) {
          this.hooks.onIdentifyFailed({ reason: "bad_request", detail: "the server's reply to register had no usable id" });
          this.stopped = true;
          ws.close(1000);
          return;
        }
        this.identity = { user, password: r.password };
      }
      this.attempt = 0;
      this.loggedIn = true;
      this.onlineSince = Date.now();
      this.setState("online");
      const acted = this.acted;
      this.acted = false;
      this.hooks.onLogin(this.identity, r, acted);
      return;
    }
    if (r.reason === "bad_credentials") {
      this.stopped = true;
      this.hooks.onAuthFailed(r);
      return; // the server closes with 4003
    }
    // A banned account (docs/protocol.md, close 4008): trying again would
    // only be refused again, so the session stops for good.
    if (r.reason === "banned") {
      this.stopped = true;
      this.hooks.onBanned(r, this.identity);
      return; // the server closes with 4008
    }
    // A refused register is not tried again on its own (a token may be
    // needed, or the day's budget is spent): the person decides.
    if (this.identity.register) this.stopped = true;
    this.hooks.onIdentifyFailed(r, this.identity);
    ws.close(1000);
  }

  closed(ev, ws) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.loggedIn = false;
    this.failPending();
    const info = closeInfo(ev.code);
    if (ev.code === CloseReplaced) {
      this.stopped = true;
      this.setState("replaced", { code: ev.code, words: info.words });
      return;
    }
    if (!info.reconnect || this.stopped) {
      this.stopped = true;
      this.setState("idle", { code: ev.code });
      return;
    }
    // A connection that stayed up a minute ends a run of 4006 closes.
    if (this.onlineSince && Date.now() - this.onlineSince > 60000) this.strikes = 0;
    this.onlineSince = 0;
    if (ev.code === CloseRateExceeded) this.strikes++;
    this.scheduleReconnect(ev.code);
  }

  scheduleReconnect(code) {
    const delay = reconnectDelay(code, this.attempt, this.strikes, Math.random());
    this.attempt++;
    this.holdUntil = closeInfo(code).delay > 0 ? Date.now() + delay : 0;
    this.setState("offline", { retryIn: delay, code, words: closeInfo(code).words, held: this.holdUntil > 0 });
    this.timer = setTimeout(() => this.open(), delay);
  }

  failPending() {
    const p = this.pending;
    this.pending = [];
    for (const r of p) r.reject(new Offline());
  }

  // send writes a request that has no reply (presence). It reports whether
  // the frame went out.
  send(obj) {
    if (!this.loggedIn || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(stringify(obj));
    return true;
  }

  // request writes obj and resolves with its reply (ok or fail). It rejects
  // with Offline when there is no logged-in connection or it ends first.
  request(obj, identify = false) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || (!identify && !this.loggedIn)) {
      return Promise.reject(new Offline());
    }
    return new Promise((resolve, reject) => {
      this.pending.push({ kind: obj.cmd, resolve, reject });
      ws.send(stringify(obj));
    });
  }

  frame(text) {
    let f;
    try {
      f = parse(text);
    } catch {
      return;
    }
    if (!f || typeof f !== "object" || Array.isArray(f) || typeof f.cmd !== "string") return;
    let kind = Object.hasOwn(ackKind, f.cmd) ? ackKind[f.cmd] : undefined;
    if (f.cmd === "error") kind = "*";
    if (f.cmd === "message" && (f.type === "server_ack" || (f.result === "fail" && !("msg_id" in f)))) {
      kind = "message";
    }
    if (!kind) {
      this.hooks.onPush(f);
      return;
    }
    // An ack other than server_ack that carries a msg_id came out of the
    // offline queue: it answers a request of an earlier connection.
    if (kind !== "message" && kind !== "*" && "msg_id" in f) {
      this.hooks.onStale(f);
      return;
    }
    const i = kind === "*" ? 0 : this.pending.findIndex((p) => p.kind === kind);
    if (i < 0 || i >= this.pending.length) {
      this.hooks.onStale(f);
      return;
    }
    const [p] = this.pending.splice(i, 1);
    p.resolve(f);
  }
}
