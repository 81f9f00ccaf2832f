package images

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Config holds the img role's options. Zero fields take the defaults of
// DefaultConfig.
type Config struct {
	// MaxBytes caps an upload's body, checked while it streams in.
	MaxBytes int64
	// MaxPixels caps width*height from the image header, so a small file
	// cannot make every client decode a gigapixel picture.
	MaxPixels int64
	// UploadTimeout is the read deadline for the whole body of one upload.
	// It is set per request, because the same http.Server may carry
	// long-lived WebSockets (role all) and cannot have a ReadTimeout.
	UploadTimeout time.Duration
	// MaxUploads caps the uploads being read and checked at once; each
	// holds up to MaxBytes in memory. Further uploads wait their turn, in
	// order, for at most QueueWait; at most MaxUploads of them wait.
	MaxUploads int
	// NameTTL is how long after it was issued a name may be uploaded (the
	// rest of its issue day added, see Signer.Expiry); later: 410.
	NameTTL time.Duration
	// UploadsPerAddress caps the uploads of one client (ClientKey) at once.
	UploadsPerAddress int
	// QueueWait is the longest an upload waits for a slot before it is
	// answered 503 with Retry-After.
	QueueWait time.Duration
	// MinRate is the slowest average a body may arrive at, in bytes a
	// second, once UploadGrace has passed; slower: 408. Negative: no
	// minimum, only UploadTimeout.
	MinRate int64
	// UploadGrace is the time a body has before MinRate applies, for the
	// connection to get going.
	UploadGrace time.Duration
	// PreemptBelow is the average body rate (bytes a second since the slot
	// was granted) below which, when every slot is taken and an upload
	// waits, an upload's slot may be taken back for the waiter (503
	// "preempted"; see gate.preempt); at or above it, never. Negative: no
	// preemption.
	PreemptBelow int64
	// PreemptAfter is how long a slot is its upload's before it may be
	// taken back: time for the connection to show its pace.
	PreemptAfter time.Duration
	// ClientKey names the client an upload counts against for
	// UploadsPerAddress. Nil: the host of r.RemoteAddr. A node behind a
	// proxy passes a key from the trusted forwarded address, and may group
	// IPv6 addresses by prefix.
	ClientKey func(*http.Request) string
	// Metrics, when set, gets the image server's series.
	Metrics prometheus.Registerer
	// CORSOrigins lists the web origins (e.g. "https://app.example")
	// allowed to upload and to read images with fetch; "*" allows any.
	// Empty: no CORS headers, which suits native apps and <img> tags.
	CORSOrigins []string
	// MinFreeBytes refuses uploads (507 insufficient_storage) while the
	// store's file system has less free space than this, counting the
	// upload's declared length; 0: 1 GiB; negative: no byte threshold.
	MinFreeBytes int64
	// MinFreePercent refuses uploads likewise while less than this
	// percentage of the file system is free; 0: no percentage threshold.
	MinFreePercent float64
	// Withheld, when set, names the images a GET or HEAD is refused (404
	// "hidden") while it holds them: the photos of listings hidden
	// pending review (a *Withheld). Nil: every stored image is served.
	Withheld interface{ Has(digest string) bool }
}

// Reviewable is a Config.Withheld that tells which of the photos it
// holds an operator's review URL may show: those withheld for review
// (hidden listings, copies kept of them), not those being purged.
type Reviewable interface {
	Reviewable(digest string) bool
}

// reviewParam returns the "review" parameter of a query, "" when there is
// none or the query is longer than a review URL's (it is not parsed then).
func reviewParam(q string) string {
	if q == "" || len(q) > len("review=")+ReviewTokenMax {
		return ""
	}
	v, ok := strings.CutPrefix(q, "review=")
	if !ok {
		return ""
	}
	return v
}

// ReasonHidden is the refusal of a photo of a listing hidden pending
// review (Config.Withheld).
const ReasonHidden = "hidden"

// DefaultConfig returns the defaults: 10 MB bodies, 50 megapixels, 60 s per upload, 64 uploads at once, no CORS;
// names live 24 hours, 4 uploads at once per address, 2 s in the queue at
// most, and a body slower than 16 KiB/s after 10 s is cut.
func DefaultConfig() Config {
	return Config{
		MaxBytes:          10_000_000,
		MaxPixels:         50_000_000,
		UploadTimeout:     60 * time.Second,
		MaxUploads:        64,
		NameTTL:           24 * time.Hour,
		UploadsPerAddress: 4,
		QueueWait:         2 * time.Second,
		MinRate:           16 << 10,
		UploadGrace:       10 * time.Second,
		MinFreeBytes:      1 << 30,
		PreemptBelow:      64 << 10,
		PreemptAfter:      2 * time.Second,
	}
}

// Server is the img role's HTTP side.
type Server struct {
	cfg       Config
	signer    *Signer
	store     Store
	log       *zap.Logger
	gate      *gate
	anyOrigin bool
	origins   map[string]bool
	refused   *prometheus.CounterVec
	disk      *diskGuard // nil: no free-space check
	// retryAfter is the Retry-After of a 503: the queue wait, whole
	// seconds, at least 1.
	retryAfter string
}

// NewServer returns a server that checks names with s and keeps images in
// st.
func NewServer(cfg Config, s *Signer, st Store, log *zap.Logger) *Server {
	def := DefaultConfig()
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = def.MaxBytes
	}
	if cfg.MaxPixels <= 0 {
		cfg.MaxPixels = def.MaxPixels
	}
	if cfg.UploadTimeout <= 0 {
		cfg.UploadTimeout = def.UploadTimeout
	}
	if cfg.MaxUploads <= 0 {
		cfg.MaxUploads = def.MaxUploads
	}
	if cfg.NameTTL <= 0 {
		cfg.NameTTL = def.NameTTL
	}
	if cfg.UploadsPerAddress <= 0 {
		cfg.UploadsPerAddress = def.UploadsPerAddress
	}
	if cfg.QueueWait <= 0 {
		cfg.QueueWait = def.QueueWait
	}
	if cfg.MinRate == 0 {
		cfg.MinRate = def.MinRate
	}
	if cfg.UploadGrace <= 0 {
		cfg.UploadGrace = def.UploadGrace
	}
	if cfg.PreemptBelow == 0 {
		cfg.PreemptBelow = def.PreemptBelow
	}
	if cfg.PreemptAfter <= 0 {
		cfg.PreemptAfter = def.PreemptAfter
	}
	if cfg.ClientKey == nil {
		cfg.ClientKey = remoteHost
	}
	if cfg.MinFreeBytes == 0 {
		cfg.MinFreeBytes = def.MinFreeBytes
	}
	srv := &Server{
		cfg:     cfg,
		signer:  s,
		store:   st,
		log:     log,
		gate:    newGate(cfg.MaxUploads, cfg.UploadsPerAddress),
		origins: map[string]bool{},
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "occase_image_refusals_total",
			Help: "Image requests refused, by reason (the reason code in the answer's body)."}, []string{"reason"}),
		retryAfter: strconv.FormatInt(max(1, int64((cfg.QueueWait+time.Second-1)/time.Second)), 10),
	}
	if ds, ok := st.(*DirStore); ok {
		srv.disk = newDiskGuard(ds.dir, cfg.MinFreeBytes, cfg.MinFreePercent)
	}
	if srv.disk != nil {
		// Exported from 0, so that an alert's rate() sees the first
		// refusal of a node whose disk fills up.
		srv.refused.WithLabelValues(reasonNoSpace)
	}
	if cfg.Withheld != nil {
		srv.refused.WithLabelValues(ReasonHidden)
	}
	if cfg.Metrics != nil && srv.disk != nil {
		cfg.Metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "occase_image_disk_free_bytes",
			Help: "Free bytes on the image store's file system (as the upload disk guard last read them, at most 1 s old)."},
			func() float64 { f, _, _ := srv.disk.read(); return float64(f) }))
	}
	srv.gate.preemptAfter, srv.gate.protectRate = cfg.PreemptAfter, cfg.PreemptBelow
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(srv.refused, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "occase_image_uploads_in_progress",
			Help: "Uploads holding a slot: being received, checked or stored."},
			func() float64 { return float64(srv.gate.inFlight()) }))
	}
	for _, o := range cfg.CORSOrigins {
		if o == "*" {
			srv.anyOrigin = true
		}
		srv.origins[o] = true
	}
	return srv
}

// Register adds the image routes to e: POST, GET, HEAD and OPTIONS on
// "/:digest/:file", and the same on "/*" so that every other path those
// methods reach (traversal attempts, "/d%2Fn.jpg", extra segments) gets
// this server's 400 rather than the router's 404. Echo prefers static and
// longer routes, so the db role's routes on the same instance are not
// affected. The handlers parse the raw path themselves and ignore the
// route parameters.
func (s *Server) Register(e *echo.Echo) {
	for _, p := range []string{"/:digest/:file", "/*"} {
		e.POST(p, s.upload)
		e.GET(p, s.serve)
		e.HEAD(p, s.serve)
		e.OPTIONS(p, s.preflight)
	}
}

const cacheForever = "public, max-age=31536000, immutable"

func (s *Server) upload(c echo.Context) error {
	r, w := c.Request(), c.Response()
	s.cors(w.Header(), r)
	t, err := parseTarget(r.URL.EscapedPath())
	if err != nil {
		return s.fail(c, http.StatusBadRequest, "bad_path")
	}
	// Before a byte of the body is read: a client without a valid name
	// costs us no bandwidth (Go sends "100 Continue" only on first read).
	if !s.signer.Valid(t.digest, t.name) {
		return s.fail(c, http.StatusForbidden, "bad_signature")
	}
	// Gone rather than forbidden: the name was ours, and the app should
	// ask for fresh ones. The image of a name stays readable for ever.
	if !s.signer.Fresh(t.name, s.cfg.NameTTL) {
		return s.fail(c, http.StatusGone, "name_expired")
	}
	if r.ContentLength > s.cfg.MaxBytes {
		return s.fail(c, http.StatusRequestEntityTooLarge, "too_large")
	}
	ctx := r.Context()
	if obj, err := s.store.Open(ctx, t.digest); err == nil {
		obj.Body.Close()
		return s.fail(c, http.StatusConflict, "exists")
	}
	// Before a slot and the body: a full disk costs the client one round
	// trip, and the node nothing.
	if !s.disk.allows(r.ContentLength) {
		return s.fail(c, http.StatusInsufficientStorage, reasonNoSpace)
	}
	slot, busy := s.gate.enter(ctx, s.cfg.ClientKey(r), t.digest, r.ContentLength, s.cfg.QueueWait)
	if slot == nil {
		w.Header().Set("Retry-After", s.retryAfter)
		return s.fail(c, http.StatusServiceUnavailable, busy)
	}
	defer slot.release()

	// net/http sets the connection's read deadline afresh before it reads
	// the next request, so this one ends with the upload.
	paced := newPacedReader(http.MaxBytesReader(w, r.Body, s.cfg.MaxBytes), http.NewResponseController(w),
		time.Now(), s.cfg.UploadTimeout, s.cfg.UploadGrace, s.cfg.MinRate)
	if paced.err != nil {
		s.log.Warn("upload read deadline not supported", zap.Error(paced.err))
	}
	slot.attach(paced)
	body, err := readBody(paced, r.ContentLength, s.cfg.MaxBytes)
	if err != nil && slot.preempted() || err == nil && !paced.done() {
		return s.refusePreempted(c, r)
	}
	if err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			return s.fail(c, http.StatusRequestEntityTooLarge, "too_large")
		case timedOut(err):
			// The rest of that body may still come: do not read it as
			// the next request. (HTTP/2 resets just the stream.)
			if r.ProtoMajor == 1 {
				w.Header().Set("Connection", "close")
			}
			if paced.slow {
				return s.fail(c, http.StatusRequestTimeout, "too_slow")
			}
			return s.fail(c, http.StatusRequestTimeout, "timeout")
		}
		s.log.Debug("upload read failed", zap.String("digest", t.digest), zap.Error(err))
		return s.fail(c, http.StatusBadRequest, "bad_body")
	}

	clean, err := sanitize(body, t.kind, s.cfg.MaxPixels)
	if err != nil {
		code, reason := http.StatusUnsupportedMediaType, "not_image"
		switch {
		case errors.Is(err, errTooManyPix):
			code, reason = http.StatusRequestEntityTooLarge, "too_many_pixels"
		case errors.Is(err, errKindMismatch):
			reason = "type_mismatch"
		case errors.Is(err, errTruncated):
			reason = "truncated"
		}
		s.log.Debug("upload refused", zap.String("digest", t.digest), zap.String("reason", reason), zap.Error(err))
		return s.fail(c, code, reason)
	}
	// The upload is checked: finish storing it even if the client hangs up
	// now, so a retry finds it (409) instead of a half-done state.
	if err := s.store.Create(context.WithoutCancel(ctx), t.digest, bytes.NewReader(clean)); err != nil {
		if errors.Is(err, ErrExists) {
			return s.fail(c, http.StatusConflict, "exists")
		}
		s.log.Error("store upload", zap.String("digest", t.digest), zap.Error(err))
		return s.fail(c, http.StatusInternalServerError, "internal")
	}
	s.log.Info("image stored", zap.String("digest", t.digest), zap.String("type", t.kind.contentType()),
		zap.Int("bytes", len(clean)), zap.Int("stripped", len(body)-len(clean)))
	w.Header().Set("Location", "/"+t.digest+"/"+t.name+"."+t.ext)
	return c.NoContent(http.StatusCreated)
}

func (s *Server) serve(c echo.Context) error {
	r, w := c.Request(), c.Response()
	s.cors(w.Header(), r)
	t, err := parseTarget(r.URL.EscapedPath())
	if err != nil {
		return s.fail(c, http.StatusBadRequest, "bad_path")
	}
	// A digest that does not sign the name can have nothing stored under
	// it; say so without touching the disk.
	if !s.signer.Valid(t.digest, t.name) {
		return s.fail(c, http.StatusNotFound, "not_found")
	}
	// One map lookup: the set is kept in memory from the posts channel.
	// A review URL (review.go) is the operators' way past it; a request
	// that carries one is never cached.
	review := reviewParam(r.URL.RawQuery)
	if s.cfg.Withheld != nil && s.cfg.Withheld.Has(t.digest) {
		rv, ok := s.cfg.Withheld.(Reviewable)
		if review == "" || !ok || !rv.Reviewable(t.digest) || !s.signer.ValidReview(t.digest, review) {
			return s.fail(c, http.StatusNotFound, ReasonHidden)
		}
	}
	obj, err := s.store.Open(r.Context(), t.digest)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return s.fail(c, http.StatusNotFound, "not_found")
		}
		s.log.Error("open image", zap.String("digest", t.digest), zap.Error(err))
		return s.fail(c, http.StatusInternalServerError, "internal")
	}
	defer obj.Body.Close()
	// The stored bytes say what they are; "x.jpeg" and "x.jpg" are the same
	// picture, "x.png" is not.
	k, err := sniffObject(obj.Body)
	if err != nil {
		s.log.Error("read image", zap.String("digest", t.digest), zap.Error(err))
		return s.fail(c, http.StatusInternalServerError, "internal")
	}
	if k != t.kind {
		return s.fail(c, http.StatusNotFound, "not_found")
	}
	h := w.Header()
	h.Set("Content-Type", k.contentType())
	if review != "" {
		h.Set("Cache-Control", "private, no-store")
	} else {
		h.Set("Cache-Control", cacheForever)
	}
	h.Set("X-Content-Type-Options", "nosniff")
	// Content under a key is never replaced, so digest, size and time of
	// storing identify the bytes: a strong validator without hashing them.
	h.Set("ETag", `"`+t.digest+"-"+strconv.FormatInt(obj.Size, 36)+"-"+
		strconv.FormatInt(obj.ModTime.UnixNano(), 36)+`"`)
	http.ServeContent(readerFromResponse{w}, r, "", obj.ModTime, obj.Body)
	return nil
}

func sniffObject(body io.ReadSeeker) (kind, error) {
	var head [12]byte
	var n int
	var err error
	if ra, ok := body.(io.ReaderAt); ok {
		n, err = ra.ReadAt(head[:], 0)
	} else {
		n, err = io.ReadFull(body, head[:])
		if _, serr := body.Seek(0, io.SeekStart); serr != nil {
			return kindNone, serr
		}
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return kindNone, err
	}
	return sniff(head[:n]), nil
}

// readerFromResponse lets http.ServeContent reach net/http's sendfile path:
// echo's Response does not implement io.ReaderFrom, so without this every
// image would be copied through a user-space buffer.
type readerFromResponse struct{ *echo.Response }

func (w readerFromResponse) ReadFrom(src io.Reader) (int64, error) {
	if !w.Committed {
		w.WriteHeader(http.StatusOK)
	}
	n, err := io.Copy(w.Response.Writer, src)
	w.Size += n
	return n, err
}

func (s *Server) preflight(c echo.Context) error {
	r, w := c.Request(), c.Response()
	if _, err := parseTarget(r.URL.EscapedPath()); err != nil {
		return s.fail(c, http.StatusBadRequest, "bad_path")
	}
	h := w.Header()
	if s.cors(h, r) {
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST")
		// The body is raw bytes with an image/* type, which is not a
		// "simple" content type: that is why browsers preflight at all.
		h.Set("Access-Control-Allow-Headers", "Content-Type")
		h.Set("Access-Control-Max-Age", "86400")
	}
	// Without the allow headers the browser refuses by itself.
	return c.NoContent(http.StatusNoContent)
}

// cors sets the CORS response headers for r's Origin and reports whether
// that origin is allowed.
func (s *Server) cors(h http.Header, r *http.Request) bool {
	if len(s.origins) == 0 {
		return false
	}
	if !s.anyOrigin {
		// A CDN must not hand one origin's answer to another.
		h.Add("Vary", "Origin")
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	switch {
	case s.anyOrigin:
		h.Set("Access-Control-Allow-Origin", "*")
	case s.origins[origin]:
		h.Set("Access-Control-Allow-Origin", origin)
	default:
		return false
	}
	h.Set("Access-Control-Expose-Headers", "ETag, Location, Content-Range")
	return true
}

// fail answers with code and a stable reason. Errors are never cached: a
// 404 now may be a 200 once the app has finished uploading.
func (s *Server) fail(c echo.Context, code int, reason string) error {
	s.refused.WithLabelValues(reason).Inc()
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if c.Request().Method == http.MethodHead {
		return c.NoContent(code)
	}
	return c.String(code, reason+"\n")
}
