package images

import (
	"bytes"
	"encoding/binary"
)

// VP8X flag bits (WebP container specification).
const (
	vp8xEXIF = 0x08
	vp8xXMP  = 0x04
)

// cleanWebP walks the RIFF chunks and keeps only VP8X, ICCP, ANIM, ANMF,
// ALPH, "VP8 " and VP8L: EXIF, "XMP " and unknown chunks are dropped, as
// are bytes past the RIFF length. When the dropped EXIF had an Orientation
// other than 1 and the file is in the extended format (VP8X), a minimal
// EXIF chunk with only that Orientation is appended, where the spec puts
// EXIF. The VP8X EXIF and XMP flags and the RIFF length are then rewritten
// to match. A simple-format file (no VP8X) cannot legally carry EXIF, so
// an orientation found there is not kept.
func cleanWebP(b []byte) ([]byte, error) {
	size := int64(binary.LittleEndian.Uint32(b[4:]))
	riffEnd := 8 + size
	if riffEnd > int64(len(b)) {
		return nil, errTruncated
	}
	if size < 4 {
		return nil, errNotImage
	}
	end := int(riffEnd)
	var kept [][2]int
	changed := end < len(b)
	vp8x := -1 // index in kept
	sawData := false
	var orientation uint16
	sawEXIF := false
	for pos := 12; pos < end; {
		if pos+8 > end {
			return nil, errTruncated
		}
		fourcc := string(b[pos : pos+4])
		n := int64(binary.LittleEndian.Uint32(b[pos+4:]))
		dataEnd := int64(pos) + 8 + n
		if dataEnd > riffEnd {
			return nil, errTruncated
		}
		next := int(min(dataEnd+(n&1), riffEnd)) // chunks are padded to even
		switch fourcc {
		case "VP8X":
			if pos != 12 || n < 10 {
				return nil, errNotImage
			}
			vp8x = len(kept)
			kept = append(kept, [2]int{pos, next})
		case "VP8 ", "VP8L", "ANMF":
			sawData = true
			kept = append(kept, [2]int{pos, next})
		case "ICCP", "ANIM", "ALPH":
			kept = append(kept, [2]int{pos, next})
		case "EXIF":
			changed = true
			if !sawEXIF {
				sawEXIF = true
				data := bytes.TrimPrefix(b[pos+8:dataEnd], []byte(exifHeader))
				orientation = exifOrientation(data)
			}
		default:
			changed = true
		}
		pos = next
	}
	if !sawData {
		return nil, errNotImage
	}
	if !changed {
		return b, nil
	}
	out := make([]byte, 12, end+32)
	copy(out, b[:12])
	flagsAt := -1
	for i, k := range kept {
		if i == vp8x {
			flagsAt = len(out) + 8
		}
		out = append(out, b[k[0]:k[1]]...)
	}
	if flagsAt >= 0 {
		out[flagsAt] &^= vp8xEXIF | vp8xXMP
		if orientation != 0 {
			out[flagsAt] |= vp8xEXIF
			t := minimalTIFF(orientation)
			out = append(out, 'E', 'X', 'I', 'F')
			out = binary.LittleEndian.AppendUint32(out, uint32(len(t)))
			out = append(out, t...) // 26 bytes: even, no padding
		}
	}
	binary.LittleEndian.PutUint32(out[4:], uint32(len(out)-8))
	return out, nil
}
