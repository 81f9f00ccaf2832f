package images

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
)

// pngKeep lists the ancillary chunks that are stored: those that change
// how the pixels look (transparency, colour, gamma, HDR metadata, density)
// and APNG animation. Every other ancillary chunk is dropped: eXIf, the
// text chunks (tEXt, zTXt, iTXt carry XMP, and ImageMagick's "Raw profile
// type exif" with GPS), tIME, and anything private or unknown.
var pngKeep = map[string]bool{
	"tRNS": true, "cHRM": true, "gAMA": true, "iCCP": true, "sBIT": true,
	"sRGB": true, "cICP": true, "mDCV": true, "cLLI": true, "bKGD": true,
	"hIST": true, "pHYs": true, "sPLT": true,
	"acTL": true, "fcTL": true, "fdAT": true,
}

// cleanPNG walks every chunk from the signature to IEND, checking each CRC,
// and drops the chunks pngKeep does not list and any bytes after IEND. An
// eXIf chunk with an Orientation other than 1 is replaced by a minimal eXIf
// holding only that Orientation.
func cleanPNG(b []byte) ([]byte, error) {
	w := &rewriter{in: b}
	w.keep(0, 8)
	pos := 8
	first, sawData, wroteOrientation := true, false, false
	for {
		if pos+12 > len(b) {
			return nil, errTruncated
		}
		n := binary.BigEndian.Uint32(b[pos:])
		if n > 1<<31-1 {
			return nil, errNotImage
		}
		end := pos + 12 + int(n)
		if end > len(b) || end < pos {
			return nil, errTruncated
		}
		typ := string(b[pos+4 : pos+8])
		if crc32.ChecksumIEEE(b[pos+4:end-4]) != binary.BigEndian.Uint32(b[end-4:]) {
			// A bad CRC on the last chunk read is what a cut-off upload
			// looks like when the cut falls inside a chunk's data.
			return nil, errTruncated
		}
		if first && typ != "IHDR" {
			return nil, errNotImage
		}
		first = false
		critical := typ[0]&0x20 == 0
		switch {
		case typ == "IEND":
			if !sawData {
				return nil, errNotImage
			}
			w.keep(pos, end)
			if end < len(b) {
				w.drop(end, len(b), nil)
			}
			return w.result(), nil
		case typ == "IDAT":
			sawData = true
			w.keep(pos, end)
		case critical && (typ == "IHDR" || typ == "PLTE"):
			w.keep(pos, end)
		case critical:
			// An unknown critical chunk means a decoder must refuse it.
			return nil, errNotImage
		case pngKeep[typ]:
			w.keep(pos, end)
		case typ == "eXIf" && !wroteOrientation:
			wroteOrientation = true
			var repl []byte
			data := b[pos+8 : end-4]
			// Some writers keep JPEG's "Exif\0\0" prefix.
			data = bytes.TrimPrefix(data, []byte(exifHeader))
			if o := exifOrientation(data); o != 0 {
				repl = pngChunk("eXIf", minimalTIFF(o))
			}
			w.drop(pos, end, repl)
		default:
			w.drop(pos, end, nil)
		}
		pos = end
	}
}

func pngChunk(typ string, data []byte) []byte {
	c := make([]byte, 8, 12+len(data))
	binary.BigEndian.PutUint32(c, uint32(len(data)))
	copy(c[4:], typ)
	c = append(c, data...)
	return binary.BigEndian.AppendUint32(c, crc32.ChecksumIEEE(c[4:]))
}
