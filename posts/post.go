package posts

import (
	"errors"
	"strconv"

	"github.com/occase/occase/wire"
)

// Post is one live post as a node keeps it: the fields matching needs, and
// the post's JSON exactly as stored in Redis and delivered to apps, shared by
// every frame that carries it.
type Post struct {
	ID       uint64
	Date     int64 // Unix seconds
	Loc      uint64
	Prod     uint64
	Features uint64
	From     string
	Ranges   []int64
	JSON     []byte
	// Renewed is the date (Unix s) of the post's last renewal, 0 when
	// none: the post expires Expiry after the later of Date and Renewed.
	Renewed int64
	ins     uint64 // the index's insert count (index.gen) that added it
	// words are the post's indexed words, sorted (search.go).
	words []string
	// status is the post's "status" member as a bit: statusAvailable
	// (none), statusSold or statusReserved.
	status uint8
}

const (
	statusAvailable uint8 = 1 << iota
	statusSold
	statusReserved
)

func statusBit(s string) uint8 {
	switch s {
	case "available":
		return statusAvailable
	case "sold":
		return statusSold
	case "reserved":
		return statusReserved
	}
	return 0
}

// expired tells whether p's expiry clock (its date, or its last renewal)
// is at or before cutoff.
func (p *Post) expired(cutoff int64) bool {
	return max(p.Date, p.Renewed) <= cutoff
}

// Limits bound what a client may send. Zero fields take the defaults.
type Limits struct {
	MaxBody        int // bytes of the body string as sent (JSON-escaped); default 16 KiB
	MaxCodeLen     int // components of a code; default 16
	MaxRangeValues int // range_values of a post, and range pairs of a filter; default 8
	MaxLocations   int // location hashes in one subscription; default 256
	MaxProducts    int // product hashes in one subscription; default 1024
}

func (l *Limits) defaults() {
	if l.MaxBody <= 0 {
		l.MaxBody = 16 << 10
	}
	if l.MaxCodeLen <= 0 {
		l.MaxCodeLen = 16
	}
	if l.MaxRangeValues <= 0 {
		l.MaxRangeValues = 8
	}
	if l.MaxLocations <= 0 {
		l.MaxLocations = 256
	}
	if l.MaxProducts <= 0 {
		l.MaxProducts = 1024
	}
}

// malformed marks a request that cannot be understood at all (a required
// field missing or of the wrong JSON type): the session answers it with a
// bad_request error frame and closes the connection. invalid is a failed
// reply on a connection that stays open (a value out of range, a code
// outside the menu).
func malformed(format string, args ...any) error {
	return wire.Malformedf(format, args...)
}

func invalid(format string, args ...any) error {
	return wire.Errorf(wire.BadRequest, format, args...)
}

// isMalformed tells whether err closes the connection.
func isMalformed(err error) bool {
	return err != nil && wire.AsError(err).Malformed
}

// draft is a publish request's post after validation, before the server
// gives it an id.
type draft struct {
	body     []byte // the raw JSON string, passed through byte for byte
	loc      []uint64
	prod     []uint64
	features uint64
	ranges   []int64
}

// decodePublish reads the one post of a publish request. Fields the server
// sets (id, from, date) are ignored when the client sends them.
func decodePublish(req *wire.Request, lim *Limits) (*draft, error) {
	raw := req.Get("items")
	if raw == nil {
		return nil, malformed(`missing field "items"`)
	}
	var items [][]byte
	if !eachElem(raw, func(v []byte) bool { items = append(items, v); return true }) {
		return nil, malformed(`"items" must be an array`)
	}
	if len(items) != 1 {
		return nil, malformed(`"items" must hold exactly one post, it has %d`, len(items))
	}
	post := &wire.Request{Frame: items[0]}
	if err := wire.Scan(items[0], func(f wire.Field) { post.Fields = append(post.Fields, f) }); err != nil {
		return nil, malformed(`the post must be a JSON object`)
	}
	get := post.Get
	d := &draft{}
	d.body = get("body")
	if d.body == nil {
		return nil, malformed(`missing field "body"`)
	}
	if _, ok := wire.String(d.body); !ok {
		return nil, malformed(`"body" must be a string`)
	}
	if len(d.body) > lim.MaxBody {
		return nil, wire.Errorf(wire.TooLarge, "the body is %d bytes, the limit is %d", len(d.body), lim.MaxBody)
	}
	to := get("to")
	if to == nil {
		return nil, malformed(`missing field "to"`)
	}
	var err error
	if isNumber(to) {
		// The original app (7351342) sends hashes in "to" and "filter"
		// and the codes themselves in its body's "channel", in the shape
		// of "to" here; the hashes of long codes are 0 there, so the
		// codes are the only reliable source.
		if to = bodyChannel(d.body); to == nil {
			return nil, invalid(`"to" must be [[<location code>],[<product code>]]`)
		}
	}
	if d.loc, d.prod, err = decodeTo(to, lim); err != nil {
		return nil, err
	}
	if f := get("features"); f != nil && string(f) != "null" {
		v, ok := wire.Uint64(f)
		if !ok {
			if !isNumber(f) {
				return nil, malformed(`"features" must be a number`)
			}
			return nil, invalid(`"features" must be an unsigned 64-bit integer`)
		}
		d.features = v
	}
	if rv := get("range_values"); rv != nil && string(rv) != "null" {
		if d.ranges, err = decodeInts(rv, "range_values", lim.MaxRangeValues); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// bodyChannel returns the raw "channel" member of a body string holding a
// JSON object, or nil.
func bodyChannel(body []byte) []byte {
	s, ok := wire.String(body)
	if !ok {
		return nil
	}
	var ch []byte
	if wire.Scan([]byte(s), func(f wire.Field) {
		if f.Key == "channel" {
			ch = f.Value
		}
	}) != nil {
		return nil
	}
	return ch
}

// decodeTo reads [[<location code>],[<product code>]].
func decodeTo(raw []byte, lim *Limits) (loc, prod []uint64, err error) {
	var sides [][][]uint64
	var bad error
	ok := eachElem(raw, func(side []byte) bool {
		var codes [][]uint64
		if !eachElem(side, func(code []byte) bool {
			var c []uint64
			if !eachElem(code, func(n []byte) bool {
				v, ok := wire.Uint64(n)
				if !ok {
					if isNumber(n) {
						bad = invalid(`a code component must be an unsigned integer, got %s`, clip(n))
					} else {
						bad = malformed(`a code must be an array of numbers`)
					}
					return false
				}
				if len(c) >= lim.MaxCodeLen {
					bad = invalid(`a code has more than %d components`, lim.MaxCodeLen)
					return false
				}
				c = append(c, v)
				return true
			}) {
				if bad == nil {
					bad = malformed(`a code must be an array of numbers`)
				}
				return false
			}
			codes = append(codes, c)
			return true
		}) {
			if bad == nil {
				bad = malformed(`"to" must be [[<location code>],[<product code>]]`)
			}
			return false
		}
		sides = append(sides, codes)
		return len(sides) <= 2
	})
	if bad != nil {
		return nil, nil, bad
	}
	if !ok && len(sides) <= 2 {
		return nil, nil, malformed(`"to" must be [[<location code>],[<product code>]]`)
	}
	if len(sides) != 2 || len(sides[0]) != 1 || len(sides[1]) != 1 {
		return nil, nil, invalid(`"to" must hold exactly one location code and one product code`)
	}
	loc, prod = sides[0][0], sides[1][0]
	if len(loc) == 0 || len(prod) == 0 {
		return nil, nil, invalid(`a code must have at least one component`)
	}
	return loc, prod, nil
}

// decodeInts reads an array of at most max signed 64-bit integers.
func decodeInts(raw []byte, name string, max int) ([]int64, error) {
	return decodeNumbers(raw, name, max, wire.Int64, "64-bit integers")
}

// decodeU64s reads an array of at most max unsigned 64-bit integers.
func decodeU64s(raw []byte, name string, max int) ([]uint64, error) {
	return decodeNumbers(raw, name, max, wire.Uint64, "unsigned 64-bit integers")
}

// decodeNumbers reads an array of at most max integers with parse. A value
// that is a number of the wrong kind is an invalid value (a fail reply);
// anything else in the array is malformed (the connection closes).
func decodeNumbers[T int64 | uint64](raw []byte, name string, max int, parse func([]byte) (T, bool), kind string) ([]T, error) {
	var out []T
	var bad error
	if !eachElem(raw, func(n []byte) bool {
		v, ok := parse(n)
		if !ok {
			if isNumber(n) {
				bad = invalid(`%q must hold %s, got %s`, name, kind, clip(n))
			} else {
				bad = malformed(`%q must be an array of numbers`, name)
			}
			return false
		}
		if len(out) >= max {
			bad = invalid(`%q has more than %d values`, name, max)
			return false
		}
		out = append(out, v)
		return true
	}) {
		if bad == nil {
			bad = malformed(`%q must be an array of numbers`, name)
		}
		return nil, bad
	}
	return out, nil
}

func isNumber(v []byte) bool {
	return len(v) > 0 && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9'))
}

func clip(v []byte) string {
	if len(v) > 24 {
		return string(v[:24]) + "..."
	}
	return string(v)
}

// eachElem calls fn with the raw bytes of each element of the JSON array
// raw (validated by the frame scan). It returns false when raw is not an
// array or fn stopped it.
func eachElem(raw []byte, fn func(v []byte) bool) bool {
	return wire.EachElement(raw, fn)
}

// members renders the stored post's members after "id": the order and
// spelling are fixed so that every node produces the same bytes.
func (d *draft) members(from string, date int64) []byte {
	head, tail := d.parts(from)
	b := make([]byte, 0, len(head)+len(tail)+32)
	b = append(b, head...)
	b = append(b, `,"date":`...)
	b = strconv.AppendInt(b, date, 10)
	return append(b, tail...)
}

// parts renders members without the date: the members before it ("from"
// to "features") and the range_values member with its leading comma. An
// update sends them to Redis, which keeps the post's date between them.
func (d *draft) parts(from string) (head, tail []byte) {
	b := make([]byte, 0, 96+len(d.body))
	b = append(b, `"from":`...)
	b = wire.AppendString(b, from)
	b = append(b, `,"body":`...)
	b = append(b, d.body...)
	b = append(b, `,"to":[[`...)
	b = appendCode(b, d.loc)
	b = append(b, `],[`...)
	b = appendCode(b, d.prod)
	b = append(b, `]],"features":`...)
	b = strconv.AppendUint(b, d.features, 10)
	t := make([]byte, 0, 24+20*len(d.ranges))
	t = append(t, `,"range_values":[`...)
	for i, v := range d.ranges {
		if i > 0 {
			t = append(t, ',')
		}
		t = strconv.AppendInt(t, v, 10)
	}
	return b, append(t, ']')
}

func appendCode(b []byte, code []uint64) []byte {
	b = append(b, '[')
	for i, v := range code {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, v, 10)
	}
	return append(b, ']')
}

// parseStored reads a post as stored in Redis and broadcast: the format
// that members (plus the id) produces. Anything else is an error; the
// caller logs it and skips the post, it never crashes the node.
func parseStored(js []byte, locDepth, prodDepth int) (*Post, error) {
	var fields []wire.Field
	if err := wire.Scan(js, func(f wire.Field) { fields = append(fields, f) }); err != nil {
		return nil, errors.New("not a JSON object")
	}
	p := &Post{JSON: js, status: statusAvailable}
	seen := 0
	for _, f := range fields {
		var ok bool
		switch f.Key {
		case "id":
			p.ID, ok = wire.Uint64(f.Value)
			ok = ok && p.ID > 0
			seen |= 1
		case "from":
			p.From, ok = wire.String(f.Value)
			seen |= 2
		case "date":
			p.Date, ok = wire.Int64(f.Value)
			seen |= 4
		case "features":
			p.Features, ok = wire.Uint64(f.Value)
		case "renewed":
			p.Renewed, ok = wire.Int64(f.Value)
		case "status":
			var st string
			st, ok = wire.String(f.Value)
			if p.status = statusBit(st); p.status == 0 {
				p.status = statusAvailable // a status this server does not know
			}
		case "body":
			p.words = bodyWords(f.Value)
			ok = true
		case "range_values":
			var err error
			p.Ranges, err = decodeInts(f.Value, "range_values", 1<<10)
			ok = err == nil
		case "to":
			lim := Limits{MaxCodeLen: 1 << 10}
			loc, prod, err := decodeTo(f.Value, &lim)
			if err == nil {
				p.Loc, err = wire.ChannelHash(loc, locDepth)
			}
			if err == nil {
				p.Prod, err = wire.ChannelHash(prod, prodDepth)
			}
			ok = err == nil
			seen |= 8
		default:
			ok = true
		}
		if !ok {
			return nil, errors.New("bad field " + strconv.Quote(f.Key))
		}
	}
	if seen != 15 {
		return nil, errors.New("missing id, from, date or to")
	}
	if len(p.Ranges) == 0 {
		p.Ranges = nil
	}
	return p, nil
}
