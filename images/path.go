package images

import (
	"errors"
	"net/url"
	"strings"
)

// kind is an accepted image type. It is decided from the bytes; the URL's
// extension must name the same kind.
type kind uint8

const (
	kindNone kind = iota
	kindJPEG
	kindPNG
	kindWebP
)

func (k kind) contentType() string {
	switch k {
	case kindJPEG:
		return "image/jpeg"
	case kindPNG:
		return "image/png"
	case kindWebP:
		return "image/webp"
	}
	return ""
}

// ext is the extension a link to an image of kind k carries (the
// inverse of kindOfExt; "jpg" for JPEG).
func (k kind) ext() string {
	switch k {
	case kindPNG:
		return "png"
	case kindWebP:
		return "webp"
	}
	return "jpg"
}

func kindOfExt(ext string) kind {
	// Lowercase only: the app builds these URLs from the names it was given,
	// and one spelling per type keeps CDN cache keys unique.
	switch ext {
	case "jpg", "jpeg":
		return kindJPEG
	case "png":
		return kindPNG
	case "webp":
		return kindWebP
	}
	return kindNone
}

// target is a parsed, fully validated image path.
type target struct {
	digest string // 32 lowercase hex
	name   string // 9 characters of alphabet
	ext    string
	kind   kind
}

var errBadPath = errors.New("malformed image path")

// parseTarget accepts exactly "/<32 lowercase hex>/<9 chars>.<ext>" and
// nothing else. It takes the path as it was on the wire (URL.EscapedPath),
// not the decoded one: "/d%2Fn.jpg" must not become "/d/n.jpg". The digest
// segment admits no escapes at all; the file segment may escape its
// characters ("%2B" for "+", as some URL builders do), and is validated after
// unescaping, so "..", "/", "\", NUL and "%" can never reach the store. The
// store is keyed by the digest alone, which is hex, so no path built from a
// target can leave the storage root.
func parseTarget(escaped string) (target, error) {
	rest, ok := strings.CutPrefix(escaped, "/")
	if !ok {
		return target{}, errBadPath
	}
	digest, file, ok := strings.Cut(rest, "/")
	if !ok || !isDigest(digest) {
		return target{}, errBadPath
	}
	if strings.Contains(file, "%") {
		u, err := url.PathUnescape(file)
		if err != nil {
			return target{}, errBadPath
		}
		file = u
	}
	name, ext, ok := strings.Cut(file, ".")
	if !ok || len(name) != NameLen || !isName(name) {
		return target{}, errBadPath
	}
	k := kindOfExt(ext)
	if k == kindNone {
		return target{}, errBadPath
	}
	return target{digest: digest, name: name, ext: ext, kind: k}, nil
}

func isDigest(s string) bool {
	if len(s) != DigestLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isName(s string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(alphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}
