// Package testutil holds helpers that tests of several packages share:
// real processes (mosquitto) started for a test and stopped after it.
package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var loudOnce sync.Once

// SkipLoudly skips t with why, and says so where a person running
// `go test ./...` sees it: go test shows a passing package's output only
// with -v, so the notice also goes straight to the controlling terminal
// (once per test binary), besides stderr.
func SkipLoudly(t testing.TB, why string) {
	t.Helper()
	msg := fmt.Sprintf("SKIPPED: %s: %s\n", t.Name(), why)
	loudOnce.Do(func() {
		if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
			_, _ = fmt.Fprintf(tty, "*** millstream tests: some tests of this package are SKIPPED: %s", why+"\n")
			_ = tty.Close()
		}
	})
	_, _ = fmt.Fprint(os.Stderr, msg)
	t.Skip(msg)
}

// Mosquitto starts a real mosquitto on addr (a free loopback port when
// empty) with extra lines in its listener configuration, and returns the
// address and a function that kills it (also run at cleanup). Without
// mosquitto the test is skipped loudly, unless MILLSTREAM_REQUIRE_BROKER
// is set (CI sets it), which turns the skip into a failure.
func Mosquitto(t testing.TB, addr, extra string) (string, func()) {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if os.Getenv("MILLSTREAM_REQUIRE_BROKER") != "" {
			t.Fatalf("mosquitto is not installed and MILLSTREAM_REQUIRE_BROKER is set (apt-get install -y mosquitto)")
		}
		SkipLoudly(t, "mosquitto is not installed (apt-get install -y mosquitto); set MILLSTREAM_REQUIRE_BROKER=1 to make this a failure")
	}
	if addr == "" {
		addr = FreeAddr(t)
	}
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	persistence := "persistence false\n"
	if strings.Contains(extra, "persistence") {
		persistence = ""
		if os.Geteuid() == 0 {
			// Started as root, mosquitto runs as user mosquitto, which
			// cannot write the test's directory (0700, root's): it
			// would save nothing at SIGTERM and come back without the
			// sessions (CI runs as root).
			persistence = "user root\n"
		}
	}
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listener %s 127.0.0.1\n%sallow_anonymous true\n%s", port, extra, persistence)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	var once sync.Once
	// SIGTERM: mosquitto stops cleanly (and saves its state when
	// persistence is on).
	kill := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
	}
	t.Cleanup(kill)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return addr, kill
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not start listening on %s: %v\n%s", addr, err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
