package posts

import (
	"encoding/json"
	"strings"
	"testing"
)

// The photo paths of a stored post's body that get a review token
// (hidden.go "The author's photos of a hidden post").
func TestBodyPhotos(t *testing.T) {
	d := strings.Repeat("a", 32)
	post := func(body string) []byte {
		b, _ := json.Marshal(map[string]any{"id": 1, "from": "7", "body": body})
		return b
	}
	tests := []struct {
		name string
		js   []byte
		want []string
	}{
		{"paths in order, others skipped", post(`{"images":["` + d + `/a.jpg",7,"junk","../x.jpg","` + d + `/b.webp"]}`), []string{d + "/a.jpg", d + "/b.webp"}},
		{"at most four", post(`{"images":["` + d + `/1.jpg","` + d + `/2.jpg","` + d + `/3.jpg","` + d + `/4.jpg","` + d + `/5.jpg"]}`),
			[]string{d + "/1.jpg", d + "/2.jpg", d + "/3.jpg", d + "/4.jpg"}},
		{"a short digest is a path (no token)", post(`{"images":["abcdef12/x.png"]}`), []string{"abcdef12/x.png"}},
		{"no images", post(`{"title":"x"}`), nil},
		{"images not an array", post(`{"images":"` + d + `/a.jpg"}`), nil},
		{"another case is another member", post(`{"IMAGES":["` + d + `/a.jpg"]}`), nil},
		{"a body that is no object", post(`["` + d + `/a.jpg"]`), nil},
		{"not JSON", []byte(`{"body":`), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := bodyPhotos(tc.js); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("bodyPhotos = %q, want %q", got, tc.want)
			}
		})
	}
}

// The author's copy: under_review, then images_review with a token per
// photo path ("" for a short digest); no reviewer or no photo: no member.
func TestAppendReview(t *testing.T) {
	d := strings.Repeat("b", 32)
	body, _ := json.Marshal(`{"images":["` + d + `/a.jpg","abcdef12/x.png"]}`)
	js := []byte(`{"id":1,"from":"7","body":` + string(body) + `}`)
	s := &Service{}
	if got := string(s.appendReview(nil, js)); !strings.HasSuffix(got, `,"under_review":true}`) || strings.Contains(got, "images_review") {
		t.Fatalf("no reviewer: %s", got)
	}
	s.SetReviewer(func(digest string) string { return "9." + digest })
	var p struct {
		UnderReview  bool     `json:"under_review"`
		ImagesReview []string `json:"images_review"`
	}
	got := s.appendReview([]byte("x"), js)
	if err := json.Unmarshal(got[1:], &p); err != nil || got[0] != 'x' {
		t.Fatalf("%s: %v", got, err)
	}
	if !p.UnderReview || len(p.ImagesReview) != 2 || p.ImagesReview[0] != "9."+d || p.ImagesReview[1] != "" {
		t.Fatalf("%s", got)
	}
	noPhoto := []byte(`{"id":2,"from":"7","body":"{}"}`)
	if got := string(s.appendReview(nil, noPhoto)); got != `{"id":2,"from":"7","body":"{}","under_review":true}` {
		t.Fatalf("no photo: %s", got)
	}
	s.SetReviewer(nil)
	if got := string(s.appendReview(nil, js)); strings.Contains(got, "images_review") {
		t.Fatalf("reviewer unset: %s", got)
	}
}
