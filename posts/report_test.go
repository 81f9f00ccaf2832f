package posts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestParseReport(t *testing.T) {
	tests := []struct {
		name, frame string
		id          uint64
		reason      string // the refusal's; "" accepted
		text        string
	}{
		{"plain", `{"cmd":"report","id":7,"reason":"spam"}`, 7, "", ""},
		{"text", `{"cmd":"report","id":7,"reason":"other","text":"line one\nline \"two\""}`, 7, "", "line one\nline \"two\""},
		{"null text", `{"cmd":"report","id":7,"reason":"scam","text":null}`, 7, "", ""},
		{"280 characters", `{"cmd":"report","id":7,"reason":"other","text":"` + strings.Repeat(`\u00e9`, 280) + `"}`, 7, "", strings.Repeat("é", 280)},
		{"281 characters", `{"cmd":"report","id":7,"reason":"other","text":"` + strings.Repeat("a", 281) + `"}`, 7, wire.BadRequest, ""},
		{"too many bytes as sent", `{"cmd":"report","id":7,"reason":"other","text":"` + strings.Repeat(`\ud83d\ude00`, 281) + `"}`, 7, wire.BadRequest, ""},
		{"tab", `{"cmd":"report","id":7,"reason":"other","text":"a\tb"}`, 7, wire.BadRequest, ""},
		{"escape", `{"cmd":"report","id":7,"reason":"other","text":"\u001b[2J"}`, 7, wire.BadRequest, ""},
		{"C1 control", `{"cmd":"report","id":7,"reason":"other","text":"\u009b2J"}`, 7, wire.BadRequest, ""},
		{"unknown reason", `{"cmd":"report","id":7,"reason":"SPAM"}`, 7, wire.BadRequest, ""},
		{"reason a number", `{"cmd":"report","id":7,"reason":1}`, 7, wire.BadRequest, ""},
		{"negative id", `{"cmd":"report","id":-7,"reason":"spam"}`, 0, wire.NotFound, ""},
		{"huge id", `{"cmd":"report","id":99999999999999999999,"reason":"spam"}`, 0, wire.NotFound, ""},
		{"id a string", `{"cmd":"report","id":"7","reason":"spam"}`, 0, wire.BadRequest, ""},
		{"no id", `{"cmd":"report","reason":"spam"}`, 0, wire.BadRequest, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := wire.ParseRequest([]byte(tt.frame))
			if err != nil {
				t.Fatal(err)
			}
			id, r, err := parseReport(req)
			if tt.reason != "" {
				var we *wire.Error
				if !errors.As(err, &we) || we.Reason != tt.reason || we.Malformed {
					t.Fatalf("got %v, want a %s fail reply (connection kept)", err, tt.reason)
				}
				return
			}
			if err != nil || id != tt.id || r.Text != tt.text {
				t.Fatalf("got %d %+v %v, want id %d text %q", id, r, err, tt.id, tt.text)
			}
		})
	}
}

// FuzzParseReport: any frame either fails with a *wire.Error or yields a
// report within the bounds whose stored form is JSON that reads back the
// same, at most four bytes a character of text.
func FuzzParseReport(f *testing.F) {
	f.Add([]byte(`{"cmd":"report","id":7,"reason":"other","text":"asks for a \"deposit\"\nby wire"}`))
	f.Fuzz(func(t *testing.T, frame []byte) {
		req, err := wire.ParseRequest(frame)
		if err != nil {
			return
		}
		_, r, err := parseReport(req)
		if err != nil {
			var we *wire.Error
			if !errors.As(err, &we) || we.Reason == "" {
				t.Fatalf("error %v is not a *wire.Error with a reason", err)
			}
			return
		}
		if !validReason(r.Reason) || !utf8.ValidString(r.Text) || utf8.RuneCountInString(r.Text) > MaxReportText {
			t.Fatalf("bounds not enforced: %+v", r)
		}
		r.By, r.At = "12", 1
		stored := broker.AppendReport(nil, r)
		var back broker.Report
		if err := json.Unmarshal(stored, &back); err != nil || back != r {
			t.Fatalf("stored form %s reads back as %+v (%v)", stored, back, err)
		}
		if n := len(stored) - len(broker.AppendReport(nil, broker.Report{By: r.By, Reason: r.Reason, At: r.At})); n > 4*utf8.RuneCountInString(r.Text)+len(`,"text":""`) {
			t.Fatalf("text of %d characters costs %d bytes stored", utf8.RuneCountInString(r.Text), n)
		}
	})
}

// An accepted report is acknowledged naming the post and logged at info
// with the post, the reporter and the reason, never the text; a repeat is
// the outcome "again".
func TestReportAckAndLogLine(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		bc := brokertest.Open(t, b.Options)
		core, logs := observer.New(zap.InfoLevel)
		s, err := New(Config{}, bc, zap.New(core))
		if err != nil {
			t.Fatal(err)
		}
		id, err := bc.StorePost(ctx, []byte(`"from":"7","date":1`), "7", 1, "x")
		if err != nil {
			t.Fatal(err)
		}
		c := newConn("9")
		frame := fmt.Sprintf(`{"cmd":"report","id":%d,"reason":"scam","text":"secret words"}`, id)
		for _, want := range []string{ReportNew, ReportAgain} {
			done, err := s.Report(ctx, c, req(t, frame), broker.DefaultReportBounds)
			if err != nil || done != (ReportDone{Outcome: want, Reporters: 1, Post: id}) {
				t.Fatalf("report: %+v %v, want %q", done, err, want)
			}
		}
		ack := fmt.Sprintf(`{"cmd":"report_ack","result":"ok","id":%d}`, id)
		if f := c.frames(); len(f) != 2 || f[0] != ack || f[1] != ack {
			t.Fatalf("frames %q, want %s twice", f, ack)
		}
		lines := logs.FilterMessage("post reported").All()
		if len(lines) != 2 {
			t.Fatalf("%d log lines, want 2", len(lines))
		}
		m := lines[0].ContextMap()
		if lines[0].Level != zap.InfoLevel || m["post"] != id || m["reporter"] != "9" || m["reason"] != "scam" || m["outcome"] != ReportNew {
			t.Fatalf("log line %v %v", lines[0].Level, m)
		}
		for _, l := range logs.All() {
			if strings.Contains(fmt.Sprint(l.ContextMap()), "secret") || strings.Contains(l.Message, "secret") {
				t.Fatalf("the report's text was logged: %v", l)
			}
		}
	})
}

// A report into the full review queue is acknowledged ok whether it
// evicts a post with one reporter (logged, with both ids) or is not
// stored (queue_full): the reporter did nothing wrong.
func TestReportIntoTheFullQueue(t *testing.T) {
	brokertest.Each(t, func(t *testing.T, b brokertest.Backend) {
		ctx := context.Background()
		bc := brokertest.Open(t, b.Options)
		core, logs := observer.New(zap.InfoLevel)
		s, err := New(Config{}, bc, zap.New(core))
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint64
		for range 3 {
			id, err := bc.StorePost(ctx, []byte(`"from":"7","date":1`), "7", 1, "x")
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		bounds := broker.ReportBounds{Reporters: 5, Details: 2, Queue: 1}
		report := func(by string, id uint64) ReportDone {
			t.Helper()
			c := newConn(by)
			done, err := s.Report(ctx, c, req(t, fmt.Sprintf(`{"cmd":"report","id":%d,"reason":"spam"}`, id)), bounds)
			ack := fmt.Sprintf(`{"cmd":"report_ack","result":"ok","id":%d}`, id)
			if err != nil || len(c.frames()) != 1 || c.frames()[0] != ack {
				t.Fatalf("report of %d by %s: %v, frames %q", id, by, err, c.frames())
			}
			return done
		}
		report("8", ids[0])
		if d := report("8", ids[1]); d != (ReportDone{Outcome: ReportNew, Evicted: ids[0], Reporters: 1, Post: ids[1]}) {
			t.Fatalf("report into the full queue: %+v, want post %d evicted", d, ids[0])
		}
		lines := logs.FilterMessage("review queue full: a post with one reporter left it").All()
		if len(lines) != 1 || lines[0].ContextMap()["evicted"] != ids[0] || lines[0].ContextMap()["for"] != ids[1] {
			t.Fatalf("eviction log lines %v", lines)
		}
		report("9", ids[1])
		if d := report("8", ids[2]); d != (ReportDone{Outcome: ReportQueueFull, Post: ids[2]}) {
			t.Fatalf("report into a queue of several-reporter posts: %+v", d)
		}
	})
}
