package wire

// Request is a client frame after its one scan: the command name and the raw
// top-level fields, parsed further only by the handler that needs them.
type Request struct {
	Frame  []byte
	Cmd    string
	Fields []Field
}

// ParseRequest scans frame. It fails with ErrNotJSON for bytes that are not
// JSON (close 1007) and with a bad_request *Error for a JSON value that is
// not an object with a string "cmd" (close 1008).
func ParseRequest(frame []byte) (*Request, error) {
	r := &Request{Frame: frame, Fields: make([]Field, 0, 12)}
	err := Scan(frame, func(f Field) { r.Fields = append(r.Fields, f) })
	if err == ErrNotObject {
		return nil, Malformedf("a frame must be a JSON object")
	}
	if err != nil {
		return nil, err
	}
	raw := r.Get("cmd")
	if raw == nil {
		return nil, Malformedf(`missing field "cmd"`)
	}
	cmd, ok := String(raw)
	if !ok {
		return nil, Malformedf(`field "cmd" must be a string`)
	}
	r.Cmd = cmd
	return r, nil
}

// Get returns the raw value of the last member named key (JSON decoders keep
// the last of duplicate keys, and so does this), or nil.
func (r *Request) Get(key string) []byte {
	for i := len(r.Fields) - 1; i >= 0; i-- {
		if r.Fields[i].Key == key {
			return r.Fields[i].Value
		}
	}
	return nil
}

// Str returns the string field key, or a bad_request error naming it.
func (r *Request) Str(key string) (string, error) {
	raw := r.Get(key)
	if raw == nil {
		return "", Malformedf("missing field %q", key)
	}
	s, ok := String(raw)
	if !ok {
		return "", Malformedf("field %q must be a string", key)
	}
	return s, nil
}

// U64 returns the unsigned integer field key, or a bad_request error.
func (r *Request) U64(key string) (uint64, error) {
	raw := r.Get(key)
	if raw == nil {
		return 0, Malformedf("missing field %q", key)
	}
	v, ok := Uint64(raw)
	if !ok {
		return 0, Malformedf("field %q must be an unsigned 64-bit integer", key)
	}
	return v, nil
}

// AppendMembers appends the frame's members, comma-separated and without
// braces, leaving out every member whose key is in drop. Values are copied
// byte for byte, so fields the server does not interpret pass untouched.
// Its cost is linear in the number of fields: a frame is client input, and
// one with thousands of fields must not cost their square.
func (r *Request) AppendMembers(dst []byte, drop ...string) []byte {
	return r.appendMembers(dst, drop, nil)
}

// pairwiseFields is how many fields a pairwise duplicate check handles
// (at most 120 key comparisons) before a map of last positions is cheaper.
const pairwiseFields = 16

// appendMembers is AppendMembers; steps, when not nil, counts the key
// comparisons and lookups it made, so a test can show the cost is linear
// without timing it.
func (r *Request) appendMembers(dst []byte, drop []string, steps *int) []byte {
	n := 0
	// Keep only the last of duplicate keys, as Get does.
	var last map[string]int
	if len(r.Fields) > pairwiseFields {
		last = make(map[string]int, len(r.Fields))
		for i, f := range r.Fields {
			last[f.Key] = i
		}
		n += len(r.Fields)
	}
	first := true
next:
	for i, f := range r.Fields {
		for _, d := range drop {
			n++
			if f.Key == d {
				continue next
			}
		}
		if last != nil {
			n++
			if last[f.Key] != i {
				continue
			}
		} else {
			for _, g := range r.Fields[i+1:] {
				n++
				if g.Key == f.Key {
					continue next
				}
			}
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, f.RawKey...)
		dst = append(dst, ':')
		dst = append(dst, f.Value...)
	}
	if steps != nil {
		*steps += n
	}
	return dst
}
