package posts

import (
	"strconv"
)

func deletedFrame(id uint64) []byte {
	b := []byte(`{"cmd":"post_deleted","id":`)
	b = strconv.AppendUint(b, id, 10)
	return append(b, '}')
}

func liveFrame(p *Post) []byte {
	return itemsFrame([]*Post{p})
}

func itemsFrame(ps []*Post) []byte {
	n := 32
	for _, p := range ps {
		n += len(p.JSON) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, `{"cmd":"post","items":[`...)
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p.JSON...)
	}
	return append(b, "]}"...)
}
