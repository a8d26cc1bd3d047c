package actors

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// startMosquitto runs a real mosquitto on a free loopback port for the
// test. Without mosquitto the test is skipped loudly, unless
// MILLSTREAM_REQUIRE_BROKER is set (CI sets it), which turns the skip into
// a failure.
func startMosquitto(t *testing.T) string { return startMosquittoWith(t, "") }

// startMosquittoWith adds extra lines to the listener's configuration.
func startMosquittoWith(t *testing.T, extra string) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if os.Getenv("MILLSTREAM_REQUIRE_BROKER") != "" {
			t.Fatalf("mosquitto is not installed and MILLSTREAM_REQUIRE_BROKER is set (apt-get install -y mosquitto)")
		}
		t.Skip("SKIPPED LOUDLY: mosquitto is not installed (apt-get install -y mosquitto); set MILLSTREAM_REQUIRE_BROKER=1 to make this a failure")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln.Close()
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listener %s 127.0.0.1\n%sallow_anonymous true\npersistence false\n", port, extra)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not start listening on %s: %v\n%s", addr, err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
