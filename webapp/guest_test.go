package webapp

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserGuestAndLoadMore is part of issue 15: a first-time visitor
// browses without an account and pages through every listing; writing to a
// seller asks for an account and then opens that chat; a member pages
// beyond the 300 newest posts to the oldest one.
func TestBrowserGuestAndLoadMore(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := newFakeServer(t)
	const total = 350
	for i := 1; i <= total; i++ {
		body, _ := json.Marshal(map[string]any{"title": fmt.Sprintf("Listing %d", i), "nick": "Seller", "price": i})
		p, _ := json.Marshal(map[string]any{"body": string(body), "features": 1, "range_values": []int{i, 2020, 0}})
		srv.seed(t, "900", string(p[:len(p)-1])+`,"to":[[[0,0,0]],[[0,0,0]]]}`)
	}
	srv.mu.Lock()
	srv.users["900"] = "seller-password"
	srv.mu.Unlock()
	shots := artifactDir(t, "guest")
	n := 0
	g := newTab(t, startBrowser(t), "G", 390, 844, shots, &n)
	cards := `document.querySelectorAll("#post-list [data-testid=post-card]").length`
	g.do(chromedp.Navigate(srv.URL() + "/"))
	g.wait("the newest page", cards+` === 20 && `+hasText("#post-list [data-testid=post-title]", "Listing 350"))
	g.noConsoleErrors("on a guest's first load")
	if got := g.eval(`document.getElementById("account-view").hidden ? "browse" : "sign-up"`); got != "browse" {
		t.Fatalf("a guest sees %s first", got)
	}
	g.wait("photos are lazy", `[...document.querySelectorAll("#post-list img")].every(i => i.loading === "lazy")`)
	g.click("#load-more")
	g.wait("the second page", cards+` === 40 && `+hasText("#post-list [data-testid=post-title]", "Listing 311"))
	g.shot("guest-page-2")

	// Sell asks for an account, saying why.
	g.click("#tab-publish")
	g.wait("why", hasText("#account-why", "To sell something"))
	g.click("#tab-browse")
	g.wait("back to the listings", `document.getElementById("account-view").hidden`)

	// Message seller: sign up, then the chat with that seller opens.
	g.click(`#post-list [data-post-id="350"] [data-testid=chat-with-author]`)
	g.wait("why", hasText("#account-why", "To write to the seller"))
	g.shot("sign-up-to-write")
	g.click("#register-btn")
	g.state("online")
	g.wait("the chat with the seller", `!document.getElementById("chat-view").hidden && `+hasText("#chat-title", "Listing 350"))

	// As a member: the subscription brings the newest 300 (catch-up pages
	// of 100); Load more pages to the oldest.
	g.click("#tab-browse")
	g.wait("the newest 300 live", cards+` === 300`)
	for i := 0; i < 10 && g.eval(`document.getElementById("load-more").hidden ? "done" : ""`) == ""; i++ {
		before := g.eval(`String(` + cards + `)`)
		g.click("#load-more")
		g.wait("a page more", `String(`+cards+`) !== `+js(before)+` || document.getElementById("load-more").hidden`)
	}
	g.wait("every listing", cards+fmt.Sprintf(` === %d`, total)+` && `+hasText("#post-list [data-testid=post-title]", "Listing 1"))
	g.wait("said so", hasText("#more-status", "That is every listing"))
	g.do(chromedp.Reload())
	g.state("online")
	g.wait("the older pages kept after a reload", cards+fmt.Sprintf(` === %d`, total))
	g.shot("every-listing")
}
