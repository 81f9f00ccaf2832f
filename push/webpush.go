package push

// Web Push: the message encryption of RFC 8291 (aes128gcm, RFC 8188) and
// the VAPID authorization of RFC 8292, with the standard library. Both are
// short and fully specified, so they are written here rather than taken
// from a library: github.com/SherClockHolmes/webpush-go sees few releases
// and brings a JWT library along, for about 150 lines of code whose
// correctness the tests check by decrypting with an independent
// implementation of the receiving side.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"
)

var b64 = base64.RawURLEncoding

// decodeB64 accepts base64url with or without padding, and standard
// base64, as browsers and libraries hand keys out in either.
func decodeB64(s string) ([]byte, error) {
	s = trimPad(s)
	if b, err := b64.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

func trimPad(s string) string {
	for len(s) > 0 && s[len(s)-1] == '=' {
		s = s[:len(s)-1]
	}
	return s
}

// encryptRecordSize is the record size announced in the aes128gcm header;
// the whole payload is one record.
const encryptRecordSize = 4096

// encrypt encrypts plaintext for a subscription whose public key is
// uaPublic (65 bytes, uncompressed P-256) and whose authentication secret
// is auth (16 bytes), as RFC 8291 section 3 says: an ephemeral ECDH key,
// keys derived with HKDF-SHA256 from the shared secret and auth, one
// AES-128-GCM record padded with the 0x02 delimiter.
func encrypt(plaintext, uaPublic, auth []byte) ([]byte, error) {
	uaKey, err := ecdh.P256().NewPublicKey(uaPublic)
	if err != nil {
		return nil, fmt.Errorf("subscription key: %w", err)
	}
	asKey, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	return encryptWith(plaintext, uaKey, auth, asKey, salt)
}

func encryptWith(plaintext []byte, uaKey *ecdh.PublicKey, auth []byte, asKey *ecdh.PrivateKey, salt []byte) ([]byte, error) {
	secret, err := asKey.ECDH(uaKey)
	if err != nil {
		return nil, err
	}
	asPublic := asKey.PublicKey().Bytes()
	cek, nonce, err := deriveKeys(secret, auth, uaKey.Bytes(), asPublic, salt)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(plaintext)+1+gcm.Overhead()+86 > encryptRecordSize {
		return nil, errors.New("payload too large for one record")
	}
	rec := append(append(make([]byte, 0, len(plaintext)+1), plaintext...), 2)
	out := make([]byte, 0, 16+4+1+len(asPublic)+len(rec)+gcm.Overhead())
	out = append(out, salt...)
	out = binary.BigEndian.AppendUint32(out, encryptRecordSize)
	out = append(out, byte(len(asPublic)))
	out = append(out, asPublic...)
	return gcm.Seal(out, nonce, rec, nil), nil
}

// deriveKeys is RFC 8291 section 3.3/3.4 and RFC 8188 section 2.2: the
// content encryption key and nonce of the one record. The receiving side
// (the tests' push service) calls it too, with its own private key.
func deriveKeys(ecdhSecret, auth, uaPublic, asPublic, salt []byte) (cek, nonce []byte, err error) {
	info := append(append([]byte("WebPush: info\x00"), uaPublic...), asPublic...)
	ikm, err := hkdf.Key(sha256.New, ecdhSecret, auth, string(info), 32)
	if err != nil {
		return nil, nil, err
	}
	if cek, err = hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16); err != nil {
		return nil, nil, err
	}
	nonce, err = hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	return cek, nonce, err
}

// vapid holds the application server's key pair (RFC 8292).
type vapid struct {
	key     *ecdsa.PrivateKey
	public  string // base64url of the uncompressed public key: the browser's applicationServerKey and the k= parameter
	subject string // mailto: or https: contact for the push services
}

// newVAPID reads a key pair in the usual encoding: base64url of the
// 32-byte private scalar and of the 65-byte uncompressed public point.
func newVAPID(public, private, subject string) (*vapid, error) {
	d, err := decodeB64(private)
	if err != nil || len(d) != 32 {
		return nil, errors.New("the VAPID private key must be 32 bytes in base64url")
	}
	key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		return nil, fmt.Errorf("VAPID private key: %w", err)
	}
	pub, err := key.PublicKey.Bytes()
	if err != nil {
		return nil, err
	}
	if public != "" {
		p, err := decodeB64(public)
		if err != nil || !bytes.Equal(p, pub) {
			return nil, errors.New("the VAPID public key does not belong to the private key")
		}
	}
	if subject == "" {
		subject = "mailto:admin@localhost"
	}
	if !strings.HasPrefix(subject, "mailto:") && !strings.HasPrefix(subject, "https://") {
		return nil, errors.New("the VAPID subject must be a mailto: or https: URL")
	}
	return &vapid{key: key, public: b64.EncodeToString(pub), subject: subject}, nil
}

// GenerateVAPID returns a new VAPID key pair, base64url-encoded: the public
// key (for the browser and --vapid-public-key) and the private key.
func GenerateVAPID() (public, private string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	pub, err := key.PublicKey.Bytes()
	if err != nil {
		return "", "", err
	}
	priv, err := key.Bytes()
	if err != nil {
		return "", "", err
	}
	return b64.EncodeToString(pub), b64.EncodeToString(priv), nil
}

// authorization is the Authorization header for a push to endpoint: a JWT
// (ES256) whose audience is the endpoint's origin, valid for 12 hours.
func (v *vapid) authorization(endpoint string, now time.Time) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", err
	}
	claims, err := json.Marshal(map[string]any{
		"aud": u.Scheme + "://" + u.Host,
		"exp": now.Add(12 * time.Hour).Unix(),
		"sub": v.subject,
	})
	if err != nil {
		return "", err
	}
	jwt, err := signES256(v.key, []byte(`{"typ":"JWT","alg":"ES256"}`), claims)
	if err != nil {
		return "", err
	}
	return "vapid t=" + jwt + ", k=" + v.public, nil
}

// signES256 builds a compact JWS with ES256: the signature is r and s as
// two 32-byte big-endian numbers (RFC 7518 section 3.4), not ASN.1.
func signES256(key *ecdsa.PrivateKey, header, claims []byte) (string, error) {
	signing := b64.EncodeToString(header) + "." + b64.EncodeToString(claims)
	h := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + b64.EncodeToString(sig), nil
}

// verifyES256 checks a compact JWS signed with ES256 by pub; tests use it.
func verifyES256(pub *ecdsa.PublicKey, jwt string) ([]byte, error) {
	parts := bytes.Split([]byte(jwt), []byte("."))
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	sig, err := b64.DecodeString(string(parts[2]))
	if err != nil || len(sig) != 64 {
		return nil, errors.New("bad signature encoding")
	}
	h := sha256.Sum256([]byte(string(parts[0]) + "." + string(parts[1])))
	if !ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return nil, errors.New("bad signature")
	}
	return b64.DecodeString(string(parts[1]))
}
