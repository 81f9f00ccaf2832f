package push

// APNs with token-based authentication
// (https://developer.apple.com/documentation/usernotifications/sending-notification-requests-to-apns):
// an ES256 JWT signed with the team's .p8 key, over HTTP/2, which net/http
// speaks to any TLS server that offers it. github.com/sideshow/apns2 does
// the same with more surface (certificates, its own client pool) and has
// had no release for years; the request is a POST with five headers.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

type apnsSender struct {
	base         string
	topic        string
	keyID, team  string
	key          *ecdsa.PrivateKey
	client       *http.Client
	clock        func() time.Time
	mu           sync.Mutex
	token        string
	tokenAt      time.Time
	tokenRefresh time.Duration
}

func newAPNs(cfg Config, client *http.Client) (*apnsSender, error) {
	if cfg.APNsKeyID == "" || cfg.APNsTeamID == "" || cfg.Topic == "" {
		return nil, errors.New("push: APNs needs --apns-key-id, --apns-team-id and --apns-topic with --apns-key-file")
	}
	blk, _ := pem.Decode(cfg.APNsKey)
	if blk == nil {
		return nil, errors.New("push: the APNs key is not a PEM .p8 file")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, errors.New("push: the APNs key is not a PKCS #8 private key")
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("push: the APNs key is not an elliptic-curve (ES256) key")
	}
	return &apnsSender{base: strings.TrimRight(cfg.APNsEndpoint, "/"), topic: cfg.Topic, keyID: cfg.APNsKeyID,
		team: cfg.APNsTeamID, key: key, client: client, clock: cfg.Clock, tokenRefresh: 40 * time.Minute}, nil
}

func (*apnsSender) name() string { return "apns" }

// providerToken returns the JWT, renewed every 40 minutes (Apple refuses
// tokens older than an hour and renewals more often than every 20
// minutes), or at once when fresh is set (APNs said ExpiredProviderToken).
func (a *apnsSender) providerToken(fresh bool) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.clock()
	if a.token != "" && !fresh && now.Sub(a.tokenAt) < a.tokenRefresh {
		return a.token, nil
	}
	header, _ := json.Marshal(map[string]string{"alg": "ES256", "kid": a.keyID})
	claims, _ := json.Marshal(map[string]any{"iss": a.team, "iat": now.Unix()})
	t, err := signES256(a.key, header, claims)
	if err != nil {
		return "", err
	}
	a.token, a.tokenAt = t, now
	return t, nil
}

func (a *apnsSender) push(ctx context.Context, d *device, p *payload) result {
	r := a.pushOnce(ctx, d, p, false)
	if r.reason == "ExpiredProviderToken" {
		r = a.pushOnce(ctx, d, p, true)
	}
	return r
}

func (a *apnsSender) pushOnce(ctx context.Context, d *device, p *payload, fresh bool) result {
	tok, err := a.providerToken(fresh)
	if err != nil {
		return result{out: outcomeFailed, reason: "credentials"}
	}
	title, text := p.text()
	body, _ := json.Marshal(map[string]any{
		"aps": map[string]any{
			"alert":     map[string]string{"title": title, "body": text},
			"sound":     "default",
			"thread-id": p.collapseID(),
		},
		"type": p.Type, "from": p.From, "count": p.Count,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/3/device/"+d.Token, bytes.NewReader(body))
	if err != nil {
		return result{out: outcomeFailed, reason: "error"}
	}
	req.Header.Set("authorization", "bearer "+tok)
	req.Header.Set("apns-topic", a.topic)
	req.Header.Set("apns-push-type", "alert")
	req.Header.Set("apns-priority", "10")
	req.Header.Set("apns-expiration", strconv.FormatInt(a.clock().Add(24*time.Hour).Unix(), 10))
	req.Header.Set("apns-collapse-id", p.collapseID())
	req.Header.Set("content-type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return networkFailure(err)
	}
	defer resp.Body.Close()
	var answer struct {
		Reason string `json:"reason"`
	}
	json.Unmarshal(readSmall(resp.Body), &answer)
	r := classify(resp)
	switch {
	case resp.StatusCode == http.StatusGone,
		answer.Reason == "BadDeviceToken", answer.Reason == "DeviceTokenNotForTopic", answer.Reason == "Unregistered":
		return result{out: outcomeGone}
	case resp.StatusCode == http.StatusNotFound:
		// 404 from APNs is a bad path (BadPath), not a gone device.
		return result{out: outcomeFailed, reason: "rejected"}
	case answer.Reason == "ExpiredProviderToken" && !fresh:
		return result{out: outcomeFailed, reason: "ExpiredProviderToken"}
	case resp.StatusCode == http.StatusForbidden:
		return result{out: outcomeFailed, reason: "credentials"}
	}
	return r
}
