package posts

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/occase/occase/wire"
)

// Register adds the HTTP read API (docs/http-api.md) to e:
//
//	GET /api/menu        the menu, when one is configured
//	GET /api/posts       live posts matching filters, newest first, paged
//	GET /api/posts/:id   one live post
//
// CORS applies to these routes only (with their OPTIONS preflights), so the
// rest of the router is left as the caller set it up.
func (s *Service) Register(e *echo.Echo) {
	cors := middleware.CORSWithConfig(middleware.CORSConfig{
		AllowOrigins: s.cfg.CORSOrigins,
		AllowMethods: []string{http.MethodGet, http.MethodHead, http.MethodOptions},
	})
	preflight := func(c echo.Context) error { return c.NoContent(http.StatusNoContent) }
	for path, h := range map[string]echo.HandlerFunc{
		"/api/menu":      s.getMenu,
		"/api/posts":     s.limitReads(s.listPosts),
		"/api/posts/:id": s.limitReads(s.getPost),
	} {
		e.GET(path, h, cors)
		e.HEAD(path, h, cors)
		e.OPTIONS(path, preflight, cors)
	}
}

// limitReads refuses a read beyond the client address's rate (ReadRate)
// with 429, Retry-After and the reason rate_limited, before any work.
func (s *Service) limitReads(h echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		key := s.clientKey(c)
		if ok, retry := s.readLimit.allow(key, s.cfg.Clock()); !ok {
			s.counts.readLimited.Add(1)
			secs := seconds(retry)
			c.Response().Header().Set("Retry-After", strconv.FormatInt(secs, 10))
			return fail(c, http.StatusTooManyRequests, wire.RateLimited,
				"too many requests from this address; try again in "+strconv.FormatInt(secs, 10)+" s")
		}
		return h(c)
	}
}

// clientKey is the key of the HTTP client's address: ClientKey's when set,
// else echo's RealIP when the router has an IP extractor (it then knows
// which proxies to trust), else the connection's own address: without
// one, RealIP would believe any X-Forwarded-For a client cares to send.
func (s *Service) clientKey(c echo.Context) string {
	if s.cfg.ClientKey != nil {
		return s.cfg.ClientKey(c.Request())
	}
	if c.Echo().IPExtractor != nil {
		return c.RealIP()
	}
	return echo.ExtractIPDirect()(c.Request())
}

func marshalMenu(m *Menu) ([]byte, error) {
	return json.Marshal(m)
}

func fail(c echo.Context, status int, reason, detail string) error {
	return c.JSON(status, map[string]string{"result": "fail", "reason": reason, "detail": detail})
}

func (s *Service) getMenu(c echo.Context) error {
	if s.menu == nil {
		return fail(c, http.StatusNotFound, wire.NotFound, "this server has no menu: any well-formed code is accepted")
	}
	return c.JSONBlob(http.StatusOK, s.menu)
}

func (s *Service) getPost(c echo.Context) error {
	id, err := strconv.ParseUint(c.Param("id"), 10, 64)
	if err != nil {
		return fail(c, http.StatusBadRequest, wire.BadRequest, "a post id is an unsigned integer")
	}
	cutoff := s.cutoff()
	s.mu.RLock()
	p, ok := s.x.byID[id]
	var js []byte
	if ok && !p.expired(cutoff) {
		js = p.JSON
	}
	s.mu.RUnlock()
	if js == nil {
		return fail(c, http.StatusNotFound, wire.NotFound, "no such post")
	}
	return c.JSONBlob(http.StatusOK, js)
}

// listPosts answers GET /api/posts. Query parameters (all optional):
// location, product (hash lists, comma-separated or repeated), features
// (any_of_features), ranges (min,max pairs), status (available, sold,
// reserved; comma-separated), q (text search), sort (date,
// price_asc, price_desc), before (cursor: only ids below it; for a price
// sort, the "<price>:<id>" of the last post seen), limit, and count (any
// non-empty value but 0/false: answer only the number of matches; sort
// does not apply). A read examines at most MaxScan posts; one that stops
// there answers what it found with "next", the cursor to continue from.
func (s *Service) listPosts(c echo.Context) error {
	q := c.QueryParams()
	f := &Filter{}
	var err error
	lim := &s.cfg.Limits
	if f.Locs, err = u64List(q["location"], "location", lim.MaxLocations); err == nil {
		f.Prods, err = u64List(q["product"], "product", lim.MaxProducts)
	}
	if err == nil {
		f.Features, err = u64Param(q.Get("features"), "features")
	}
	if err == nil {
		f.Search, err = parseSearch(q.Get("q"))
	}
	for _, v := range q["status"] {
		for _, st := range strings.Split(v, ",") {
			if st == "" {
				continue
			}
			b := statusBit(st)
			if b == 0 && err == nil {
				err = wire.Errorf(wire.BadRequest, "status must hold available, sold or reserved")
			}
			f.Status |= b
		}
	}
	sort := q.Get("sort")
	var before uint64
	var cursor *priceKey
	switch sort {
	case "", "date":
		if err == nil {
			before, err = u64Param(q.Get("before"), "before")
		}
	case "price_asc", "price_desc":
		if v := q.Get("before"); err == nil && v != "" {
			var k priceKey
			k, err = parsePriceKey(v)
			cursor = &k
		}
	default:
		if err == nil {
			err = wire.Errorf(wire.BadRequest, "sort must be date, price_asc or price_desc")
		}
	}
	if err == nil && q.Get("ranges") != "" {
		f.Ranges, err = i64List(q["ranges"], 2*lim.MaxRangeValues)
	}
	if err != nil {
		// The detail alone: a wire error's text repeats the reason first.
		detail := err.Error()
		if we := (*wire.Error)(nil); errors.As(err, &we) {
			detail = we.Detail
		}
		return fail(c, http.StatusBadRequest, wire.BadRequest, detail)
	}
	f.Locs, f.Prods = normalise(f.Locs), normalise(f.Prods)
	cutoff := s.cutoff()
	if v := q.Get("count"); v != "" && v != "0" && v != "false" {
		s.mu.RLock()
		r := s.x.count(f, cutoff, before, s.cfg.MaxScan)
		s.mu.RUnlock()
		b := []byte(`{"count":`)
		b = strconv.AppendInt(b, int64(r.n), 10)
		if r.next != 0 {
			s.counts.scanCapped.Add(1)
			b = append(b, `,"next":"`...)
			b = strconv.AppendUint(b, r.next, 10)
			b = append(b, '"')
		}
		return c.JSONBlob(http.StatusOK, append(b, "}\n"...))
	}
	limit := s.cfg.PageSize
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fail(c, http.StatusBadRequest, wire.BadRequest, "limit must be a positive integer")
		}
		limit = min(n, s.cfg.MaxPage)
	}
	if sort == "price_asc" || sort == "price_desc" {
		return s.listByPrice(c, f, cutoff, limit, sort == "price_desc", cursor)
	}
	s.mu.RLock()
	// One more than asked tells whether there is a next page.
	r := s.x.scan(f, cutoff, read{limit: limit + 1, maxScan: s.cfg.MaxScan, desc: true, from: before})
	ps, next := r.posts, r.next
	if len(ps) > limit {
		ps = ps[:limit]
		next = ps[limit-1].ID
	}
	b := appendPostList(make([]byte, 0, 64+len(ps)*256), ps)
	s.mu.RUnlock()
	if r.next != 0 {
		s.counts.scanCapped.Add(1)
	}
	if next != 0 {
		b = append(b, `,"next":"`...)
		b = strconv.AppendUint(b, next, 10)
		b = append(b, '"')
	}
	return c.JSONBlob(http.StatusOK, append(b, '}'))
}

func u64Param(v, name string) (uint64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, wire.Errorf(wire.BadRequest, "%s must be an unsigned 64-bit integer", name)
	}
	return n, nil
}

func u64List(vals []string, name string, max int) ([]uint64, error) {
	var out []uint64
	for _, v := range vals {
		for _, part := range strings.Split(v, ",") {
			if part == "" {
				continue
			}
			n, err := strconv.ParseUint(part, 10, 64)
			if err != nil {
				return nil, wire.Errorf(wire.BadRequest, "%s must hold unsigned 64-bit integers", name)
			}
			if len(out) >= max {
				return nil, wire.Errorf(wire.BadRequest, "%s has more than %d values", name, max)
			}
			out = append(out, n)
		}
	}
	return out, nil
}

func i64List(vals []string, max int) ([]int64, error) {
	var out []int64
	for _, v := range vals {
		for _, part := range strings.Split(v, ",") {
			n, err := strconv.ParseInt(part, 10, 64)
			if err != nil {
				return nil, wire.Errorf(wire.BadRequest, "ranges must hold 64-bit integers")
			}
			if len(out) >= max {
				return nil, wire.Errorf(wire.BadRequest, "ranges has more than %d values", max)
			}
			out = append(out, n)
		}
	}
	if len(out)%2 != 0 {
		return nil, wire.Errorf(wire.BadRequest, "ranges must hold min,max pairs")
	}
	return out, nil
}

// listByPrice answers GET /api/posts?sort=price_asc|price_desc: the order is
// exact among the newest matches a read of at most MaxScan posts finds;
// "partial":true says the read stopped there and older matches are not in
// the order. "next" is the cursor ("<price>:<id>") of the next page.
func (s *Service) listByPrice(c echo.Context, f *Filter, cutoff int64, limit int, desc bool, cursor *priceKey) error {
	s.mu.RLock()
	ps, more, capped := s.x.byPrice(f, cutoff, s.cfg.MaxScan, limit, desc, cursor)
	b := appendPostList(make([]byte, 0, 64+len(ps)*256), ps)
	s.mu.RUnlock()
	if capped {
		s.counts.scanCapped.Add(1)
		b = append(b, `,"partial":true`...)
	}
	if more {
		b = append(b, `,"next":"`...)
		b = append(b, keyOf(ps[len(ps)-1]).String()...)
		b = append(b, '"')
	}
	return c.JSONBlob(http.StatusOK, append(b, '}'))
}

// appendPostList appends `{"posts":[...]` (the object left open for the
// members that follow) with the stored JSON of ps.
func appendPostList(b []byte, ps []*Post) []byte {
	b = append(b, `{"posts":[`...)
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p.JSON...)
	}
	return append(b, ']')
}
