package bench

// bitset is a growable set of small integers (sequence numbers).
type bitset []uint64

func (b *bitset) add(i uint64) (had bool) {
	w := int(i / 64)
	for len(*b) <= w {
		*b = append(*b, 0)
	}
	m := uint64(1) << (i % 64)
	had = (*b)[w]&m != 0
	(*b)[w] |= m
	return had
}

func (b bitset) has(i uint64) bool {
	w := int(i / 64)
	return w < len(b) && b[w]&(1<<(i%64)) != 0
}

// outStream is what a sender knows of the messages it sent on one stream
// (one sender to one recipient): how many, and which the server accepted
// or refused. Only the sender's goroutines touch it: sent by its writer,
// acked and failed by its reader, read by the final tally after both ended.
type outStream struct {
	sent   uint64 // seqs 1..sent were written
	acked  bitset // the server replied ok
	failed bitset // the server replied fail
}

// inStream is what a recipient saw of one stream. Only the recipient's
// reader touches it.
type inStream struct {
	got        bitset
	max        uint64
	duplicates uint64
	outOfOrder uint64 // arrived after a higher seq of the same stream
}

// receive records seq and tells whether it is new.
func (s *inStream) receive(seq uint64) bool {
	if s.got.add(seq) {
		s.duplicates++
		return false
	}
	if seq < s.max {
		s.outOfOrder++
	} else {
		s.max = seq
	}
	return true
}

// Tally is the exact account of a set of streams.
type Tally struct {
	Sent        uint64 `json:"sent"`         // written by senders
	Accepted    uint64 `json:"accepted"`     // the server replied ok
	Refused     uint64 `json:"refused"`      // the server replied fail (see errors)
	Delivered   uint64 `json:"delivered"`    // distinct messages read by their recipients
	Lost        uint64 `json:"lost"`         // accepted, never delivered
	Duplicates  uint64 `json:"duplicates"`   // delivered more than once
	OutOfOrder  uint64 `json:"out_of_order"` // delivered after a later one of the same stream
	Unconfirmed uint64 `json:"unconfirmed"`  // neither answered nor delivered by the end (connection lost)
	// Redelivered counts, with --reconnect, messages that came again after
	// a reconnect and were dropped by msg_id (not in Duplicates).
	Redelivered uint64 `json:"redelivered,omitempty"`
}

// tally compares what the sender sent on a stream with what one recipient
// got.
func (t *Tally) add(out *outStream, in *inStream, withSent bool) {
	if withSent {
		t.Sent += out.sent
	}
	for seq := uint64(1); seq <= out.sent; seq++ {
		acked, failed, got := out.acked.has(seq), out.failed.has(seq), in.got.has(seq)
		if withSent {
			if acked {
				t.Accepted++
			}
			if failed {
				t.Refused++
			}
		}
		switch {
		case got:
			t.Delivered++
		case acked:
			t.Lost++
		case !failed:
			t.Unconfirmed++
		}
	}
	// A recipient may have got seqs the sender never counted as sent only
	// if the server invented them; count those as duplicates.
	for seq := out.sent + 1; seq <= in.max; seq++ {
		if in.got.has(seq) {
			t.Duplicates++
		}
	}
	t.Duplicates += in.duplicates
	t.OutOfOrder += in.outOfOrder
}
