package push

// Fake push services that check what they receive the way the real ones
// do: a Web Push service that decrypts with the subscription's private key
// (RFC 8291, with HKDF written out here apart from the code under test) and
// verifies the VAPID JWT; FCM with its OAuth token endpoint checking the
// RS256 assertion; APNs over HTTP/2 and TLS checking the ES256 provider
// token.

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// hkdfTest is RFC 5869 written out with HMAC-SHA256.
func hkdfTest(salt, ikm, info []byte, n int) []byte {
	m := hmac.New(sha256.New, salt)
	m.Write(ikm)
	prk := m.Sum(nil)
	var out, t []byte
	for i := byte(1); len(out) < n; i++ {
		m = hmac.New(sha256.New, prk)
		m.Write(t)
		m.Write(info)
		m.Write([]byte{i})
		t = m.Sum(nil)
		out = append(out, t...)
	}
	return out[:n]
}

// decryptTest is the receiving side of RFC 8291 / RFC 8188 aes128gcm.
func decryptTest(body []byte, ua *ecdh.PrivateKey, auth []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, fmt.Errorf("short body")
	}
	salt := body[:16]
	idlen := int(body[20])
	if len(body) < 21+idlen {
		return nil, fmt.Errorf("short header")
	}
	asPub, err := ecdh.P256().NewPublicKey(body[21 : 21+idlen])
	if err != nil {
		return nil, fmt.Errorf("keyid: %w", err)
	}
	secret, err := ua.ECDH(asPub)
	if err != nil {
		return nil, err
	}
	info := append(append([]byte("WebPush: info\x00"), ua.PublicKey().Bytes()...), asPub.Bytes()...)
	ikm := hkdfTest(auth, secret, info, 32)
	cek := hkdfTest(salt, ikm, []byte("Content-Encoding: aes128gcm\x00"), 16)
	nonce := hkdfTest(salt, ikm, []byte("Content-Encoding: nonce\x00"), 12)
	block, _ := aes.NewCipher(cek)
	gcm, _ := cipher.NewGCM(block)
	plain, err := gcm.Open(nil, nonce, body[21+idlen:], nil)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 || plain[i] != 2 {
		return nil, fmt.Errorf("no last-record delimiter")
	}
	return plain[:i], nil
}

// received is one notification a fake service accepted.
type received struct {
	Device  string         // endpoint path, FCM token or APNs token
	Payload map[string]any // decrypted Web Push payload, FCM message, APNs body
	Header  http.Header
}

// fakeService collects notifications; status, when set, picks the answer.
type fakeService struct {
	t      testing.TB
	srv    *httptest.Server
	mu     sync.Mutex
	got    []received
	errs   []string
	status func(device string, n int) (int, http.Header, string) // n: requests for that device so far
	counts map[string]int
	notify chan struct{}
}

func (f *fakeService) record(r received) {
	f.mu.Lock()
	f.got = append(f.got, r)
	f.mu.Unlock()
	select {
	case f.notify <- struct{}{}:
	default:
	}
}

func (f *fakeService) fail(format string, args ...any) {
	f.mu.Lock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

func (f *fakeService) received() []received {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.errs) > 0 {
		f.t.Errorf("fake push service saw bad requests: %v", f.errs)
	}
	return append([]received(nil), f.got...)
}

func (f *fakeService) answer(w http.ResponseWriter, device string) bool {
	f.mu.Lock()
	f.counts[device]++
	n := f.counts[device]
	f.mu.Unlock()
	if f.status == nil {
		return true
	}
	code, h, body := f.status(device, n)
	if code < 300 {
		return true
	}
	for k, v := range h {
		w.Header()[k] = v
	}
	w.WriteHeader(code)
	io.WriteString(w, body)
	return false
}

func newFake(t testing.TB) *fakeService {
	return &fakeService{t: t, counts: map[string]int{}, notify: make(chan struct{}, 1000)}
}

// subscription is a browser's side of a Web Push subscription.
type subscription struct {
	key      *ecdh.PrivateKey
	auth     []byte
	endpoint string
}

func (s *subscription) request(cmd string) string {
	return fmt.Sprintf(`{"cmd":%q,"webpush":{"endpoint":%q,"keys":{"p256dh":%q,"auth":%q}}}`, cmd, s.endpoint,
		base64.RawURLEncoding.EncodeToString(s.key.PublicKey().Bytes()), base64.RawURLEncoding.EncodeToString(s.auth))
}

// webPushFake is a push service on loopback (plain HTTP: the test option
// allows it) that keeps subscriptions by path.
type webPushFake struct {
	*fakeService
	vapidPublic func() string
	mu          sync.Mutex
	subs        map[string]*subscription
}

func startWebPush(t testing.TB, vapidPublic func() string) *webPushFake {
	f := &webPushFake{fakeService: newFake(t), vapidPublic: vapidPublic, subs: map[string]*subscription{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func newSubKeys() (*ecdh.PrivateKey, []byte) {
	k, _ := ecdh.P256().GenerateKey(rand.Reader)
	a := make([]byte, 16)
	rand.Read(a)
	return k, a
}

func (f *webPushFake) subscribe(name string) *subscription {
	k, a := newSubKeys()
	s := &subscription{key: k, auth: a, endpoint: f.srv.URL + "/push/" + name}
	f.mu.Lock()
	f.subs["/push/"+name] = s
	f.mu.Unlock()
	return s
}

func (f *webPushFake) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	sub := f.subs[r.URL.Path]
	f.mu.Unlock()
	if r.Method != http.MethodPost || sub == nil {
		f.fail("unknown %s %s", r.Method, r.URL.Path)
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if !f.answer(w, r.URL.Path) {
		return
	}
	for k, want := range map[string]string{"Content-Encoding": "aes128gcm", "Urgency": "high"} {
		if got := r.Header.Get(k); got != want {
			f.fail("%s: %q, want %q", k, got, want)
		}
	}
	if r.Header.Get("TTL") == "" || len(r.Header.Get("Topic")) > 32 {
		f.fail("TTL %q, Topic %q", r.Header.Get("TTL"), r.Header.Get("Topic"))
	}
	// VAPID: "vapid t=<jwt>, k=<public key>", the key the server
	// publishes, the JWT signed by it for this origin.
	auth := r.Header.Get("Authorization")
	var jwt, k string
	for _, part := range strings.Split(strings.TrimPrefix(auth, "vapid "), ",") {
		part = strings.TrimSpace(part)
		if v, ok := strings.CutPrefix(part, "t="); ok {
			jwt = v
		}
		if v, ok := strings.CutPrefix(part, "k="); ok {
			k = v
		}
	}
	if k != f.vapidPublic() {
		f.fail("VAPID k=%q, want the published key", k)
	}
	pb, _ := base64.RawURLEncoding.DecodeString(k)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pb)
	if err != nil {
		f.fail("VAPID key: %v", err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	claims, err := verifyES256(pub, jwt)
	if err != nil {
		f.fail("VAPID JWT: %v", err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var c struct {
		Aud string `json:"aud"`
		Exp int64  `json:"exp"`
		Sub string `json:"sub"`
	}
	json.Unmarshal(claims, &c)
	if c.Aud != f.srv.URL || c.Exp <= 0 || c.Sub == "" {
		f.fail("VAPID claims %+v, want aud %s", c, f.srv.URL)
	}
	body, _ := io.ReadAll(r.Body)
	plain, err := decryptTest(body, sub.key, sub.auth)
	if err != nil {
		f.fail("decrypt: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var p map[string]any
	if err := json.Unmarshal(plain, &p); err != nil {
		f.fail("payload %q: %v", plain, err)
	}
	f.record(received{Device: r.URL.Path, Payload: p, Header: r.Header.Clone()})
	w.WriteHeader(http.StatusCreated)
}

// fcmFake is FCM HTTP v1 and Google's OAuth token endpoint, over TLS.
type fcmFake struct {
	*fakeService
	key    *rsa.PrivateKey
	tokens int // access tokens handed out
	creds  []byte
}

func startFCM(t testing.TB) *fcmFake {
	f := &fcmFake{fakeService: newFake(t)}
	f.key, _ = rsa.GenerateKey(rand.Reader, 2048)
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	der, _ := x509.MarshalPKCS8PrivateKey(f.key)
	f.creds, _ = json.Marshal(map[string]string{
		"type": "service_account", "project_id": "proj-1", "private_key_id": "kid1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "occase@proj-1.iam.gserviceaccount.com", "token_uri": f.srv.URL + "/token",
	})
	return f
}

func (f *fcmFake) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/token":
		r.ParseForm()
		if r.Form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
			f.fail("grant_type %q", r.Form.Get("grant_type"))
		}
		parts := strings.Split(r.Form.Get("assertion"), ".")
		if len(parts) != 3 {
			f.fail("assertion is not a JWT")
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		h := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		if err := rsa.VerifyPKCS1v15(&f.key.PublicKey, crypto.SHA256, h[:], sig); err != nil {
			f.fail("assertion signature: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var c map[string]any
		json.Unmarshal(cb, &c)
		if c["iss"] != "occase@proj-1.iam.gserviceaccount.com" || c["scope"] != fcmScope || c["aud"] != f.srv.URL+"/token" {
			f.fail("assertion claims %v", c)
		}
		f.mu.Lock()
		f.tokens++
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"access-1","token_type":"Bearer","expires_in":3600}`)
	case "/v1/projects/proj-1/messages:send":
		if r.Header.Get("Authorization") != "Bearer access-1" {
			f.fail("authorization %q", r.Header.Get("Authorization"))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var m struct {
			Message map[string]any `json:"message"`
		}
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			f.fail("body: %v", err)
		}
		tok, _ := m.Message["token"].(string)
		if !f.answer(w, tok) {
			return
		}
		f.record(received{Device: tok, Payload: m.Message, Header: r.Header.Clone()})
		io.WriteString(w, `{"name":"projects/proj-1/messages/1"}`)
	default:
		f.fail("unknown path %s", r.URL.Path)
		w.WriteHeader(http.StatusNotFound)
	}
}

// fcmUnregisteredAnswer is what FCM answers for a token that is gone.
const fcmUnregisteredAnswer = `{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND",
"details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`

// apnsFake is APNs over HTTP/2 with TLS.
type apnsFake struct {
	*fakeService
	key *ecdsa.PrivateKey
	p8  []byte
}

func startAPNs(t testing.TB) *apnsFake {
	f := &apnsFake{fakeService: newFake(t)}
	f.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(f.key)
	f.p8 = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.EnableHTTP2 = true
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *apnsFake) serve(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 {
		f.fail("APNs request over %s, want HTTP/2", r.Proto)
	}
	tok, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if !ok || r.Method != http.MethodPost {
		f.fail("%s %s", r.Method, r.URL.Path)
		w.WriteHeader(http.StatusNotFound)
		return
	}
	bearer, _ := strings.CutPrefix(r.Header.Get("authorization"), "bearer ")
	claims, err := verifyES256(&f.key.PublicKey, bearer)
	if err != nil {
		f.fail("provider token: %v", err)
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"reason":"InvalidProviderToken"}`)
		return
	}
	hb, _ := base64.RawURLEncoding.DecodeString(strings.Split(bearer, ".")[0])
	var hdr, c map[string]any
	json.Unmarshal(hb, &hdr)
	json.Unmarshal(claims, &c)
	if hdr["kid"] != "KEY1234567" || c["iss"] != "TEAM123456" || c["iat"] == nil {
		f.fail("provider token header %v claims %v", hdr, c)
	}
	if r.Header.Get("apns-topic") != "com.example.occase" || r.Header.Get("apns-push-type") != "alert" {
		f.fail("apns-topic %q push-type %q", r.Header.Get("apns-topic"), r.Header.Get("apns-push-type"))
	}
	if !f.answer(w, tok) {
		return
	}
	var body map[string]any
	json.NewDecoder(r.Body).Decode(&body)
	f.record(received{Device: tok, Payload: body, Header: r.Header.Clone()})
	w.Header().Set("apns-id", "00000000-0000-0000-0000-000000000001")
	w.WriteHeader(http.StatusOK)
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
