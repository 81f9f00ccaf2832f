package webapp

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"
)

// closeTable reads docs/protocol.md's close-code table: code -> reason text.
func closeTable(t *testing.T) map[string]string {
	b, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| (\\d{4}) \\| `?([^`|]*)`? \\|").FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = m[2]
	}
	if len(out) < 10 || out["4006"] != "rate exceeded" {
		t.Fatalf("close table not found in docs/protocol.md: %v", out)
	}
	return out
}

// TestCodesModule checks codes.js, the app's one table of the server's close
// codes, reasons and image answers, against docs/protocol.md and issue 15.
func TestCodesModule(t *testing.T) {
	table, _ := json.Marshal(closeTable(t))
	jsChecks(t, []struct{ name, js string }{
		{"every close code of docs/protocol.md, with its reason text", `
const codes = await import("/assets/codes.js");
const table = ` + string(table) + `;
for (const [code, reason] of Object.entries(table)) {
  const e = codes.closeCodes[code];
  if (!e) return "close code " + code + " missing";
  if (e.reason !== reason) return code + ": reason " + S(e.reason) + ", docs say " + S(reason);
  if (typeof e.words !== "string" || !e.words) return code + ": no words";
}
return "";`},
		{"4001 and 4003 do not reconnect; 4006 waits 10 s at least, doubling", `
const codes = await import("/assets/codes.js");
if (codes.closeInfo(4001).reconnect || codes.closeInfo(4003).reconnect) return "4001/4003 reconnect";
for (const c of [1001, 1006, 1011, 4002, 4004, 4005, 4006, 4999]) if (!codes.closeInfo(c).reconnect) return c + " does not reconnect";
for (const r of [0, 0.5, 0.999]) {
  for (let attempt = 0; attempt < 6; attempt++) {
    const d1 = codes.reconnectDelay(4006, attempt, 1, r), d2 = codes.reconnectDelay(4006, attempt, 2, r), d3 = codes.reconnectDelay(4006, attempt, 3, r);
    if (d1 < 10000 || d2 < 20000 || d3 < 40000) return "4006 delays " + S([d1, d2, d3]);
  }
  const d = codes.reconnectDelay(1006, 0, 0, r);
  if (d < 375 || d > 625) return "first ordinary delay " + d;
  if (codes.reconnectDelay(1006, 20, 0, r) > 10000) return "ordinary delay not capped";
  if (codes.reconnectDelay(4006, 0, 50, r) > 6 * 60 * 1000) return "4006 delay not capped";
}
return "";`},
		{"4008 banned: no reconnect, said in words; a login refused as banned too", `
const codes = await import("/assets/codes.js");
const conn = await import("/assets/conn.js");
if (conn.CloseBanned !== 4008) return "conn.js CloseBanned " + conn.CloseBanned;
const e = codes.closeInfo(4008);
if (e.reconnect || e.delay) return "4008 reconnects: " + S(e);
if (!/banned by the moderators/.test(e.words)) return "4008 words: " + e.words;
const w = codes.reasonText({reason: "banned"}, "login");
if (!/banned by the moderators/.test(w)) return "banned: " + w;
return "";`},
		{"report refusals in words", `
const codes = await import("/assets/codes.js");
const now = Date.UTC(2026, 11, 4, 12, 0, 0);
const checks = [
  [{reason: "not_found"}, /listing is gone/],
  [{reason: "rate_limited"}, /many reports.*try again later/],
  [{reason: "rate_limited", detail: "too many reports; try again in 120 s"}, /many reports.*try again in 2 minutes/],
  [{reason: "unavailable"}, /could not be sent just now.*try again/],
  [{reason: "bad_request"}, /did not accept this report/],
];
for (const [r, want] of checks) {
  const got = codes.reasonText(r, "report", now);
  if (!want.test(got)) return S(r) + ": " + got;
}
return "";`},
		{"fail reasons in plain words; the posting limit says when", `
const codes = await import("/assets/codes.js");
const now = Date.UTC(2026, 11, 4, 12, 0, 0);
const q = codes.reasonText({reason: "quota_exceeded", detail: "10 posts per 24h0m0s; the next is possible in 5400 s"}, "publish", now);
if (!/You can post again in 1 hour 30 min \(at /.test(q)) return "user quota: " + q;
const a = codes.reasonText({reason: "quota_exceeded", detail: "50 posts per address per day; the next is possible in 120 s (at 00:00 UTC)"}, "publish", now);
if (!/from this network\. You can post again in 2 minutes/.test(a)) return "address quota: " + a;
const checks = [
  [{reason: "posts_full"}, "publish", /as many listings as it can/],
  [{reason: "under_review", detail: "a listing of yours is under review; you can publish again once a moderator has looked at it"}, "publish", /^Not published: a listing of yours is under review\. You can publish again once a moderator has looked at it/],
  [{reason: "under_review"}, undefined, /under review; you can publish again once a moderator/],
  [{reason: "queue_full", detail: "user 7 has 1000 undelivered messages"}, "chat", /too many messages waiting/],
  [{reason: "queue_full", detail: "this sender's share of user 7's queue is full"}, "chat", /many messages they have not read/],
  [{reason: "recipient_inactive"}, "chat", /not used the app for a long time/],
  [{reason: "rate_limited", detail: "too many subscribes; try again in 3 s"}, "subscribe", /Too many filter changes.*in 3 seconds/],
  [{reason: "bad_token", detail: "this signup_token has been used already"}, "register", /used already/],
  [{reason: "something_new", detail: "user 12 <b>"}, "chat", /^Something went wrong on the server\.$/],
];
for (const [r, what, want] of checks) {
  const got = codes.reasonText(r, what, now);
  if (!want.test(got)) return S(r) + ": " + got;
  if (/#\d|user \d/.test(got)) return "an id shown: " + got;
}
return "";`},
		{"image answers: 410 renews, 503 retries after Retry-After, 408 too_slow in words", `
const codes = await import("/assets/codes.js");
if (!codes.uploadAction(201, "").ok) return "201";
if (!codes.uploadAction(410, "name_expired\n").renew) return "410";
if (codes.uploadAction(503, "busy", "3").retryAfter !== 3) return "503 3";
if (codes.uploadAction(503, "busy", null).retryAfter !== 2) return "503 without Retry-After";
if (codes.uploadAction(503, "busy", "86400").retryAfter !== 30) return "503 not bounded";
if (!/too slow/.test(codes.uploadAction(408, "too_slow\n").error)) return "408 " + codes.uploadAction(408, "too_slow").error;
if (!/too large/.test(codes.uploadAction(413, "too_large").error)) return "413";
if (!/out of space/.test(codes.uploadAction(507, "insufficient_storage\n").error)) return "507";
return "";`},
		{"prices: decimals accepted, negative and absurd ones refused", `
const codes = await import("/assets/codes.js");
const ok = {"12.50": 1250, "12,5": 1250, "0": 0, "350": 35000, " 99.99 ": 9999, "100000000": 10000000000};
for (const [s, c] of Object.entries(ok)) { const r = codes.parsePrice(s); if (r.cents !== c) return S(s) + " -> " + S(r); }
const bad = {"": /Please give a price/, "-500": /cannot be negative/, "12345678901234567890": /too high/, "100000001": /too high/,
  "abc": /as a number/, "1e5": /as a number/, "12.505": /as a number/, "Infinity": /as a number/};
for (const [s, want] of Object.entries(bad)) { const r = codes.parsePrice(s); if (!r.error || !want.test(r.error)) return S(s) + " -> " + S(r); }
return "";`},
	})
}
