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
	scanLinks(text, s, func(digest, name string, _ int) { fn(digest, name) })
}

// scanLinks is scanNames that also passes the index just past the name.
func scanLinks(text string, s *Signer, fn func(digest, name string, end int)) {
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
		name, past, ok := decodeName(text, after)
		if !ok {
			continue
		}
		digest := text[end-DigestLen : end]
		if s.Valid(digest, name) {
			fn(digest, name, past)
		}
	}
}

// decodeName reads NameLen alphabet symbols from text at i, each written
// plainly or escaped (percent, or a JSON \u escape behind any number of
// backslashes).
func decodeName(text string, i int) (string, int, bool) {
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
				return "", 0, false
			}
			c, i = v, j+5
		case j+3 <= len(text) && text[j] == '%':
			b, err := hex.DecodeString(text[j+1 : j+3])
			if err != nil {
				return "", 0, false
			}
			c, i = b[0], j+3
		case j < len(text):
			c, i = text[j], j+1
		default:
			return "", 0, false
		}
		if strings.IndexByte(alphabet, c) < 0 {
			return "", 0, false
		}
		name[n] = c
	}
	return string(name[:]), i, true
}

func unhex4(s string) (byte, bool) {
	b, err := hex.DecodeString(s)
	if err != nil || b[0] != 0 || b[1] >= 0x80 {
		return 0, false
	}
	return b[1], true
}

// Photo is one image a post links: the stored image's digest, its name,
// and the extension the link ends with ("" when the link has none this
// server serves: the store then says, see GC.Purge).
type Photo struct {
	Digest, Name, Ext string
}

// Path is the photo's URL path on an img node ("/<digest>/<name>.<ext>"):
// what a CDN in front caches it under. A link without a known extension
// gets ".jpg"; the purge corrects it from the stored bytes when it can.
func (p Photo) Path() string {
	ext := p.Ext
	if ext == "" {
		ext = "jpg"
	}
	return "/" + p.Digest + "/" + p.Name + "." + ext
}

// Links returns the photos post links that s signed (each digest once), as
// the image sweep reads them: what keeps an image from being swept is
// exactly what Links finds. At most max are returned (0: no bound).
func Links(post string, s *Signer, max int) []Photo {
	var out []Photo
	seen := map[string]bool{}
	scanLinks(post, s, func(digest, name string, end int) {
		if seen[digest] || max > 0 && len(out) >= max {
			return
		}
		seen[digest] = true
		out = append(out, Photo{Digest: digest, Name: name, Ext: linkExt(post[end:])})
	})
	return out
}

// linkExt reads ".<ext>" at the start of rest, for an extension the img
// node serves, lowercase as the app writes it.
func linkExt(rest string) string {
	if len(rest) < 2 || rest[0] != '.' {
		return ""
	}
	for _, e := range []string{"jpeg", "jpg", "png", "webp"} {
		if strings.HasPrefix(rest[1:], e) {
			return e
		}
	}
	return ""
}
