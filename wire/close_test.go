package wire

import "testing"

// TestCloseTable: the table is in code order without repeats (Close
// searches it), and every close constant has its row.
func TestCloseTable(t *testing.T) {
	all := CloseCodes()
	for i := 1; i < len(all); i++ {
		if all[i-1].Code >= all[i].Code {
			t.Fatalf("close table out of order at %d, %d", all[i-1].Code, all[i].Code)
		}
	}
	for _, code := range []int{CloseNormal, CloseGoingAway, CloseUnsupported, CloseInvalidPayload, ClosePolicy,
		CloseTooBig, CloseInternal, CloseReplaced, CloseLoginTimeout, CloseBadCredentials, CloseSlowConsumer,
		CloseIdle, CloseRateExceeded, CloseAccountDeleted} {
		if c, ok := Close(code); !ok || c.Code != code {
			t.Errorf("close code %d has no row", code)
		}
	}
	if _, ok := Close(1006); ok {
		t.Error("1006 is never sent by the server, yet has a row")
	}
	if CloseReason(CloseRateExceeded) != "rate exceeded" {
		t.Errorf("CloseReason(4006) = %q", CloseReason(CloseRateExceeded))
	}
}
