package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/testutil"
)

// TestDiskGuardOnFullTmpfs: a gateway whose store sits on a 48 MiB tmpfs
// refuses input (not acknowledged, so the publisher resends) once another
// file leaves less than its free-space floor, says so in /readyz and
// /metrics, stays up, and takes the resends once space is freed: every
// reading reaches the output exactly once.
func TestDiskGuardOnFullTmpfs(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs and runs a gateway process; runs without -short")
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk")
	require.NoError(t, os.Mkdir(disk, 0o755))
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", disk).CombinedOutput(); err != nil {
		testutil.SkipLoudly(t, fmt.Sprintf("cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): %v: %s", err, strings.TrimSpace(string(out))))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", disk).Run() })

	mqtt, admin := testutil.FreeAddr(t), testutil.FreeAddr(t)
	cfg := filepath.Join(dir, "gw.yaml")
	out := filepath.Join(dir, "readings.jsonl") // off the small disk
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`name: disk
mqtt_listen: %s
http_listen: %s
data_dir: %s
data_roots: [%q, %q]
partitions: 2
durability: {min_free_bytes: 16777216}
jobs:
  - name: all
    query: SELECT deviceId, seq INTO readings FROM telemetry
    inputs: [{name: telemetry, topic: "devices/+/messages/events"}]
    outputs: [{name: readings, file: {path: %q}}]
`, mqtt, admin, disk, disk, dir, out)), 0o644))
	gw := testutil.StartGateway(t, cfg, admin)

	var fillerWritten atomic.Bool
	pub := &testutil.AckPublisher{ClientID: "press-1", Topic: "devices/press-1/messages/events", Brokers: []string{mqtt}, Window: 1, AckTimeout: time.Second}
	msgs := make([][]byte, 3)
	for i := range msgs {
		msgs[i] = []byte(fmt.Sprintf(`{"deviceId":"press-1","seq":%d}`, i))
	}
	done := make(chan error, 1)
	go func() {
		done <- pub.Run(msgs, func(i int) bool { return i == 0 || fillerWritten.Load() }, time.Now().Add(2*time.Minute), nil)
	}()
	require.Eventually(t, func() bool { return strings.Count(readFile(out), "\n") == 1 }, 20*time.Second, 20*time.Millisecond)

	// Leave about 8 MiB free: under the 16 MiB floor.
	free := freeBytes(t, disk)
	filler := filepath.Join(disk, "filler")
	require.NoError(t, os.WriteFile(filler, make([]byte, free-8<<20), 0o644))
	require.Eventually(t, func() bool {
		code, body := readyz(t, admin)
		return code == 503 && strings.Contains(body, "disk: refusing input")
	}, 10*time.Second, 20*time.Millisecond)
	fillerWritten.Store(true) // the guard measures twice a second: publish once it has
	if !assertEventually(func() bool { return metric(t, admin, "millstream_disk_guard_refused_events_total") >= 2 }, 20*time.Second) {
		select {
		case err := <-done:
			t.Logf("publisher returned: %v", err)
		default:
		}
		t.Fatalf("refused %v; conns %d resends %d; logs:\n%s", metric(t, admin, "millstream_disk_guard_refused_events_total"), pub.Connections(), pub.Resends(), gw.Logs())
	}
	require.Equal(t, 1.0, metric(t, admin, "millstream_disk_guard_refusing"))
	require.Equal(t, 1, strings.Count(readFile(out), "\n"), "nothing refused reached the output")
	require.Contains(t, gw.Logs(), "disk guard: refusing input")

	require.NoError(t, os.Remove(filler))
	require.NoError(t, <-done, "every reading acknowledged once space is back")
	require.Eventually(t, func() bool { return strings.Count(readFile(out), "\n") == 3 }, 20*time.Second, 20*time.Millisecond)
	for i := range msgs {
		require.Equal(t, 1, strings.Count(readFile(out), fmt.Sprintf(`"seq":%d}`, i)), "reading %d exactly once", i)
	}
	code, _ := readyz(t, admin)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, gw.Logs(), "disk guard: space is back")
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func freeBytes(t *testing.T, dir string) int {
	t.Helper()
	out, err := exec.Command("df", "-B1", "--output=avail", dir).Output()
	require.NoError(t, err)
	f := strings.Fields(string(out))
	n, err := strconv.Atoi(f[len(f)-1])
	require.NoError(t, err)
	return n
}

// metric reads one unlabelled metric from a gateway's /metrics.
func metric(t *testing.T, admin, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	return v
}

func assertEventually(f func() bool, within time.Duration) bool {
	for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if f() {
			return true
		}
	}
	return false
}
