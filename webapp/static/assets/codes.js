// What the server's codes mean to the app, in one place: the WebSocket close
// codes (docs/protocol.md, "Close codes"), the fail reasons of replies, and
// the image server's HTTP answers (docs/protocol.md, "img role, HTTP").
// Pure data and functions: module-tested (checks_test.go).

// closeCodes: code -> {reason, reconnect, delay, words}. reason is the close
// reason text the server sends; reconnect says whether the app reopens on
// its own; delay is the least wait before that (ms; 0: the usual backoff of
// 0.5 s, 1 s, 2 s ... 8 s); words is what the person reads.
export const closeCodes = {
  1000: { reason: "", reconnect: true, delay: 0, words: "The connection was closed." },
  1001: { reason: "server shutting down", reconnect: true, delay: 0, words: "The server is restarting." },
  1003: { reason: "text frames only", reconnect: true, delay: 0, words: "The server did not understand the app." },
  1006: { reason: "", reconnect: true, delay: 0, words: "Server unreachable." },
  1007: { reason: "invalid JSON", reconnect: true, delay: 0, words: "The server did not understand the app." },
  1008: { reason: "bad request", reconnect: true, delay: 0, words: "The server did not understand the app." },
  1009: { reason: "", reconnect: true, delay: 0, words: "Something the app sent was too large." },
  1011: { reason: "internal error", reconnect: true, delay: 0, words: "The server had a problem." },
  4001: { reason: "replaced", reconnect: false, delay: 0, words: "You are logged in from another tab or device; this one is paused." },
  4002: { reason: "login timeout", reconnect: true, delay: 0, words: "Logging in took too long." },
  4003: { reason: "bad credentials", reconnect: false, delay: 0, words: "Wrong user id or password." },
  4004: { reason: "send queue full", reconnect: true, delay: 0, words: "The connection was too slow to keep up." },
  4005: { reason: "idle timeout", reconnect: true, delay: 0, words: "The connection went quiet." },
  // At least --abuse-window (10 s), doubling on each 4006 in a row.
  4006: { reason: "rate exceeded", reconnect: true, delay: 10000, words: "The app sent too much too fast, so the server paused it." },
  4007: { reason: "account deleted", reconnect: false, delay: 0, words: "This account was deleted." },
  4008: { reason: "banned", reconnect: false, delay: 0, words: "This account was banned by the moderators." },
};

const unknownClose = { reason: "", reconnect: true, delay: 0, words: "Server unreachable." };

// closeInfo is the entry for a close code; an unknown code reconnects with
// the usual backoff.
export function closeInfo(code) {
  return Object.hasOwn(closeCodes, code) ? closeCodes[code] : unknownClose;
}

const MAX_DELAY = 8000;
const MAX_ABUSE_DELAY = 5 * 60 * 1000;

// reconnectDelay is the wait before reconnect attempt number `attempt`
// (0 first) after a close with `code`; strikes counts the 4006 closes in a
// row (1 for the first). rand is in [0, 1) and spreads the waits ±25 %,
// never below the code's least delay.
export function reconnectDelay(code, attempt, strikes, rand) {
  const info = closeInfo(code);
  const jitter = 0.75 + rand * 0.5;
  if (info.delay > 0) {
    const least = Math.min(MAX_ABUSE_DELAY, info.delay * 2 ** Math.max(0, strikes - 1));
    return Math.min(MAX_ABUSE_DELAY, Math.round(least * (1 + rand * 0.25)));
  }
  return Math.round(Math.min(MAX_DELAY, 500 * 2 ** attempt) * jitter);
}

// secondsIn reads "in N s" from a server detail ("the next is possible in
// 3600 s (at 00:00 UTC)", "try again in 2 s"), or returns undefined.
export function secondsIn(detail) {
  const m = /\bin (\d{1,9}) s\b/.exec(typeof detail === "string" ? detail : "");
  return m ? Number(m[1]) : undefined;
}

// whenText says a time `secs` seconds from now in words: "in 2 minutes
// (at 14:05)", "in 3 hours (at 00:00)".
export function whenText(secs, now = Date.now()) {
  const at = new Date(now + secs * 1000);
  const clock = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  let span;
  if (secs < 60) span = `${Math.max(1, Math.round(secs))} second${Math.round(secs) === 1 ? "" : "s"}`;
  else if (secs < 3600) { const m = Math.ceil(secs / 60); span = `${m} minute${m === 1 ? "" : "s"}`; }
  else {
    const hrs = Math.floor(secs / 3600);
    const mins = Math.ceil((secs % 3600) / 60);
    span = `${hrs} hour${hrs === 1 ? "" : "s"}${mins ? ` ${mins} min` : ""}`;
  }
  const day = at.toDateString() === new Date(now).toDateString() ? "" : ` on ${at.toLocaleDateString()}`;
  return `in ${span} (at ${clock}${day})`;
}

export const reasonWords = {
  quota_exceeded: "You have reached your posting limit for now.",
  rate_limited: "That was too many requests in a short time. Please wait a moment and try again.",
  too_large: "That is too large for the server.",
  not_found: "That no longer exists.",
  not_owner: "You can only delete your own posts.",
  bad_credentials: "Wrong user id or password.",
  unavailable: "The server cannot do that right now (it may be restarting, or not offer it). Please try again later.",
  bad_request: "The server could not understand the request.",
  not_logged_in: "You are not logged in.",
  posts_full: "The server holds as many listings as it can right now. Please try again later.",
  queue_full: "Not delivered: the other person has too many messages waiting. Send it again later.",
  recipient_inactive: "Not delivered: this person has not used the app for a long time. Send it again once they are back.",
  bad_token: "This server needs a sign-up token to create an account.",
  blocked: "Not delivered: this person is not receiving your messages.",
  too_many_blocks: "You have blocked as many people as you can. Unblock someone first.",
  banned: "This account was banned by the moderators.",
  under_review: "A listing of yours is under review; you can publish again once a moderator has looked at it.",
};

// reasonText is a failed reply in words. what is the request's kind:
// "chat", "publish", "delete", "subscribe", "register" or undefined.
export function reasonText(r, what, now = Date.now()) {
  const reason = r && typeof r.reason === "string" ? r.reason : "";
  const detail = r && typeof r.detail === "string" ? r.detail.slice(0, 300) : "";
  const secs = secondsIn(detail);
  if (what === "chat" && reason === "not_found") return "This person's account does not exist any more.";
  if (what === "chat" && reason === "too_large") return "The message is too long.";
  if (what === "chat" && reason === "queue_full" && /share/.test(detail)) {
    return "Not delivered: you have sent this person many messages they have not read yet. Send it again later.";
  }
  if (what === "delete" && reason === "not_found") return "That post was already deleted.";
  if (what === "delete_account" && reason === "bad_credentials") {
    return "The server did not accept this browser's password for the account; nothing was deleted. Log out and in again, then retry.";
  }
  if (what === "delete_account" && reason === "rate_limited") return "Too many attempts in a short time. Please wait a minute and try again.";
  if (what === "delete_account" && reason === "unavailable") return "The account could not be deleted just now; nothing you still see was lost. Please try again.";
  // Reporting a listing (docs/protocol.md, report).
  if (what === "report" && reason === "not_found") return "This listing is gone: it was removed or has expired, so there is nothing left to report.";
  if (what === "report" && reason === "rate_limited") {
    return `You have sent many reports in a short time. Please try again ${secs !== undefined ? whenText(secs, now) : "later"}.`;
  }
  if (what === "report" && reason === "unavailable") return "The report could not be sent just now. Please try again in a moment.";
  if (what === "report" && reason === "bad_request") return "The server did not accept this report. (Your own listings cannot be reported.)";
  // Issue 15: a seller's changes (docs/protocol.md "Editing a listing").
  const change = what === "update" || what === "set_status" || what === "renew";
  if (change && reason === "not_found") return "This listing does not exist any more (deleted or expired).";
  if (change && reason === "rate_limited") {
    return `You changed your listings many times in a short time. You can change them again ${secs !== undefined ? whenText(secs, now) : "in a moment"}.`;
  }
  if (what === "update" && reason === "too_large") return "The listing is too long. Please shorten the description.";
  if (what === "publish" && reason === "too_large") return "The post is too long. Please shorten the description.";
  // docs/protocol.md "Publishing while under review": the seller waits
  // for a moderator; retrying will not help, so no "try again".
  if (what === "publish" && reason === "under_review") {
    return "Not published: a listing of yours is under review. You can publish again once a moderator has looked at it (My listings shows it marked “Under review”, unless you deleted it).";
  }
  if (reason === "quota_exceeded") {
    const perAddress = /address/.test(detail) ? " from this network" : "";
    return secs !== undefined
      ? `You have reached the posting limit${perAddress}. You can post again ${whenText(secs, now)}.`
      : `You have reached the posting limit${perAddress}. Please try again later.`;
  }
  if (reason === "rate_limited" && what === "subscribe") {
    return `Too many filter changes in a short time; new listings will follow ${secs !== undefined ? whenText(secs, now) : "in a moment"}.`;
  }
  if (reason === "rate_limited" && what === "register" && secs !== undefined) {
    return `Too many accounts were made from this network today. You can make one again ${whenText(secs, now)}.`;
  }
  if (reason === "bad_token" && what === "register" && /used/.test(detail)) {
    return "This sign-up token was used already. Please get a new one.";
  }
  if (reason === "bad_token" && what === "register" && detail && !/only with/.test(detail)) {
    return "This sign-up token was not accepted (it may be mistyped or expired). Please check it or get a new one.";
  }
  if (Object.hasOwn(reasonWords, reason)) return reasonWords[reason];
  return "Something went wrong on the server.";
}

// uploadAction says what to do with an image server answer (docs/protocol.md
// "img role, HTTP"): {ok}, {renew} (410 name_expired: ask filenames again
// and retry once), {retryAfter: seconds} (503: wait and retry, bounded by
// the caller), or {error: words}.
export function uploadAction(status, body, retryAfter) {
  const reason = typeof body === "string" ? body.trim().split(/\s/)[0] : "";
  if (status === 200 || status === 201) return { ok: true };
  if (status === 410) return { renew: true };
  // 409 exists: the name is taken, perhaps by someone else's picture; never
  // publish it, ask for fresh names and upload again (docs/protocol.md §5).
  if (status === 409) return { renew: true, conflict: true };
  if (status === 503) {
    const s = /^\d{1,6}$/.test(String(retryAfter ?? "").trim()) ? Number(retryAfter) : NaN;
    return { retryAfter: Number.isFinite(s) ? Math.min(30, Math.max(1, s)) : 2 };
  }
  switch (status) {
    case 0: return { error: "Could not reach the image server. Check your connection and try again." };
    case 408: return reason === "too_slow"
      ? { error: "The connection is too slow to upload this photo. Try again on a better connection, or with fewer photos." }
      : { error: "The photo upload took too long. Try again on a better connection." };
    case 413: return { error: "A photo is too large for the server. Please choose a smaller one." };
    // 507 insufficient_storage: the image server's disk is nearly full; not
    // this person's doing, and not cured by retrying at once.
    case 507: return { error: "The image server is out of space and takes no photos right now. Please try again later." };
    case 415: return { error: "The server did not accept a photo: it is not a JPEG, PNG or WebP image." };
    case 403: return { error: "The photo upload was refused (its name was not signed by the server). Please publish again." };
    default: return { error: `The photo upload failed (HTTP ${status}).` };
  }
}

// priceCents checks a price typed by a person: "12", "12.50", "12,5".
// It returns {cents} or {error: words}.
export const MAX_PRICE = 100000000; // €100 million
export function parsePrice(s) {
  s = String(s ?? "").trim().replace(/\s/g, "");
  if (s === "") return { error: "Please give a price (0 to give it away)." };
  if (/^-/.test(s)) return { error: "The price cannot be negative." };
  const m = /^(\d+)(?:[.,](\d{1,2}))?$/.exec(s);
  if (!m) return { error: "Write the price as a number, like 120 or 12.50." };
  if (m[1].length > 9 || Number(m[1]) > MAX_PRICE) {
    return { error: `That price is too high: at most €${MAX_PRICE.toLocaleString("en")}.` };
  }
  const cents = Number(m[1]) * 100 + Number((m[2] || "").padEnd(2, "0"));
  return { cents, value: cents / 100 };
}

// renewFrom reads when a renewal becomes possible from a renew_ack
// rate_limited detail ("... post 18 from 1777171200 (in 604800 s)"): Unix
// seconds, or undefined.
export function renewFrom(detail) {
  const m = /\bfrom (\d{9,12})\b/.exec(typeof detail === "string" ? detail : "");
  if (m) return Number(m[1]);
  const s = secondsIn(detail);
  return s === undefined ? undefined : Math.floor(Date.now() / 1000) + s;
}
