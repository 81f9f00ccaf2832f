package roles_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/occase/occase/broker/brokertest"
)

// Issue 15, end to end over real WebSockets and HTTP on two nodes: a seller
// on node 1 edits a listing and marks it sold; a buyer on node 2 who asked
// for changes sees both live, with the same id; the HTTP API of node 2
// finds the new text; another user cannot touch it.
func TestEditSeenLiveOnAnotherNode(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		n1, n2 := postsNode(t, b, 5), postsNode(t, b, 5)
		seller, buyer, other := register(t, n1.url), register(t, n2.url), register(t, n2.url)
		buyer.send(`{"cmd":"subscribe","deletions":true}`)
		buyer.expect("subscribe_ack")
		seller.send(publishFrame("[0,0,0]", "[0,0,0]"))
		id := seller.expect("publish_ack").num("id")
		if got := postIDs(t, buyer.expect("post")); got[0] != id {
			t.Fatalf("buyer got %v", got)
		}

		other.send(fmt.Sprintf(`{"cmd":"set_status","id":%d,"status":"sold"}`, id))
		if r := other.expect("set_status_ack"); r.str("result") != "fail" || r.str("reason") != "not_owner" {
			t.Fatalf("set_status by another user: %v", r)
		}
		seller.send(fmt.Sprintf(`{"cmd":"update","id":%d,"items":[{"body":"{\"title\":\"Motorbike helmet\"}","to":[[[0,0,0]],[[1,2,0]]],"range_values":[80]}]}`, id))
		if r := seller.expect("update_ack"); r.str("result") != "ok" || r.num("id") != id {
			t.Fatalf("update_ack %v", r)
		}
		live := buyer.expect("post")
		item := live["items"].([]any)[0].(map[string]any)
		if postIDs(t, live)[0] != id || item["body"] != `{"title":"Motorbike helmet"}` || item["edited"] == nil {
			t.Fatalf("buyer got %v", live)
		}
		seller.send(fmt.Sprintf(`{"cmd":"set_status","id":%d,"status":"sold"}`, id))
		seller.expect("set_status_ack")
		if item := buyer.expect("post")["items"].([]any)[0].(map[string]any); item["status"] != "sold" {
			t.Fatalf("buyer got %v", item)
		}
		seller.send(fmt.Sprintf(`{"cmd":"renew","id":%d}`, id))
		if r := seller.expect("renew_ack"); r.str("reason") != "rate_limited" {
			t.Fatalf("renew of a new post: %v", r)
		}

		resp, err := http.Get(n2.base + "/api/posts?q=helm&sort=price_asc")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var page struct{ Posts []map[string]any }
		if err := json.Unmarshal(body, &page); err != nil || len(page.Posts) != 1 || !strings.Contains(string(body), `"status":"sold"`) {
			t.Fatalf("search on node 2: %s", body)
		}
	})
}
