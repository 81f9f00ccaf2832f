package images

import (
	"encoding/hex"
	"slices"
	"strings"
)

// refSet is the set of stored images that live posts link to, kept as the
// first 8 bytes of each digest: 8 bytes a link, whatever the post. Two
// digests that share 8 bytes only keep an unlinked image one sweep longer;
// they can never make a linked one look unlinked.
type refSet struct {
	keys   []uint64
	sealed bool
}

func digestPrefix(digest string) (uint64, bool) {
	var b [8]byte
	if len(digest) < 16 {
		return 0, false
	}
	if _, err := hex.Decode(b[:], []byte(digest[:16])); err != nil {
		return 0, false
	}
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v, true
}

func (r *refSet) add(digest string) {
	if v, ok := digestPrefix(digest); ok {
		r.keys = append(r.keys, v)
	}
}

// seal sorts and de-duplicates the set; has works only after it.
func (r *refSet) seal() {
	slices.Sort(r.keys)
	r.keys = slices.Compact(r.keys)
	r.keys = slices.Clip(r.keys)
	r.sealed = true
}

func (r *refSet) has(digest string) bool {
	if !r.sealed {
		panic("images: refSet.has before seal")
	}
	v, ok := digestPrefix(digest)
	if !ok {
		return false
	}
	_, found := slices.BinarySearch(r.keys, v)
	return found
}

func (r *refSet) len() int { return len(r.keys) }

// scanNames calls fn for every "<digest>/<name>" in text whose digest signs
// its name under s. Post bodies are opaque to the server: the app may link
// an image as a path, a full URL, inside a JSON string that is itself
// escaped into the post's JSON, with "\/" for "/", with "%2F", "%2B" or
// "\u002b" escapes. The scan is generous with all of these, because a link
// it missed would delete a linked image; a name that does not verify is
// not one this key issued (nor one the img node would serve) and counts for
// nothing.
func scanNames(text string, s *Signer, fn func(digest, name string)) {
	for i := 0; i < len(text); i++ {
		var after int // index just past the separator
		switch {
		case text[i] == '/':
			after = i + 1
		case text[i] == '%' && i+2 < len(text) && text[i+1] == '2' && (text[i+2] == 'F' || text[i+2] == 'f'):
			after = i + 3
		default:
			continue
		}
		end := i
		for end > 0 && text[end-1] == '\\' {
			end--
		}
		if end < DigestLen || !isDigest(text[end-DigestLen:end]) {
			continue
		}
		name, ok := decodeName(text, after)
		if !ok {
			continue
		}
		digest := text[end-DigestLen : end]
		if s.Valid(digest, name) {
			fn(digest, name)
		}
	}
}

// decodeName reads NameLen alphabet symbols from text at i, each written
// plainly or escaped (percent, or a JSON \u escape behind any number of
// backslashes).
func decodeName(text string, i int) (string, bool) {
	var name [NameLen]byte
	for n := range name {
		j := i
		for j < len(text) && text[j] == '\\' {
			j++
		}
		var c byte
		switch {
		case j > i && j+5 <= len(text) && text[j] == 'u':
			v, ok := unhex4(text[j+1 : j+5])
			if !ok {
				return "", false
			}
			c, i = v, j+5
		case j+3 <= len(text) && text[j] == '%':
			b, err := hex.DecodeString(text[j+1 : j+3])
			if err != nil {
				return "", false
			}
			c, i = b[0], j+3
		case j < len(text):
			c, i = text[j], j+1
		default:
			return "", false
		}
		if strings.IndexByte(alphabet, c) < 0 {
			return "", false
		}
		name[n] = c
	}
	return string(name[:]), true
}

func unhex4(s string) (byte, bool) {
	b, err := hex.DecodeString(s)
	if err != nil || b[0] != 0 || b[1] >= 0x80 {
		return 0, false
	}
	return b[1], true
}
