package webapp

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"
)

// My listings comes from the server (docs/protocol.md "My listings"),
// against the real binary, at phone and desktop sizes. A seller logs in on
// a fresh browser profile with the login form and sees the listing they
// published elsewhere; they browse with a price filter that excludes
// their listings. Then, from another device, they publish a second
// listing (which two users report, so it is hidden pending review) and
// delete the first. Back on the browser (Take over: a new login), My
// listings has the new listing, marked "Under review", and not the deleted
// one, though Browse's subscription brought neither; Browse shows neither;
// the new listing can be marked sold from there.
func TestBrowserMyListingsFromServer(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	chromiumPath(t)
	s := newServeBinaryWith(t, "--auto-hide-reports", "2", "--auto-hide-min-age", "0s")
	shots := shotDir(t, "my-listings")
	n := 0
	browser := startBrowser(t)
	publish := func(p *protoClient, title string, price int) string {
		t.Helper()
		return fmt.Sprint(p.mustOK(fmt.Sprintf(`{"cmd":"publish","items":[{"body":"{\"title\":\"%s\",\"msg\":\"x\",\"price\":%d}","to":[[[0,0,0]],[[0,0,0]]],"features":0,"range_values":[%d,2020,0]}]}`,
			title, price, price))["id"])
	}
	for _, size := range []struct {
		name string
		w, h int64
	}{{"phone", 390, 844}, {"desktop", 1280, 800}} {
		t.Run(size.name, func(t *testing.T) {
			seller := dialProto(t, s.URL())
			reg := seller.mustOK(`{"cmd":"register"}`)
			id, pw := fmt.Sprint(reg["id"]), fmt.Sprint(reg["password"])
			bike := publish(seller, "Blue city bike "+size.name, 120)
			seller.c.CloseNow()
			other := dialProto(t, s.URL())
			other.mustOK(`{"cmd":"register"}`)
			car := publish(other, "Red car "+size.name, 9000)

			b := newTab(t, browser, "seller-"+size.name, size.w, size.h, shots, &n)
			b.do(chromedp.Navigate(s.URL() + "/"))
			b.click("#signup-btn")
			b.typeInto("#login-id", id)
			b.typeInto("#login-password", pw)
			b.click("#login-btn")
			b.state("online")
			mineCard := func(post string) string {
				return `document.querySelector('#mine-list [data-post-id="` + post + `"]') !== null`
			}
			inBrowse := func(post string) string {
				return `document.querySelector('#post-list [data-post-id="` + post + `"]') !== null`
			}
			b.click("#tab-mine")
			b.wait("the bike in My listings on a fresh profile", mineCard(bike))

			// Browse only what costs 500 or more: the seller's listings are out.
			b.click("#tab-browse")
			b.eval(`(() => { document.getElementById("filter-price-min").value = "500"; return "" })()`)
			b.click("#filter-apply")
			b.wait("the car in Browse", inBrowse(car))
			b.wait("the bike out of Browse", "!("+inBrowse(bike)+")")

			// Another device: a new listing, hidden after two reports,
			// and the bike deleted. The browser is replaced meanwhile.
			phone := dialProto(t, s.URL())
			phone.mustOK(`{"cmd":"login","user":"` + id + `","password":"` + pw + `"}`)
			lamp := publish(phone, "Green lamp "+size.name, 150)
			phone.mustOK(`{"cmd":"delete","id":` + bike + `}`)
			phone.c.CloseNow()
			for _, reason := range []string{"scam", "spam"} {
				r := dialProto(t, s.URL())
				r.mustOK(`{"cmd":"register"}`)
				r.mustOK(fmt.Sprintf(`{"cmd":"report","id":%s,"reason":%q}`, lamp, reason))
			}
			b.state("replaced")
			b.click("#takeover-btn")
			b.state("online")
			b.click("#tab-mine")
			b.wait("the lamp in My listings, under review", `(() => {
			  const m = document.querySelector('#mine-list [data-post-id="`+lamp+`"] [data-testid=under-review]');
			  return m !== null && m.textContent.includes("Under review"); })()`)
			b.wait("the deleted bike gone from My listings", "!("+mineCard(bike)+")")
			b.wait("the summary counts one listing", `document.getElementById("mine-summary").textContent.startsWith("1 listing.")`)
			// Its only listing is the one under review: not "1 listing. One is ...".
			b.wait("the summary says it is under review", `document.getElementById("mine-summary").textContent === "1 listing. It is under review: you can publish again once a moderator has looked at it."`)
			b.shot("my-listings")
			// A listing Browse never brought can be marked sold from here.
			b.click(`#mine-list [data-post-id="` + lamp + `"] [data-testid=mark-sold]`)
			b.wait("the lamp marked sold, still under review", `(() => {
			  const c = document.querySelector('#mine-list [data-post-id="`+lamp+`"]');
			  const s = c && c.querySelector('[data-testid=status-badge]');
			  return s !== null && s.textContent.toLowerCase().includes("sold") && c.querySelector('[data-testid=under-review]') !== null; })()`)
			if b.ok(inBrowse(lamp)) || b.ok(inBrowse(bike)) {
				t.Error("Browse shows a listing its filter excludes")
			}
			b.noConsoleErrors("my listings")
		})
	}
}
