package wire

import (
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// Field is one top-level member of a JSON object frame: its decoded key, the
// key as written and the raw bytes of its value (sub-slices of the frame).
type Field struct {
	Key    string
	RawKey []byte
	Value  []byte
}

// ErrNotJSON and ErrNotObject tell "invalid payload" (close 1007) apart from
// a well-formed frame with the wrong shape (close 1008).
var (
	ErrNotJSON   = errors.New("frame is not valid UTF-8 JSON")
	ErrNotObject = errors.New("frame is not a JSON object")
)

// Scan validates frame as one JSON value and, when it is an object, calls fn
// for each top-level member in order, in one pass. It is the single decode
// of a frame on the hot path: values stay raw and are parsed only when a
// handler needs them. Keys without escapes are not copied.
func Scan(frame []byte, fn func(f Field)) error {
	if !utf8.Valid(frame) {
		return ErrNotJSON
	}
	i := skipSpace(frame, 0)
	if i < len(frame) && frame[i] == '{' {
		// Members are reported as they are read; a frame found invalid
		// later is refused as a whole, so the callback's caller must not
		// act on them before Scan returns (ParseRequest does not).
		end := parseObject(frame, i, 1, fn, string(frame))
		if end < 0 || skipSpace(frame, end) != len(frame) {
			return ErrNotJSON
		}
		return nil
	}
	end := parseValue(frame, i, 0)
	if end < 0 || skipSpace(frame, end) != len(frame) {
		return ErrNotJSON
	}
	return ErrNotObject
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// endOfString returns the index just past the closing quote of the string
// starting at b[i] == '"'.
func endOfString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// endOfValue returns the index just past the value starting at b[i].
func endOfValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return endOfString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = endOfString(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	default: // number, true, false, null
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j
			}
			j++
		}
		return j
	}
}

func unquote(raw []byte) (string, bool) {
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c == '\\' {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", false
			}
			return s, true
		}
	}
	return string(inner), true
}

// String parses a raw JSON string value.
func String(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	return unquote(raw)
}

// Uint64 parses a raw JSON number that is a non-negative integer fitting in
// 64 bits, without going through float64.
func Uint64(raw []byte) (uint64, bool) {
	if len(raw) == 0 || raw[0] == '-' || raw[0] == '"' {
		return 0, false
	}
	v, err := strconv.ParseUint(string(raw), 10, 64)
	return v, err == nil
}

// Int64 parses a raw JSON number that is an integer fitting in 64 bits.
func Int64(raw []byte) (int64, bool) {
	if len(raw) == 0 || raw[0] == '"' {
		return 0, false
	}
	v, err := strconv.ParseInt(string(raw), 10, 64)
	return v, err == nil
}

// Bool parses a raw JSON boolean.
func Bool(raw []byte) (bool, bool) {
	switch string(raw) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// AppendString appends s as a JSON string literal.
func AppendString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s)
	return append(dst, b...)
}

// EachElement calls fn with the raw bytes of each element of the JSON
// array raw, which must already be valid JSON (a field of a scanned frame).
// It returns false when raw is not an array or fn stopped it.
func EachElement(raw []byte, fn func(v []byte) bool) bool {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '[' {
		return false
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == ']' {
		return true
	}
	for i < len(raw) {
		end := endOfValue(raw, i)
		if !fn(raw[i:end]) {
			return false
		}
		i = skipSpace(raw, end)
		if i >= len(raw) {
			return false
		}
		if raw[i] == ']' {
			return true
		}
		i = skipSpace(raw, i+1) // ','
	}
	return false
}
