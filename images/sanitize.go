package images

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"

	"golang.org/x/image/webp"
)

// Why an upload's bytes were refused. The server maps each to a status code
// and a stable reason.
var (
	errNotImage     = errors.New("not an accepted image")
	errTruncated    = errors.New("image truncated")
	errKindMismatch = errors.New("image type differs from the extension")
	errTooManyPix   = errors.New("image has too many pixels")
)

// sniff decides the type from the leading bytes only.
func sniff(b []byte) kind {
	switch {
	case len(b) >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF:
		return kindJPEG
	case len(b) >= 8 && string(b[:8]) == "\x89PNG\r\n\x1a\n":
		return kindPNG
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return kindWebP
	}
	return kindNone
}

// sanitize checks that b is a complete image of type want with at most
// maxPixels pixels, and returns the bytes to store: b itself when there is
// nothing to remove, else a copy without the metadata that can locate or
// identify a person (see cleanJPEG, cleanPNG, cleanWebP).
//
// It does not decode the pixels. The header is decoded with the standard
// decoders (dimensions, the pixel cap against decompression bombs), and the
// container structure is walked to its end marker (JPEG EOI, PNG IEND with
// every chunk's CRC, the WebP RIFF length), which is what catches a
// truncated upload. A full decode would cost up to a few hundred MB and a
// second of CPU per 50 megapixel upload, for no gain to the reader: a
// corrupt entropy-coded stream is the client decoder's everyday business.
func sanitize(b []byte, want kind, maxPixels int64) ([]byte, error) {
	k := sniff(b)
	if k == kindNone {
		return nil, errNotImage
	}
	if k != want {
		return nil, errKindMismatch
	}
	var cfg image.Config
	var err error
	switch k {
	case kindJPEG:
		cfg, err = jpeg.DecodeConfig(bytes.NewReader(b))
	case kindPNG:
		cfg, err = png.DecodeConfig(bytes.NewReader(b))
	case kindWebP:
		cfg, err = webp.DecodeConfig(bytes.NewReader(b))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotImage, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, errNotImage
	}
	if int64(cfg.Width)*int64(cfg.Height) > maxPixels {
		return nil, errTooManyPix
	}
	switch k {
	case kindJPEG:
		return cleanJPEG(b)
	case kindPNG:
		return cleanPNG(b)
	default:
		return cleanWebP(b)
	}
}

// rewriter builds the cleaned copy lazily: while every byte is kept, nothing
// is copied and the input is returned as is, so images without metadata (all
// that Go's encoders write) are stored byte for byte.
type rewriter struct {
	in      []byte
	out     []byte
	done    int  // in[:done] is accounted for in out (when changed)
	changed bool //
}

// keep accounts for in[from:to] as kept. Spans arrive in order.
func (w *rewriter) keep(from, to int) {
	if w.changed {
		if from != w.done {
			panic("images: rewriter spans out of order")
		}
		w.out = append(w.out, w.in[from:to]...)
	}
	w.done = to
}

// drop leaves in[from:to] out, and optionally puts repl in its place.
func (w *rewriter) drop(from, to int, repl []byte) {
	if !w.changed {
		w.changed = true
		w.out = make([]byte, 0, len(w.in)+len(repl))
		w.out = append(w.out, w.in[:from]...)
	}
	w.out = append(w.out, repl...)
	w.done = to
}

func (w *rewriter) result() []byte {
	if !w.changed {
		return w.in[:w.done]
	}
	return w.out
}

// Orientation is the one EXIF field worth keeping: without it a photo taken
// with the phone on its side is shown sideways.
const tagOrientation = 0x0112

// exifOrientation returns the Orientation (2..8) found in IFD0 of a TIFF
// structure, or 0 when it is absent, 1 (no transform) or unreadable.
func exifOrientation(tiff []byte) uint16 {
	if len(tiff) < 8 {
		return 0
	}
	var bo binary.ByteOrder
	switch string(tiff[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 0
	}
	if bo.Uint16(tiff[2:]) != 42 {
		return 0
	}
	off := int64(bo.Uint32(tiff[4:]))
	if off+2 > int64(len(tiff)) {
		return 0
	}
	n := int64(bo.Uint16(tiff[off:]))
	for i := range n {
		e := off + 2 + 12*i
		if e+12 > int64(len(tiff)) {
			return 0
		}
		if bo.Uint16(tiff[e:]) != tagOrientation {
			continue
		}
		const typeShort = 3
		if bo.Uint16(tiff[e+2:]) != typeShort || bo.Uint32(tiff[e+4:]) != 1 {
			return 0
		}
		if v := bo.Uint16(tiff[e+8:]); 2 <= v && v <= 8 {
			return v
		}
		return 0
	}
	return 0
}

// minimalTIFF is a big-endian TIFF with one IFD holding only Orientation.
func minimalTIFF(orientation uint16) []byte {
	t := []byte{
		'M', 'M', 0, 42, 0, 0, 0, 8, // header, IFD0 at offset 8
		0, 1, // one entry
		0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, // Orientation, SHORT, count 1, value
		0, 0, 0, 0, // no next IFD
	}
	binary.BigEndian.PutUint16(t[18:], orientation)
	return t
}

const exifHeader = "Exif\x00\x00"

// cleanJPEG walks the segments from SOI to EOI, through the entropy-coded
// data of every scan, and drops: every APPn segment except APP0 (JFIF),
// APP2 "ICC_PROFILE" (colour) and APP14 "Adobe" (colour transform), so
// EXIF (GPS, camera serial, thumbnail), XMP, MPF, IPTC/Photoshop (APP13) and
// vendor blocks all go; every COM segment; and any bytes after EOI, which
// is where MPF and vendor extensions append secondary images that carry
// their own EXIF. When the first EXIF segment had an Orientation other than
// 1, a minimal EXIF segment holding only that Orientation takes its place.
func cleanJPEG(b []byte) ([]byte, error) {
	w := &rewriter{in: b}
	w.keep(0, 2) // SOI
	pos := 2
	sawScan, wroteOrientation := false, false
	for {
		if pos >= len(b) {
			return nil, errTruncated
		}
		if b[pos] != 0xFF {
			// Stray bytes between segments: libjpeg and Go skip them with
			// a warning; so do we, and they are not stored.
			i := bytes.IndexByte(b[pos:], 0xFF)
			if i < 0 {
				return nil, errTruncated
			}
			w.drop(pos, pos+i, nil)
			pos += i
		}
		start := pos
		for pos < len(b) && b[pos] == 0xFF {
			pos++ // fill bytes
		}
		if pos >= len(b) {
			return nil, errTruncated
		}
		m := b[pos]
		pos++
		switch {
		case m == 0xD9: // EOI
			if !sawScan {
				return nil, errNotImage
			}
			w.keep(start, pos)
			if pos < len(b) {
				w.drop(pos, len(b), nil)
			}
			return w.result(), nil
		case m == 0x00 || m == 0xD8:
			return nil, errNotImage
		case 0xD0 <= m && m <= 0xD7 || m == 0x01: // no length
			w.keep(start, pos)
			continue
		}
		if pos+2 > len(b) {
			return nil, errTruncated
		}
		n := int(binary.BigEndian.Uint16(b[pos:]))
		if n < 2 {
			return nil, errNotImage
		}
		end := pos + n
		if end > len(b) {
			return nil, errTruncated
		}
		payload := b[pos+2 : end]
		pos = end
		if 0xE0 <= m && m <= 0xEF || m == 0xFE {
			if keepJPEGSegment(m, payload) {
				w.keep(start, end)
				continue
			}
			var repl []byte
			if m == 0xE1 && !wroteOrientation && bytes.HasPrefix(payload, []byte(exifHeader)) {
				if o := exifOrientation(payload[len(exifHeader):]); o != 0 {
					repl = jpegExifSegment(o)
				}
				// Only the first EXIF block counts, as for readers.
				wroteOrientation = true
			}
			w.drop(start, end, repl)
			continue
		}
		w.keep(start, end)
		if m != 0xDA { // SOS
			continue
		}
		sawScan = true
		// Entropy-coded data runs to the next marker: 0xFF followed by
		// neither a stuffed 0x00 nor a restart marker.
		i := pos
		for {
			j := bytes.IndexByte(b[i:], 0xFF)
			if j < 0 || i+j+1 >= len(b) {
				return nil, errTruncated
			}
			i += j
			if c := b[i+1]; c == 0x00 || 0xD0 <= c && c <= 0xD7 {
				i += 2
				continue
			}
			break
		}
		w.keep(pos, i)
		pos = i
	}
}

func keepJPEGSegment(m byte, payload []byte) bool {
	switch m {
	case 0xE0: // JFIF / JFXX
		return true
	case 0xE2:
		return bytes.HasPrefix(payload, []byte("ICC_PROFILE\x00"))
	case 0xEE:
		return bytes.HasPrefix(payload, []byte("Adobe"))
	}
	return false
}

func jpegExifSegment(orientation uint16) []byte {
	t := minimalTIFF(orientation)
	seg := make([]byte, 0, 4+len(exifHeader)+len(t))
	seg = append(seg, 0xFF, 0xE1, 0, 0)
	seg = append(seg, exifHeader...)
	seg = append(seg, t...)
	binary.BigEndian.PutUint16(seg[2:], uint16(len(seg)-2))
	return seg
}
