package moderation

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/occase/occase/images"
)

// Photos on the operator page. A post's body holds its photos as paths
// relative to the public site ("<hex digest>/<name>.<ext>", as the image
// server hands them out); the admin listener is another origin and does
// not know that site's address, so --public-url names it. Only paths of
// exactly the web app's shape (webapp/static/assets/safe.js imagePath)
// are passed on: relative, no dots but the extension's, no slash but the
// one, so that PUBLIC + "/" + path can never leave PUBLIC.

// MaxImages is how many photos of a post are shown: the web app's cap
// (images.MaxPostPhotos), which is all a post it publishes can hold.
const MaxImages = images.MaxPostPhotos

// hostChars: a DNS name, IPv4 or [IPv6] address and an optional port,
// nothing a CSP source list would read otherwise ("*", quotes, ...).
var hostChars = regexp.MustCompile(`^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$`)

// ParsePublicURL checks --public-url: an absolute http or https URL with
// a host, no user, query or fragment. It returns the URL without its
// trailing slash (photos are PUBLIC + "/" + path) and its origin, the
// one source the page's img-src adds.
func ParsePublicURL(s string) (public, origin string, err error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", "", fmt.Errorf("--public-url %q: %v", s, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		err = fmt.Errorf("--public-url %q: want an absolute http or https URL, e.g. https://market.example.com", s)
	case u.Host == "" || u.Hostname() == "" || u.Opaque != "":
		err = fmt.Errorf("--public-url %q: no host: want e.g. https://market.example.com", s)
	case !hostChars.MatchString(u.Host):
		err = fmt.Errorf("--public-url %q: the host must be a DNS name or an IP address (letters, digits, '.', '-', [IPv6]) with an optional port", s)
	case u.User != nil:
		err = fmt.Errorf("--public-url %q: no user or password in it", s)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		err = fmt.Errorf("--public-url %q: no query or fragment: the address users open, e.g. https://market.example.com", s)
	case strings.ContainsAny(s, " \t\r\n'\";,\\"):
		err = fmt.Errorf("--public-url %q: holds a character not allowed there", s)
	}
	if err != nil {
		return "", "", err
	}
	origin = u.Scheme + "://" + strings.ToLower(u.Host)
	return origin + strings.TrimRight(u.EscapedPath(), "/"), origin, nil
}

// SetReviewer makes the report lines of hidden listings, and of the
// copies kept of listings their authors deleted, carry a review token
// per photo (ReportLine.ImagesReview) made by token from the photo's
// digest (images.Signer.ReviewToken): the img nodes refuse those photos
// to everyone else.
func (s *Service) SetReviewer(token func(digest string) string) { s.review = token }
