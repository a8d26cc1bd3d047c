package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestGatewayRefusesExposedListeners: a gateway configured to listen off
// loopback without TLS and authentication does not start, and says which
// setting to change; -t (check) says the same.
func TestGatewayRefusesExposedListeners(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gw.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("name: gw1\ndata_dir: "+dir+"\nmqtt_listen: 0.0.0.0:0\nhttp_listen: 127.0.0.1:0\n"), 0o644))
	for _, args := range [][]string{{"gateway", "--config", cfg}, {"gateway", "-t", "--config", cfg}} {
		code, _, stderr := runCLI(t, args...)
		require.NotEqual(t, 0, code)
		require.Contains(t, stderr, "mqtt_listen 0.0.0.0:0 is plain MQTT off loopback")
		require.Contains(t, stderr, "--insecure")
	}
	require.NoDirExists(t, filepath.Join(dir, "state"), "nothing was started")
	code, stdout, stderr := runCLI(t, "gateway", "-t", "--insecure", "--config", cfg)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "configuration is valid")
}

// TestInsecureWarnsRepeatedly: with --insecure the exposure is logged at
// start and again every period until the gateway stops.
func TestInsecureWarnsRepeatedly(t *testing.T) {
	var log syncBuffer
	logger := slog.New(slog.NewTextHandler(&log, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		warnInsecure(ctx, logger, []string{"mqtt_listen 0.0.0.0:1883 is plain MQTT off loopback"}, 20*time.Millisecond)
	}()
	require.Eventually(t, func() bool { return strings.Count(log.String(), "INSECURE") >= 3 }, 5*time.Second, 5*time.Millisecond)
	cancel()
	<-done
	require.Contains(t, log.String(), "mqtt_listen 0.0.0.0:1883")
}
