package images

import (
	"encoding/json"
	"regexp"
)

// The photos of a post as the web app links them, and their review
// tokens (docs/security.md "Photos of hidden and removed listings",
// docs/protocol.md "The author's photos of a listing under review"). The
// operator page's report lines (moderation) and the author's copy of its
// listing under review (posts) read the same paths of a body and give the
// same tokens for them; this is the one place that decides both. The web
// app (webapp/static/assets/safe.js) and the operator page's script
// (moderation/page/admin.js) check the same shapes in the browser.

// MaxPostPhotos is how many photos of a post are shown, and get review
// tokens: the web app's cap (safe.js MAX_PHOTOS), which is all a post it
// publishes can hold.
const MaxPostPhotos = 4

// postPhotoPath is the shape of a photo path the web app shows (safe.js
// imagePath): relative, "<hex digest>/<name>.<ext>", no dots but the
// extension's, no slash but the one, so that a site's address + "/" +
// path can never leave that site.
var postPhotoPath = regexp.MustCompile(`^[0-9a-f]{8,64}/[A-Za-z0-9+_-]{1,64}\.(jpg|jpeg|png|webp)$`)

// PostPhotos returns the photo paths of a post body's "images" member: at
// most MaxPostPhotos, in order, each of the web app's shape; anything
// else is skipped.
func PostPhotos(member json.RawMessage) []string {
	var list []json.RawMessage
	if json.Unmarshal(member, &list) != nil {
		return nil
	}
	var out []string
	for _, raw := range list {
		if len(out) == MaxPostPhotos {
			break
		}
		var s string
		if json.Unmarshal(raw, &s) == nil && postPhotoPath.MatchString(s) {
			out = append(out, s)
		}
	}
	return out
}

// ReviewTokens returns a review token per path of PostPhotos, made by
// token (Signer.ReviewToken) from the path's digest; "" for a path whose
// digest is not one an img node names (DigestLen hex digits). nil for no
// paths.
func ReviewTokens(paths []string, token func(digest string) string) []string {
	if len(paths) == 0 {
		return nil
	}
	out := make([]string, len(paths))
	for i, p := range paths {
		if len(p) > DigestLen && p[DigestLen] == '/' {
			out[i] = token(p[:DigestLen])
		}
	}
	return out
}
