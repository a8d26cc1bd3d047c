package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// Chromium returns the path of Debian's chromium for browser tests.
// Without it the test is skipped loudly, unless MILLSTREAM_REQUIRE_BROWSER
// is set (CI sets it), which turns the skip into a failure.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("MILLSTREAM_REQUIRE_BROWSER") != "" {
		t.Fatalf("chromium is not installed and MILLSTREAM_REQUIRE_BROWSER is set (apt-get install -y chromium)")
	}
	SkipLoudly(t, "chromium is not installed (apt-get install -y chromium); set MILLSTREAM_REQUIRE_BROWSER=1 to make this a failure")
	return ""
}

// ChromiumFlags are the flags a headless Chromium needs on a closed
// network: no sandbox (tests run as root), no GPU, and none of its own
// connections to Google's hosts (they are refused, or time out, at every
// start). The caller adds a fresh --user-data-dir.
var ChromiumFlags = []string{"headless", "no-sandbox", "disable-gpu", "disable-quic", "no-first-run", "no-default-browser-check",
	"disable-background-networking", "disable-component-update", "disable-sync", "disable-extensions", "disable-default-apps",
	"mute-audio", "hide-scrollbars"}
