package broker

import "testing"

func TestKeySlot(t *testing.T) {
	// Values from the Redis Cluster specification and CLUSTER KEYSLOT.
	tests := []struct {
		name string
		key  string
		want uint16
	}{
		{"plain", "foo", 12182},
		{"spec example", "123456789", 12739},
		{"tag", "{user1000}.following", 3443},
		{"same tag, same slot", "{user1000}.followers", 3443},
		{"empty tag hashes the whole key", "foo{}{bar}", 8363},
		{"first tag only", "foo{{bar}}zap", 4015},
		{"channel of user 42", "occase:c:{42}", keySlot("42")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keySlot(tt.key); got != tt.want {
				t.Fatalf("keySlot(%q) = %d, want %d", tt.key, got, tt.want)
			}
		})
	}
}
