package webapp

import (
	"context"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/occase/occase/wire"
)

// TestBrowserModules checks, in the browser, the app's channel hashes
// against the server's wire.ChannelHash and that 64-bit integers survive a
// JSON round trip exactly.
func TestBrowserModules(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	browser := startBrowser(t)
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	defer cancel()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	tctx, cancel2 := context.WithTimeout(ctx, waitFor)
	defer cancel2()
	if err := chromedp.Do(tctx, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	eval := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(tctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}
	codes := [][]uint64{{0, 1, 2}, {0, 3, 7}, {1, 1, 0}, {2097151, 2097151, 2097151}, {0, 1}, {5, 0, 0, 9}}
	for _, code := range codes {
		for _, d := range []int{1, 2, 3, 4} {
			want, err := wire.ChannelHash(code, d)
			if err != nil {
				continue
			}
			js := "[" + join(code) + "]"
			got := eval(`import("/assets/menu.js").then(m => String(m.hashCode(` + js + `, ` + strconv.Itoa(d) + `)))`)
			if got != strconv.FormatUint(want, 10) {
				t.Errorf("hashCode(%v, %d) = %s, want %d", code, d, got, want)
			}
		}
	}
	const big = `{"id":18446744073709551615,"h":9223372036854775807,"n":42,"s":"__occase_big_x__:1"}`
	got := eval(`import("/assets/json.js").then(j => j.stringify(j.parse(` + strconv.Quote(big) + `)))`)
	if got != big {
		t.Errorf("round trip: got %s, want %s", got, big)
	}
}

func join(code []uint64) string {
	s := ""
	for i, c := range code {
		if i > 0 {
			s += ","
		}
		s += strconv.FormatUint(c, 10)
	}
	return s
}
