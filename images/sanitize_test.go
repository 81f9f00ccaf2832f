package images

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/jpeg"
	"image/png"
	"testing"

	"golang.org/x/image/webp"
)

const testMaxPixels = 50_000_000

// leaks reports the first location marker found in b.
func leaks(b []byte) string {
	for _, m := range [][]byte{gpsLatitude, []byte("48,51.4N"), []byte("ACM\x00")} {
		if bytes.Contains(b, m) {
			return string(m)
		}
	}
	return ""
}

func samePixels(t *testing.T, a, b []byte, decode func([]byte) (image.Image, error)) {
	t.Helper()
	ia, err := decode(a)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := decode(b)
	if err != nil {
		t.Fatalf("cleaned image does not decode: %v", err)
	}
	if ia.Bounds() != ib.Bounds() {
		t.Fatalf("bounds %v, want %v", ib.Bounds(), ia.Bounds())
	}
	r := ia.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if ia.At(x, y) != ib.At(x, y) {
				t.Fatalf("pixel (%d,%d) differs", x, y)
			}
		}
	}
}

func decodeJPEG(b []byte) (image.Image, error) { return jpeg.Decode(bytes.NewReader(b)) }
func decodePNG(b []byte) (image.Image, error)  { return png.Decode(bytes.NewReader(b)) }
func decodeWebP(b []byte) (image.Image, error) { return webp.Decode(bytes.NewReader(b)) }

// jpegOrientation finds the EXIF Orientation of a JPEG, the way a viewer
// does: the first APP1 starting with the EXIF header.
func jpegOrientation(t *testing.T, b []byte) (o uint16, app1 int) {
	t.Helper()
	for pos := 2; pos+4 <= len(b) && b[pos] == 0xFF; {
		m := b[pos+1]
		if m == 0xDA {
			break
		}
		n := int(binary.BigEndian.Uint16(b[pos+2:]))
		payload := b[pos+4 : pos+2+n]
		if m == 0xE1 {
			app1++
			if o == 0 && bytes.HasPrefix(payload, []byte(exifHeader)) {
				o = exifOrientation(payload[len(exifHeader):])
			}
		}
		pos += 2 + n
	}
	return o, app1
}

func TestSanitizePlainUnchanged(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		k    kind
	}{
		{"jpeg", encodeJPEG(t, 40, 30), kindJPEG},
		{"png", encodePNG(t, 40, 30), kindPNG},
		{"webp lossless", webpLossless, kindWebP},
		{"webp lossy", webpLossy, kindWebP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sanitize(tc.b, tc.k, testMaxPixels)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.b) {
				t.Fatal("an image without metadata was changed")
			}
		})
	}
}

func TestSanitizeJPEGMetadata(t *testing.T) {
	plain := encodeJPEG(t, 40, 30)
	for _, o := range []uint16{0, 1, 6, 8} {
		in := jpegWithMetadata(plain, o)
		got, err := sanitize(in, kindJPEG, testMaxPixels)
		if err != nil {
			t.Fatalf("orientation %d: %v", o, err)
		}
		if l := leaks(got); l != "" {
			t.Fatalf("orientation %d: %q survived", o, l)
		}
		if !bytes.Contains(got, []byte("ICC_PROFILE")) || !bytes.Contains(got, []byte("JFIF")) {
			t.Fatalf("orientation %d: JFIF or ICC profile dropped", o)
		}
		gotO, app1 := jpegOrientation(t, got)
		wantO, wantApp1 := o, 1
		if o <= 1 {
			wantO, wantApp1 = 0, 0 // 1 is the default: nothing to keep
		}
		if gotO != wantO || app1 != wantApp1 {
			t.Fatalf("orientation %d: got orientation %d in %d APP1 segments", o, gotO, app1)
		}
		if !bytes.HasSuffix(got, []byte{0xFF, 0xD9}) || bytes.Count(got, []byte{0xFF, 0xD8}) != 1 {
			t.Fatalf("orientation %d: trailing data kept", o)
		}
		samePixels(t, plain, got, decodeJPEG)
		again, err := sanitize(got, kindJPEG, testMaxPixels)
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("orientation %d: second pass changed the image (%v)", o, err)
		}
	}
}

func TestSanitizePNGMetadata(t *testing.T) {
	plain := encodePNG(t, 40, 30)
	for _, o := range []uint16{0, 6} {
		got, err := sanitize(pngWithMetadata(plain, o), kindPNG, testMaxPixels)
		if err != nil {
			t.Fatal(err)
		}
		if l := leaks(got); l != "" {
			t.Fatalf("orientation %d: %q survived", o, l)
		}
		want := []string{"IHDR", "gAMA", "IDAT", "IEND"}
		if o == 6 {
			want = []string{"IHDR", "eXIf", "gAMA", "IDAT", "IEND"}
		}
		chunks := pngChunks(t, got)
		// Go's encoder may split IDAT; compare the distinct sequence.
		var compact []string
		for _, c := range chunks {
			if len(compact) == 0 || compact[len(compact)-1] != c {
				compact = append(compact, c)
			}
		}
		if len(compact) != len(want) {
			t.Fatalf("orientation %d: chunks %v, want %v", o, compact, want)
		}
		for i := range want {
			if compact[i] != want[i] {
				t.Fatalf("orientation %d: chunks %v, want %v", o, compact, want)
			}
		}
		if o == 6 {
			i := bytes.Index(got, []byte("eXIf"))
			if exifOrientation(got[i+4:]) != 6 {
				t.Fatal("orientation lost")
			}
		}
		samePixels(t, plain, got, decodePNG)
	}
}

func TestSanitizeWebPMetadata(t *testing.T) {
	for _, simple := range [][]byte{webpLossless, webpLossy} {
		for _, o := range []uint16{0, 3} {
			got, err := sanitize(webpExtended(simple, o), kindWebP, testMaxPixels)
			if err != nil {
				t.Fatal(err)
			}
			if l := leaks(got); l != "" {
				t.Fatalf("%q survived", l)
			}
			if int(binary.LittleEndian.Uint32(got[4:]))+8 != len(got) {
				t.Fatal("RIFF length not rewritten")
			}
			flags := got[12+8]
			i := bytes.Index(got, []byte("EXIF"))
			switch {
			case o == 0 && (flags&(vp8xEXIF|vp8xXMP) != 0 || i >= 0):
				t.Fatalf("flags %#x, EXIF at %d: metadata announced", flags, i)
			case o != 0 && (flags != vp8xEXIF || i < 0 || exifOrientation(got[i+8:]) != o):
				t.Fatalf("flags %#x, EXIF at %d: orientation lost", flags, i)
			}
			if bytes.Contains(got, []byte("XMP ")) || bytes.Contains(got, []byte("trailing")) {
				t.Fatal("XMP or trailing bytes kept")
			}
			samePixels(t, simple, got, decodeWebP)
		}
	}
}

func TestSanitizeRefuses(t *testing.T) {
	jpg := encodeJPEG(t, 40, 30)
	pngb := encodePNG(t, 40, 30)
	badCRC := bytes.Clone(pngb)
	badCRC[8+12+13-1] ^= 1 // IHDR's CRC
	tests := []struct {
		name string
		b    []byte
		k    kind
		max  int64
		want error
	}{
		{"empty", nil, kindJPEG, testMaxPixels, errNotImage},
		{"text", []byte("<svg xmlns='http://www.w3.org/2000/svg'/>"), kindPNG, testMaxPixels, errNotImage},
		{"gif", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), kindPNG, testMaxPixels, errNotImage},
		{"jpeg magic only", []byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 2}, kindJPEG, testMaxPixels, errNotImage},
		{"png as jpg", pngb, kindJPEG, testMaxPixels, errKindMismatch},
		{"jpeg as png", jpg, kindPNG, testMaxPixels, errKindMismatch},
		{"jpeg as webp", jpg, kindWebP, testMaxPixels, errKindMismatch},
		{"too many pixels", jpg, kindJPEG, 40*30 - 1, errTooManyPix},
		{"png too many pixels", pngb, kindPNG, 40*30 - 1, errTooManyPix},
		{"png bad crc", badCRC, kindPNG, testMaxPixels, errNotImage},
		{"jpeg no EOI", jpg[:len(jpg)-2], kindJPEG, testMaxPixels, errTruncated},
		{"png no IEND", pngb[:len(pngb)-12], kindPNG, testMaxPixels, errTruncated},
		{"webp short", webpLossy[:len(webpLossy)-1], kindWebP, testMaxPixels, errTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sanitize(tc.b, tc.k, tc.max)
			if err == nil {
				t.Fatalf("accepted (%d bytes)", len(got))
			}
			// A header that cannot be decoded is "not an image"; a CRC or
			// structure error after a good header is "truncated".
			if !errors.Is(err, tc.want) && !(tc.want == errNotImage && errors.Is(err, errTruncated)) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// Every cut of a valid image is refused, whatever the format: this is what
// a dropped connection with a lying client, or a broken app, produces.
func TestSanitizeEveryTruncation(t *testing.T) {
	// The metadata JPEG without its trailing image, so EOI is the last
	// byte; the extended WebP without the bytes past its RIFF length.
	withMeta := jpegWithMetadata(encodeJPEG(t, 16, 16), 6)
	withMeta = withMeta[:bytes.LastIndex(withMeta, []byte{0xFF, 0xD8})]
	extended := webpExtended(webpLossy, 6)
	extended = extended[:len(extended)-len("trailing")]
	tests := []struct {
		name string
		b    []byte
		k    kind
	}{
		{"jpeg", encodeJPEG(t, 16, 16), kindJPEG},
		{"jpeg with metadata", withMeta, kindJPEG},
		{"png", encodePNG(t, 16, 16), kindPNG},
		{"webp lossless", webpLossless, kindWebP},
		{"webp lossy", webpLossy, kindWebP},
		{"webp extended", extended, kindWebP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := sanitize(tc.b, tc.k, testMaxPixels); err != nil {
				t.Fatalf("whole image refused: %v", err)
			}
			for n := range len(tc.b) {
				if _, err := sanitize(tc.b[:n], tc.k, testMaxPixels); err == nil {
					t.Fatalf("accepted the first %d of %d bytes", n, len(tc.b))
				}
			}
		})
	}
}

// FuzzSanitize feeds arbitrary bytes to the container walkers: they must
// not panic, and what they accept must be a decodable image of the same
// type that a second pass leaves unchanged.
func FuzzSanitize(f *testing.F) {
	f.Add(encodeJPEG(f, 8, 8), uint8(kindJPEG))
	f.Add(jpegWithMetadata(encodeJPEG(f, 8, 8), 6), uint8(kindJPEG))
	f.Add(encodePNG(f, 8, 8), uint8(kindPNG))
	f.Add(pngWithMetadata(encodePNG(f, 8, 8), 6), uint8(kindPNG))
	f.Add(webpLossy, uint8(kindWebP))
	f.Add(webpExtended(webpLossless, 6), uint8(kindWebP))
	f.Fuzz(func(t *testing.T, b []byte, k uint8) {
		want := kind(k%3 + 1)
		got, err := sanitize(b, want, 1<<20)
		if err != nil {
			return
		}
		if sniff(got) != want {
			t.Fatalf("accepted as %d, stored bytes sniff as %d", want, sniff(got))
		}
		again, err := sanitize(got, want, 1<<20)
		if err != nil {
			t.Fatalf("stored bytes refused on a second pass: %v", err)
		}
		if !bytes.Equal(again, got) {
			t.Fatal("second pass changed the stored bytes")
		}
	})
}

func TestExifOrientation(t *testing.T) {
	le := func(o uint16, typ uint16, count uint32) []byte {
		b := []byte{'I', 'I', 42, 0, 8, 0, 0, 0, 2, 0}
		b = binary.LittleEndian.AppendUint16(b, 0x010F) // Make, skipped
		b = binary.LittleEndian.AppendUint16(b, 2)
		b = binary.LittleEndian.AppendUint32(b, 4)
		b = append(b, 'A', 'C', 'M', 0)
		b = binary.LittleEndian.AppendUint16(b, tagOrientation)
		b = binary.LittleEndian.AppendUint16(b, typ)
		b = binary.LittleEndian.AppendUint32(b, count)
		b = binary.LittleEndian.AppendUint16(b, o)
		return append(b, 0, 0, 0, 0, 0, 0)
	}
	tests := []struct {
		name string
		tiff []byte
		want uint16
	}{
		{"little endian", le(8, 3, 1), 8},
		{"big endian", minimalTIFF(5), 5},
		{"normal is nothing to keep", le(1, 3, 1), 0},
		{"out of range", le(9, 3, 1), 0},
		{"wrong type", le(6, 4, 1), 0},
		{"wrong count", le(6, 3, 2), 0},
		{"no orientation", exifTIFF(0), 0},
		{"with GPS", exifTIFF(6), 6},
		{"cut in the IFD", le(6, 3, 1)[:20], 0},
		{"IFD offset past the end", []byte{'M', 'M', 0, 42, 0xFF, 0xFF, 0xFF, 0xF0}, 0},
		{"not TIFF", []byte("Exif\x00\x00MM\x00*"), 0},
		{"empty", nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := exifOrientation(tc.tiff); got != tc.want {
				t.Fatalf("exifOrientation = %d, want %d", got, tc.want)
			}
		})
	}
}

// Bytes between segments are skipped by decoders (libjpeg warns); they are
// accepted and not stored. Fill bytes before a marker are kept as they are.
func TestSanitizeJPEGStrayAndFillBytes(t *testing.T) {
	plain := encodeJPEG(t, 16, 16)
	// After SOI and the first segment (DQT), add "junk" then fill bytes.
	n := int(binary.BigEndian.Uint16(plain[4:]))
	cut := 4 + n
	in := append(append(append([]byte{}, plain[:cut]...), "junk\xFF\xFF"...), plain[cut:]...)
	got, err := sanitize(in, kindJPEG, testMaxPixels)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte{}, plain[:cut]...), "\xFF\xFF"...), plain[cut:]...)
	if !bytes.Equal(got, want) {
		t.Fatal("stray bytes kept or fill bytes lost")
	}
	samePixels(t, plain, got, decodeJPEG)
}
