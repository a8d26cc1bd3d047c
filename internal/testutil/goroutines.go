package testutil

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// NoGoroutinesLeft fails t unless, within 5 s, no goroutine's stack
// contains any of markers (package paths such as "mochi-mqtt/server"): a
// component that was closed must not leave its goroutines behind. It
// names the goroutines it found.
func NoGoroutinesLeft(t testing.TB, markers ...string) {
	t.Helper()
	var left []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		left = left[:0]
		for _, g := range strings.Split(string(buf), "\n\n") {
			for _, m := range markers {
				if strings.Contains(g, m) {
					left = append(left, g)
					break
				}
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left:\n%s", strings.Join(left, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
