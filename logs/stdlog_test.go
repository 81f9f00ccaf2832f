package logs

import (
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// The http.Server's ErrorLog puts the peer's address and port in every
// line: StdLog writes them under one message, so a flood of bad TLS
// handshakes is limited like any other line, and the text survives in a
// field.
func TestStdLogLinesAreLimited(t *testing.T) {
	obs, logsSeen := observer.New(zapcore.DebugLevel)
	l := New(obs, Options{PerSecond: 5})
	defer l.Close()
	std := StdLog(zap.New(l.Core()).Named("http"), "http server error")
	for i := 0; i < 5000; i++ {
		std.Printf("http: TLS handshake error from 203.0.113.9:%d: EOF", 1024+i)
	}
	if n := logsSeen.Len(); n > 100 {
		t.Fatalf("%d of 5000 lines of one kind written in one second with --log-per-second 5", n)
	}
	e := logsSeen.All()[0]
	if e.Message != "http server error" || e.ContextMap()["text"] != "http: TLS handshake error from 203.0.113.9:1024: EOF" {
		t.Fatalf("first line %q %v", e.Message, e.ContextMap())
	}
}

// Past maxKeys distinct messages, lines of new messages are dropped and
// counted, not written; one summary line says how many.
func TestOverflowPastMaxKeysIsDropped(t *testing.T) {
	log, l, logsSeen, _ := newTest(t, 5)
	for i := 0; i < maxKeys+3000; i++ {
		log.Warn("dynamic " + strconv.Itoa(i))
	}
	if n := logsSeen.Len(); n != maxKeys {
		t.Fatalf("%d lines written, want the %d tracked messages' first lines only", n, maxKeys)
	}
	l.Flush(true)
	var dropped int64
	for _, e := range logsSeen.All() {
		if strings.HasPrefix(e.Message, "log lines dropped") {
			dropped, _ = field(e, "dropped")
		}
	}
	if dropped != 3000 {
		t.Fatalf("summary says %d dropped, want 3000", dropped)
	}
}
