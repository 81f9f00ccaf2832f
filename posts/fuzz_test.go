package posts

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/occase/occase/wire"
)

// The seed corpus is under testdata/fuzz; run e.g.
//   go test -run '^$' -fuzz FuzzDecodePublish -fuzztime 45s ./posts/

// FuzzDecodePublish: any frame either fails with a *wire.Error or yields a
// post whose stored form is valid JSON that the node's own parser reads
// back with the same codes, features and ranges.
func FuzzDecodePublish(f *testing.F) {
	f.Add([]byte(`{"cmd":"publish","items":[{"body":"x","to":[[[0,1,2]],[[0,3,7]]],"features":1,"range_values":[1,-2]}]}`))
	lim := Limits{MaxBody: 256}
	lim.defaults()
	f.Fuzz(func(t *testing.T, frame []byte) {
		r, err := wire.ParseRequest(frame)
		if err != nil {
			return
		}
		d, err := decodePublish(r, &lim)
		if err != nil {
			var we *wire.Error
			if !errors.As(err, &we) || we.Reason == "" {
				t.Fatalf("error %v is not a *wire.Error with a reason", err)
			}
			return
		}
		if len(d.body) > lim.MaxBody || len(d.loc) == 0 || len(d.prod) == 0 || len(d.ranges) > lim.MaxRangeValues {
			t.Fatalf("limits not enforced: %+v", d)
		}
		js := []byte(`{"id":1,` + string(d.members("u\"1", 5)) + `}`)
		if !json.Valid(js) {
			t.Fatalf("stored form is not JSON: %s", js)
		}
		loc, errL := wire.ChannelHash(d.loc, 3)
		prod, errP := wire.ChannelHash(d.prod, 3)
		p, err := parseStored(js, 3, 3)
		if errL != nil || errP != nil {
			if err == nil {
				t.Fatalf("a code too wide for its field parsed back: %s", js)
			}
			return
		}
		if err != nil {
			t.Fatalf("own stored form does not parse back: %v: %s", err, js)
		}
		if p.Loc != loc || p.Prod != prod || p.Features != d.features || p.From != "u\"1" ||
			!slices.Equal(p.Ranges, d.ranges) {
			t.Fatalf("round trip changed the post: %+v vs %+v", p, d)
		}
	})
}

// FuzzDecodeSubscribe: any frame either fails with a *wire.Error or yields
// a filter within the limits, with sorted, duplicate-free lists and whole
// range pairs.
func FuzzDecodeSubscribe(f *testing.F) {
	f.Add([]byte(`{"cmd":"subscribe","channels":[[2097154],[6291463,1]],"any_of_features":6,"last_post_id":42,"ranges":[0,10]}`))
	lim := Limits{MaxLocations: 8, MaxProducts: 8, MaxRangeValues: 2}
	lim.defaults()
	f.Fuzz(func(t *testing.T, frame []byte) {
		r, err := wire.ParseRequest(frame)
		if err != nil {
			return
		}
		fl, err := decodeSubscribe(r, &lim)
		if err != nil {
			var we *wire.Error
			if !errors.As(err, &we) || we.Reason == "" {
				t.Fatalf("error %v is not a *wire.Error with a reason", err)
			}
			return
		}
		for _, l := range [][]uint64{fl.Locs, fl.Prods} {
			for i := 1; i < len(l); i++ {
				if l[i-1] >= l[i] {
					t.Fatalf("list not sorted and unique: %v", l)
				}
			}
		}
		if len(fl.Locs) > lim.MaxLocations || len(fl.Prods) > lim.MaxProducts ||
			len(fl.Ranges) > 2*lim.MaxRangeValues || len(fl.Ranges)%2 != 0 {
			t.Fatalf("limits not enforced: %+v", fl)
		}
		// Matching never panics, whatever the filter.
		fl.Match(&Post{ID: fl.After + 1, Ranges: []int64{1, 2, 3}, Loc: 1, Prod: 1})
	})
}
