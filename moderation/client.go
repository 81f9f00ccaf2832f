package moderation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/occase/occase/broker"
)

// Client calls a node's moderation API: what `occase moderate --node`
// uses instead of opening Redis. Its methods return what the Service's
// do, refusals included (as *Error with the node's reason and sentence).
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
}

// maxAnswer bounds what the client reads of an answer: a full listing
// (MaxListLimit posts with MaxListTexts texts each) fits.
const maxAnswer = 64 << 20

// NewClient checks node (https, or http to a loopback address: the token
// must not cross a network in clear) and returns a client for it.
func NewClient(node string, token []byte) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(node, "/"))
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("--node %q: want a URL such as http://127.0.0.1:9100 or https://admin.example.com", node)
	}
	if u.Scheme == "http" {
		host := u.Hostname()
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("--node %s: plain http is allowed to a loopback address only (the token would cross the network in clear); use https", node)
		}
	}
	if len(token) < MinTokenLen {
		return nil, fmt.Errorf("the admin token must hold at least %d bytes", MinTokenLen)
	}
	return &Client{base: u, token: string(token), hc: &http.Client{Timeout: 2 * time.Minute}}, nil
}

func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("reach the node: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("read the node's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error  string          `json:"error"`
			Reason string          `json:"reason"`
			Result json.RawMessage `json:"result"`
		}
		if json.Unmarshal(b, &e) != nil || e.Reason == "" {
			return fmt.Errorf("the node answered %s: %.200q", resp.Status, b)
		}
		me := &Error{Reason: e.Reason, Msg: e.Error}
		if len(e.Result) > 0 && out != nil && json.Unmarshal(e.Result, out) == nil {
			me.Result = out
		}
		return me
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("the node's answer is not what this version reads: %w", err)
	}
	return nil
}

// Reports is Service.Reports on the node.
func (c *Client) Reports(ctx context.Context, limit, texts int) (Queue, error) {
	var q Queue
	err := c.call(ctx, http.MethodGet, "/admin/v1/reports?limit="+strconv.Itoa(limit)+"&texts="+strconv.Itoa(texts), nil, &q)
	return q, err
}

// Dismiss is Service.Dismiss on the node.
func (c *Client) Dismiss(ctx context.Context, id uint64) (Dismissed, error) {
	var d Dismissed
	err := c.call(ctx, http.MethodPost, "/admin/v1/posts/"+strconv.FormatUint(id, 10)+"/dismiss", nil, &d)
	return d, err
}

// Remove is Service.Remove on the node; a ReasonNotTold refusal carries
// the Removed, as the Service's does.
func (c *Client) Remove(ctx context.Context, id uint64, req RemoveRequest) (Removed, error) {
	var d Removed
	err := c.call(ctx, http.MethodPost, "/admin/v1/posts/"+strconv.FormatUint(id, 10)+"/remove", req, &d)
	var e *Error
	if errors.As(err, &e) && e.Result != nil {
		e.Result = d
	}
	return d, err
}

// Bans is Service.Bans on the node.
func (c *Client) Bans(ctx context.Context, offset, limit int) (broker.BanPage, error) {
	var p broker.BanPage
	err := c.call(ctx, http.MethodGet, "/admin/v1/bans?limit="+strconv.Itoa(limit)+"&offset="+strconv.Itoa(offset), nil, &p)
	return p, err
}

// Ban is Service.Ban on the node; a ReasonPostsLeft refusal carries the
// Banned so far, as the Service's does.
func (c *Client) Ban(ctx context.Context, user string, req BanRequest) (Banned, error) {
	var d Banned
	err := c.call(ctx, http.MethodPost, "/admin/v1/users/"+url.PathEscape(user)+"/ban", req, &d)
	var e *Error
	if errors.As(err, &e) && e.Result != nil {
		e.Result = d
	}
	return d, err
}

// Unban is Service.Unban on the node.
func (c *Client) Unban(ctx context.Context, user string) (Unbanned, error) {
	var d Unbanned
	err := c.call(ctx, http.MethodPost, "/admin/v1/users/"+url.PathEscape(user)+"/unban", nil, &d)
	return d, err
}

// RebuildBans is Service.RebuildBans on the node.
func (c *Client) RebuildBans(ctx context.Context) (broker.BanRebuild, error) {
	var r broker.BanRebuild
	err := c.call(ctx, http.MethodPost, "/admin/v1/bans/rebuild", nil, &r)
	return r, err
}

// Log is Service.Log on the node.
func (c *Client) Log(ctx context.Context, offset, limit int) (LogPage, error) {
	var p LogPage
	err := c.call(ctx, http.MethodGet, "/admin/v1/log?limit="+strconv.Itoa(limit)+"&offset="+strconv.Itoa(offset), nil, &p)
	return p, err
}

// WhoAmI is GET /admin/v1/whoami on the node: the name and role of the
// token this client sends.
func (c *Client) WhoAmI(ctx context.Context) (WhoAmI, error) {
	var w WhoAmI
	err := c.call(ctx, http.MethodGet, "/admin/v1/whoami", nil, &w)
	return w, err
}
