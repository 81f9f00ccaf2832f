package wire

import "fmt"

// ChannelHash packs a menu code cut to depth d into the 64-bit channel hash
// of PROTOCOL.md section 4. A code shorter than d hashes to 0. A component
// too wide for its field is an error: it would bleed into the next field.
func ChannelHash(code []uint64, d int) (uint64, error) {
	var widths []uint
	switch d {
	case 1:
		widths = []uint{64}
	case 2:
		widths = []uint{32, 32}
	case 3:
		widths = []uint{22, 21, 21}
	case 4:
		widths = []uint{16, 16, 16, 16}
	default:
		return 0, fmt.Errorf("menu depth %d is not in 1..4", d)
	}
	if len(code) < d {
		return 0, nil
	}
	var h uint64
	for i := 0; i < d; i++ {
		w := widths[i]
		if w < 64 && code[i] >= 1<<w {
			return 0, fmt.Errorf("code component %d (%d) does not fit in %d bits", i, code[i], w)
		}
		if w < 64 {
			h <<= w
		}
		h |= code[i]
	}
	return h, nil
}
