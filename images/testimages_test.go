package images

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"
)

// Test images are made here, with the standard encoders, and metadata is
// spliced in by hand so each test knows exactly which bytes must go.

// testPicture is a w×h gradient, different enough per pixel that a decoder
// mistake would show.
func testPicture(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x * 7), uint8(y * 13), uint8(x ^ y), 255})
		}
	}
	return img
}

func encodeJPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, testPicture(w, h), &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodePNG(t testing.TB, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, testPicture(w, h)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// gpsLatitude is the marker a leak would show: the rational 48/1 (degrees)
// as stored in the GPS IFD.
var gpsLatitude = []byte{0, 0, 0, 48, 0, 0, 0, 1, 0, 0, 0, 51, 0, 0, 0, 1, 0, 0, 0, 24, 0, 0, 0, 1}

// exifTIFF builds a big-endian TIFF with IFD0 = {Make, Orientation (when
// orientation != 0), GPSInfo} and a GPS IFD with a latitude.
func exifTIFF(orientation uint16) []byte {
	be := binary.BigEndian
	type entry struct {
		tag, typ uint16
		count    uint32
		value    uint32
	}
	var ifd0 []entry
	ifd0 = append(ifd0, entry{0x010F, 2, 4, be.Uint32([]byte("ACM\x00"))}) // Make
	if orientation != 0 {
		ifd0 = append(ifd0, entry{0x0112, 3, 1, uint32(orientation) << 16})
	}
	// Layout: header(8) | IFD0 | GPS IFD (2 entries) | latitude data.
	ifd0Size := 2 + 12*(len(ifd0)+1) + 4
	gpsOff := 8 + ifd0Size
	gpsSize := 2 + 12*2 + 4
	latOff := gpsOff + gpsSize
	ifd0 = append(ifd0, entry{0x8825, 4, 1, uint32(gpsOff)})
	gps := []entry{
		{0x0001, 2, 2, be.Uint32([]byte("N\x00\x00\x00"))},
		{0x0002, 5, 3, uint32(latOff)},
	}
	out := []byte{'M', 'M', 0, 42, 0, 0, 0, 8}
	writeIFD := func(es []entry) {
		out = be.AppendUint16(out, uint16(len(es)))
		for _, e := range es {
			out = be.AppendUint16(out, e.tag)
			out = be.AppendUint16(out, e.typ)
			out = be.AppendUint32(out, e.count)
			out = be.AppendUint32(out, e.value)
		}
		out = be.AppendUint32(out, 0)
	}
	writeIFD(ifd0)
	writeIFD(gps)
	return append(out, gpsLatitude...)
}

func jpegSegment(marker byte, payload []byte) []byte {
	s := []byte{0xFF, marker, 0, 0}
	binary.BigEndian.PutUint16(s[2:], uint16(len(payload)+2))
	return append(s, payload...)
}

const xmpGPS = `<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description exif:GPSLatitude="48,51.4N"/></x:xmpmeta>`

// jpegWithMetadata returns plain (from Go's encoder) with, right after SOI,
// a JFIF APP0, an EXIF APP1 (GPS, and Orientation if not 0), an XMP APP1,
// an ICC APP2, an APP13, a COM, and after EOI a trailing secondary image
// carrying EXIF again, as MPF files do.
func jpegWithMetadata(plain []byte, orientation uint16) []byte {
	var b []byte
	b = append(b, plain[:2]...)
	b = append(b, jpegSegment(0xE0, []byte("JFIF\x00\x01\x02\x00\x00\x01\x00\x01\x00\x00"))...)
	b = append(b, jpegSegment(0xE1, append([]byte(exifHeader), exifTIFF(orientation)...))...)
	b = append(b, jpegSegment(0xE1, []byte("http://ns.adobe.com/xap/1.0/\x00"+xmpGPS))...)
	b = append(b, jpegSegment(0xE2, []byte("ICC_PROFILE\x00\x01\x01fake-profile"))...)
	b = append(b, jpegSegment(0xED, []byte("Photoshop 3.0\x00GPS 48,51.4N"))...)
	b = append(b, jpegSegment(0xFE, []byte("shot at 48,51.4N"))...)
	b = append(b, plain[2:]...)
	// A trailing "secondary image" with its own EXIF.
	b = append(b, 0xFF, 0xD8)
	b = append(b, jpegSegment(0xE1, append([]byte(exifHeader), exifTIFF(0)...))...)
	return append(b, 0xFF, 0xD9)
}

func pngChunkTest(typ string, data []byte) []byte { return pngChunk(typ, data) }

// pngWithMetadata inserts after IHDR: eXIf (GPS, and Orientation if not 0),
// a tEXt, an iTXt XMP, a gAMA (kept), and appends bytes after IEND.
func pngWithMetadata(plain []byte, orientation uint16) []byte {
	ihdrEnd := 8 + 12 + 13
	var b []byte
	b = append(b, plain[:ihdrEnd]...)
	b = append(b, pngChunkTest("eXIf", exifTIFF(orientation))...)
	b = append(b, pngChunkTest("tEXt", []byte("Comment\x00shot at 48,51.4N"))...)
	b = append(b, pngChunkTest("iTXt", []byte("XML:com.adobe.xmp\x00\x00\x00\x00\x00"+xmpGPS))...)
	b = append(b, pngChunkTest("gAMA", []byte{0, 0, 0xB1, 0x8F})...)
	b = append(b, plain[ihdrEnd:]...)
	return append(b, []byte("trailing 48,51.4N")...)
}

// Two 1×1 WebP files (lossless and lossy), as found in browser feature
// tests; there is no WebP encoder in Go's libraries.
var (
	webpLossless = mustHex("524946461a000000574542505650384c0d0000002f00000010071011118888fe0700")
	webpLossy    = mustHex("52494646220000005745425056503820160000003001009d012a010001000ec0fe25a400037000000000")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func riffChunk(fourcc string, data []byte) []byte {
	c := append([]byte(fourcc), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(c[4:], uint32(len(data)))
	c = append(c, data...)
	if len(data)%2 == 1 {
		c = append(c, 0)
	}
	return c
}

// webpExtended wraps the image chunks of a simple 1×1 WebP in the extended
// format with VP8X (EXIF and XMP flags set), EXIF and XMP chunks, and a
// trailing byte run past the RIFF length.
func webpExtended(simple []byte, orientation uint16) []byte {
	vp8x := []byte{vp8xEXIF | vp8xXMP, 0, 0, 0, 0, 0, 0, 0, 0, 0} // canvas 1×1 (stored minus one)
	body := []byte("WEBP")
	body = append(body, riffChunk("VP8X", vp8x)...)
	body = append(body, simple[12:]...)
	body = append(body, riffChunk("EXIF", exifTIFF(orientation))...)
	body = append(body, riffChunk("XMP ", []byte(xmpGPS))...)
	out := []byte("RIFF\x00\x00\x00\x00")
	binary.LittleEndian.PutUint32(out[4:], uint32(len(body)))
	out = append(out, body...)
	return append(out, "trailing"...)
}

// pngChunks lists the chunk types of a PNG, checking each CRC.
func pngChunks(t testing.TB, b []byte) []string {
	t.Helper()
	var types []string
	for pos := 8; pos < len(b); {
		n := int(binary.BigEndian.Uint32(b[pos:]))
		end := pos + 12 + n
		if crc32.ChecksumIEEE(b[pos+4:end-4]) != binary.BigEndian.Uint32(b[end-4:]) {
			t.Fatalf("bad CRC on %s", b[pos+4:pos+8])
		}
		types = append(types, string(b[pos+4:pos+8]))
		pos = end
	}
	return types
}
