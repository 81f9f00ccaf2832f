package push

import (
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/url"
	"strings"

	"github.com/occase/occase/wire"
)

// Bounds of what a client may register.
const (
	maxEndpoint  = 1024 // bytes of a Web Push endpoint URL
	maxFCMToken  = 1024 // FCM registration tokens are ~160 characters today
	minAPNsToken = 64   // hex digits: 32 bytes today
	maxAPNsToken = 200
	maxKeyField  = 200 // base64 text of p256dh (87) or auth (22)
)

// Device kinds, and the first letter of a device id and record.
const (
	kindWebPush = "w"
	kindFCM     = "f"
	kindAPNs    = "a"
)

// device is a registered device as stored in Redis (JSON).
type device struct {
	Kind     string `json:"k"`
	Endpoint string `json:"e,omitempty"` // Web Push
	P256dh   string `json:"p,omitempty"` // Web Push, base64url
	Auth     string `json:"a,omitempty"` // Web Push, base64url
	Token    string `json:"t,omitempty"` // FCM registration token or APNs device token
}

// id names the device in the user's registry: the kind and a digest of
// what identifies it (the endpoint or the token), so the field stays short
// and one device registered twice is stored once.
func (d *device) id() string {
	k := d.Token
	if d.Kind == kindWebPush {
		k = d.Endpoint
	}
	h := sha256.Sum256([]byte(k))
	return d.Kind + ":" + hex.EncodeToString(h[:16])
}

func (d *device) record() string {
	b, _ := json.Marshal(d)
	return string(b)
}

func parseRecord(s string) (*device, bool) {
	var d device
	if json.Unmarshal([]byte(s), &d) != nil {
		return nil, false
	}
	switch d.Kind {
	case kindWebPush, kindFCM, kindAPNs:
		return &d, true
	}
	return nil, false
}

// webPushSub is the "webpush" field: a browser's PushSubscription as
// PushSubscription.toJSON() gives it.
type webPushSub struct {
	Endpoint string `json:"endpoint"`
	Keys     struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
}

// parseDevice reads the one device field of a push_subscribe or
// push_unsubscribe request. needKeys is false for push_unsubscribe, which
// names a Web Push subscription by its endpoint alone.
func (s *Service) parseDevice(req *wire.Request, needKeys bool) (*device, error) {
	var found []*device
	if raw := req.Get("webpush"); raw != nil {
		var sub webPushSub
		if err := json.Unmarshal(raw, &sub); err != nil {
			return nil, wire.Errorf(wire.BadRequest, `"webpush" must be a push subscription object`)
		}
		d := &device{Kind: kindWebPush, Endpoint: sub.Endpoint, P256dh: sub.Keys.P256dh, Auth: sub.Keys.Auth}
		if err := s.checkEndpoint(d.Endpoint); err != nil {
			return nil, err
		}
		if needKeys {
			if err := checkKeys(d); err != nil {
				return nil, err
			}
		}
		found = append(found, d)
	}
	if raw := req.Get("fcm"); raw != nil {
		t, ok := wire.String(raw)
		if !ok || !validFCMToken(t) {
			return nil, wire.Errorf(wire.BadRequest, `"fcm" must be an FCM registration token`)
		}
		found = append(found, &device{Kind: kindFCM, Token: t})
	}
	if raw := req.Get("apns"); raw != nil {
		t, ok := wire.String(raw)
		if !ok || !validAPNsToken(t) {
			return nil, wire.Errorf(wire.BadRequest, `"apns" must be an APNs device token in hex`)
		}
		found = append(found, &device{Kind: kindAPNs, Token: strings.ToLower(t)})
	}
	if len(found) != 1 {
		return nil, wire.Errorf(wire.BadRequest, `give exactly one of "webpush", "fcm" or "apns"`)
	}
	return found[0], nil
}

// checkEndpoint accepts an https URL of bounded length whose host is a
// name or a public address: occase POSTs to it, so an endpoint must not
// point the server at itself or at the operator's private network. (The
// dialer checks the resolved address again.)
func (s *Service) checkEndpoint(e string) error {
	bad := wire.Errorf(wire.BadRequest, `"webpush.endpoint" must be an https URL of at most %d bytes`, maxEndpoint)
	if e == "" || len(e) > maxEndpoint {
		return bad
	}
	u, err := url.Parse(e)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return bad
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && s.cfg.AllowInsecureEndpoints:
	default:
		return bad
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && !s.cfg.AllowInsecureEndpoints && !publicIP(ip) {
		return bad
	}
	return nil
}

func checkKeys(d *device) error {
	bad := wire.Errorf(wire.BadRequest, `"webpush.keys" must hold p256dh (a P-256 public key) and auth (16 bytes), base64url`)
	if len(d.P256dh) > maxKeyField || len(d.Auth) > maxKeyField {
		return bad
	}
	p, err := decodeB64(d.P256dh)
	if err != nil {
		return bad
	}
	if _, err := ecdh.P256().NewPublicKey(p); err != nil {
		return bad
	}
	a, err := decodeB64(d.Auth)
	if err != nil || len(a) != 16 {
		return bad
	}
	// Stored in one canonical form.
	d.P256dh, d.Auth = b64.EncodeToString(p), b64.EncodeToString(a)
	return nil
}

// validFCMToken: FCM registration tokens are URL-safe text (letters,
// digits, '-', '_', ':').
func validFCMToken(t string) bool {
	if t == "" || len(t) > maxFCMToken {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == ':') {
			return false
		}
	}
	return true
}

func validAPNsToken(t string) bool {
	if len(t) < minAPNsToken || len(t) > maxAPNsToken || len(t)%2 != 0 {
		return false
	}
	_, err := hex.DecodeString(t)
	return err == nil
}

// publicIP tells whether ip is an address on the public Internet.
func publicIP(ip net.IP) bool {
	return !(ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || ip.IsInterfaceLocalMulticast())
}
