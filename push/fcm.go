package push

// FCM HTTP v1 (https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages/send).
// The access token comes from the service account's key through the OAuth
// 2.0 JWT bearer flow of golang.org/x/oauth2/jwt, which signs the assertion,
// posts it to the credentials' token_uri and caches the token until it
// expires; the legacy /fcm/send API the original used is shut down.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"
)

const fcmScope = "https://www.googleapis.com/auth/firebase.messaging"

// serviceAccount is the part of a Google service-account JSON key we use.
type serviceAccount struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

type fcmSender struct {
	url    string // the messages:send URL of the project
	client *http.Client
	tokens oauth2.TokenSource
}

func newFCM(cfg Config, client *http.Client) (*fcmSender, error) {
	var sa serviceAccount
	if err := json.Unmarshal(cfg.FCMCredentials, &sa); err != nil {
		return nil, errors.New("push: the FCM credentials are not a service-account JSON key")
	}
	if sa.Type != "service_account" || sa.ProjectID == "" || sa.PrivateKey == "" || sa.ClientEmail == "" {
		return nil, errors.New("push: the FCM credentials need type service_account, project_id, private_key and client_email")
	}
	if sa.TokenURI == "" {
		sa.TokenURI = "https://oauth2.googleapis.com/token"
	}
	if u, err := url.Parse(sa.TokenURI); err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, errors.New("push: the FCM credentials' token_uri is not a URL")
	}
	if blk, _ := pem.Decode([]byte(sa.PrivateKey)); blk == nil {
		return nil, errors.New("push: the FCM credentials' private_key is not PEM")
	} else if _, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err != nil {
		if _, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err != nil {
			return nil, errors.New("push: the FCM credentials' private_key is not an RSA key")
		}
	}
	conf := &jwt.Config{
		Email:        sa.ClientEmail,
		PrivateKey:   []byte(sa.PrivateKey),
		PrivateKeyID: sa.PrivateKeyID,
		Scopes:       []string{fcmScope},
		TokenURL:     sa.TokenURI,
	}
	// The token source lives as long as the service; its requests are
	// bounded by the client's timeout.
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, client)
	ts := conf.TokenSource(ctx)
	return &fcmSender{
		url:    strings.TrimRight(cfg.FCMEndpoint, "/") + "/v1/projects/" + url.PathEscape(sa.ProjectID) + "/messages:send",
		client: client,
		tokens: ts,
	}, nil
}

func (*fcmSender) name() string { return "fcm" }

func (f *fcmSender) push(ctx context.Context, d *device, p *payload) result {
	tok, err := f.tokens.Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 && re.Response.StatusCode != 429 {
			return result{out: outcomeFailed, reason: "credentials"}
		}
		return result{out: outcomeRetry, reason: "unavailable"}
	}
	title, text := p.text()
	data := map[string]string{"type": p.Type, "from": p.From, "count": strconv.FormatInt(p.Count, 10)}
	if p.Nick != "" {
		data["nick"] = p.Nick
	}
	if p.Preview != "" {
		data["preview"] = p.Preview
	}
	msg := map[string]any{"message": map[string]any{
		"token":        d.Token,
		"data":         data,
		"notification": map[string]string{"title": title, "body": text},
		"android": map[string]any{"collapse_key": p.collapseID(), "priority": "high",
			"notification": map[string]string{"tag": p.collapseID()}},
		"apns": map[string]any{"headers": map[string]string{"apns-collapse-id": p.collapseID()}},
	}}
	body, _ := json.Marshal(msg)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url, bytes.NewReader(body))
	if err != nil {
		return result{out: outcomeFailed, reason: "error"}
	}
	req.Header.Set("Content-Type", "application/json")
	tok.SetAuthHeader(req)
	resp, err := f.client.Do(req)
	if err != nil {
		return networkFailure(err)
	}
	defer resp.Body.Close()
	answer := readSmall(resp.Body)
	r := classify(resp)
	if r.out == outcomeFailed && fcmUnregistered(answer) {
		r = result{out: outcomeGone}
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		r.reason = "credentials"
	}
	return r
}

// fcmUnregistered tells whether an FCM error answer says the token is no
// longer valid (errorCode UNREGISTERED in the FcmError detail).
func fcmUnregistered(answer []byte) bool {
	var e struct {
		Error struct {
			Status  string `json:"status"`
			Details []struct {
				Type      string `json:"@type"`
				ErrorCode string `json:"errorCode"`
			} `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(answer, &e) != nil {
		return false
	}
	for _, d := range e.Error.Details {
		if d.ErrorCode == "UNREGISTERED" {
			return true
		}
	}
	return false
}
