package wire

import (
	"unicode/utf8"
	"unsafe"
)

// A validating JSON reader for the frame scan: one pass both checks the
// frame is valid JSON (the grammar of RFC 8259, as encoding/json accepts
// it) and finds its top-level members, where json.Valid followed by a walk
// read every byte twice. UTF-8 validity is checked separately (utf8.Valid
// is fast on ASCII).

// maxDepth matches encoding/json's nesting limit.
const maxDepth = 10000

// parseValue returns the index just past the JSON value starting at b[i],
// or -1 when there is none.
func parseValue(b []byte, i, depth int) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '"':
		return parseString(b, i)
	case c == '{':
		return parseObject(b, i, depth+1, nil, "")
	case c == '[':
		return parseArray(b, i, depth+1)
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return parseNumber(b, i)
	}
	return -1
}

func literal(b []byte, i int, lit string) int {
	if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
		return i + len(lit)
	}
	return -1
}

// parseString returns the index just past the string at b[i] == '"'.
func parseString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1
		case c < 0x20:
			return -1
		case c == '\\':
			j++
			if j >= len(b) {
				return -1
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(b) {
					return -1
				}
				for k := j + 1; k <= j+4; k++ {
					if !isHex(b[k]) {
						return -1
					}
				}
				j += 4
			default:
				return -1
			}
		}
	}
	return -1
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// parseNumber follows the JSON number grammar.
func parseNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return -1
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return -1
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	return i
}

func parseArray(b []byte, i, depth int) int {
	if depth > maxDepth {
		return -1
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1
	}
	for {
		if i = parseValue(b, i, depth); i < 0 {
			return -1
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case ']':
			return i + 1
		case ',':
			i = skipSpace(b, i+1)
		default:
			return -1
		}
	}
}

// parseObject validates the object at b[i] == '{' and, when fn is not nil,
// calls it with each member; str is string(b), made once so that keys are
// substrings of it rather than an allocation each.
func parseObject(b []byte, i, depth int, fn func(Field), str string) int {
	if depth > maxDepth {
		return -1
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return -1
		}
		kStart, kEnd := i, parseString(b, i)
		if kEnd < 0 {
			return -1
		}
		rawKey := b[kStart:kEnd]
		i = skipSpace(b, kEnd)
		if i >= len(b) || b[i] != ':' {
			return -1
		}
		i = skipSpace(b, i+1)
		vEnd := parseValue(b, i, depth)
		if vEnd < 0 {
			return -1
		}
		if fn != nil {
			key := str[kStart+1 : kEnd-1]
			if hasEscape(rawKey) {
				var ok bool
				if key, ok = unquote(rawKey); !ok {
					return -1
				}
			}
			fn(Field{Key: key, RawKey: rawKey, Value: b[i:vEnd]})
		}
		i = skipSpace(b, vEnd)
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case '}':
			return i + 1
		case ',':
			i = skipSpace(b, i+1)
		default:
			return -1
		}
	}
}

func hasEscape(raw []byte) bool {
	for _, c := range raw {
		if c == '\\' {
			return true
		}
	}
	return false
}

// ValidString reports whether s is one JSON value in valid UTF-8, the
// check for text read back from Redis before it goes to an app as a text
// frame. It is json.Valid plus UTF-8 (which encoding/json does not
// require), in one pass and without copying s.
func ValidString(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	b := unsafe.Slice(unsafe.StringData(s), len(s)) // read only
	end := parseValue(b, skipSpace(b, 0), 0)
	return end >= 0 && skipSpace(b, end) == len(b)
}
