// Package logtest holds what tests of the gateway's logs share: a buffer
// that several goroutines log into, read back as JSON records.
package logtest

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
)

// Buffer is an io.Writer safe for concurrent loggers.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Records parses every line as a JSON object, failing t on one that is
// not (a JSON handler's output must be one object per line).
func (l *Buffer) Records(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(l.String(), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON line: %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

// Count is how many records have msg, and level if not empty.
func Count(recs []map[string]any, msg, level string) int {
	n := 0
	for _, r := range recs {
		if r["msg"] == msg && (level == "" || r["level"] == level) {
			n++
		}
	}
	return n
}
