package broker

import (
	"strings"

	"github.com/redis/rueidis"
)

// hashTag returns the part of key that Redis Cluster hashes: the text
// between the first '{' and the next '}' when that is not empty, else the
// whole key.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// keySlot is the Redis Cluster slot of key (or of a sharded channel), as
// rueidis computes it for the commands it routes: SetSlot on an empty
// command is the one place its slot function is exported.
func keySlot(key string) uint16 {
	c := rueidis.Completed{}.SetSlot(key)
	return c.Slot()
}
