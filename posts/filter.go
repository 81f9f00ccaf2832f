package posts

import (
	"slices"

	"github.com/occase/occase/wire"
)

// Filter is what a subscription (or an HTTP query) asks for. Empty lists
// mean "any". Locs and Prods are sorted and free of duplicates.
type Filter struct {
	Locs     []uint64
	Prods    []uint64
	Features uint64  // any_of_features; 0 = any
	Ranges   []int64 // min0,max0,min1,max1...
	After    uint64  // last_post_id: only ids above it
	// Deletions asks for post_deleted frames (PROTOCOL.md 1.1 section 4),
	// and for the new versions of edited posts.
	Deletions bool
	// Search is the text query of an HTTP read; nil: none.
	Search *Search
	// Status keeps, in an HTTP read, only the posts of these statuses
	// (statusAvailable, statusSold, statusReserved bits); 0: any.
	Status uint8
}

// Match tells whether p passes every filter of PROTOCOL.md section 4: product
// and location in their lists (or the list empty), a feature bit in common
// (or no feature filter), and each range value the post has within its pair.
func (f *Filter) Match(p *Post) bool {
	if p.ID <= f.After {
		return false
	}
	return f.matchProd(p) && f.matchRest(p)
}

func (f *Filter) matchProd(p *Post) bool {
	return len(f.Prods) == 0 || contains(f.Prods, p.Prod)
}

// matchRest is Match without the product test, for the fan-out, which has
// already found the subscription through the post's product.
func (f *Filter) matchRest(p *Post) bool {
	if f.Features != 0 && f.Features&p.Features == 0 {
		return false
	}
	if len(f.Locs) > 0 && !contains(f.Locs, p.Loc) {
		return false
	}
	for i := 0; i+1 < len(f.Ranges) && i/2 < len(p.Ranges); i += 2 {
		v := p.Ranges[i/2]
		if v < f.Ranges[i] || v > f.Ranges[i+1] {
			return false
		}
	}
	return true
}

func contains(sorted []uint64, v uint64) bool {
	// Lists are short enough that a linear scan wins below ~16 entries.
	if len(sorted) < 16 {
		for _, x := range sorted {
			if x == v {
				return true
			}
		}
		return false
	}
	_, ok := slices.BinarySearch(sorted, v)
	return ok
}

func normalise(l []uint64) []uint64 {
	if len(l) == 0 {
		return nil
	}
	slices.Sort(l)
	return slices.Compact(l)
}

// decodeSubscribe reads a subscribe request. Every field is optional: a bare
// {"cmd":"subscribe"} asks for everything new from id 0 on.
func decodeSubscribe(req *wire.Request, lim *Limits) (*Filter, error) {
	f := &Filter{}
	if raw := req.Get("channels"); raw != nil && string(raw) != "null" {
		var lists [][]byte
		ok := eachElem(raw, func(v []byte) bool { lists = append(lists, v); return len(lists) <= 2 || isNumber(v) })
		var err error
		switch {
		case ok && (len(lists) == 0 || isNumber(lists[0])):
			// The original app (7351342) sends a flat list of location
			// hashes in "channels" and its product hashes in "filters".
			// Accepting that shape keeps it online; refusing it would
			// close it after every login.
			if f.Locs, err = decodeU64s(raw, "channels", lim.MaxLocations); err != nil {
				return nil, err
			}
			if fr := req.Get("filters"); fr != nil && string(fr) != "null" {
				if f.Prods, err = decodeU64s(fr, "filters", lim.MaxProducts); err != nil {
					return nil, err
				}
			}
		case !ok && len(lists) > 2:
			return nil, invalid(`"channels" must be [[<location hashes>],[<product hashes>]]`)
		case !ok:
			return nil, malformed(`"channels" must be [[<location hashes>],[<product hashes>]]`)
		case len(lists) != 2:
			return nil, invalid(`"channels" must be [[<location hashes>],[<product hashes>]]`)
		default:
			if f.Locs, err = decodeU64s(lists[0], "channels[0]", lim.MaxLocations); err != nil {
				return nil, err
			}
			if f.Prods, err = decodeU64s(lists[1], "channels[1]", lim.MaxProducts); err != nil {
				return nil, err
			}
		}
		f.Locs, f.Prods = normalise(f.Locs), normalise(f.Prods)
	}
	var err error
	if f.Features, err = optU64(req, "any_of_features"); err != nil {
		return nil, err
	}
	if f.After, err = optU64(req, "last_post_id"); err != nil {
		return nil, err
	}
	if raw := req.Get("deletions"); raw != nil && string(raw) != "null" {
		var ok bool
		if f.Deletions, ok = wire.Bool(raw); !ok {
			return nil, malformed(`"deletions" must be true or false`)
		}
	}
	if raw := req.Get("ranges"); raw != nil && string(raw) != "null" {
		if f.Ranges, err = decodeInts(raw, "ranges", 2*lim.MaxRangeValues); err != nil {
			return nil, err
		}
		if len(f.Ranges)%2 != 0 {
			return nil, invalid(`"ranges" must hold min,max pairs`)
		}
		if len(f.Ranges) == 0 {
			f.Ranges = nil
		}
	}
	return f, nil
}

func optU64(req *wire.Request, key string) (uint64, error) {
	raw := req.Get(key)
	if raw == nil || string(raw) == "null" {
		return 0, nil
	}
	v, ok := wire.Uint64(raw)
	if !ok {
		if isNumber(raw) {
			return 0, invalid("%q must be an unsigned 64-bit integer", key)
		}
		return 0, malformed("%q must be a number", key)
	}
	return v, nil
}
