package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/testutil"
)

// TestReadyzSaysInputBrokerDown: a gateway whose input broker cannot be
// reached is not ready, and says which broker; once the broker is up it
// is ready.
func TestReadyzSaysInputBrokerDown(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two gateway processes; runs without -short")
	}
	dir := t.TempDir()
	brokerMQTT, brokerAdmin := testutil.FreeAddr(t), testutil.FreeAddr(t)
	reader, readerAdmin := testutil.FreeAddr(t), testutil.FreeAddr(t)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	brokerCfg := write("broker.yaml", fmt.Sprintf("name: broker\nmqtt_listen: %s\nhttp_listen: %s\ndata_dir: %s\n", brokerMQTT, brokerAdmin, filepath.Join(dir, "b")))
	readerCfg := write("reader.yaml", fmt.Sprintf(`name: reader
mqtt_listen: %s
http_listen: %s
data_dir: %s
brokers: [{url: "tcp://%s"}]
jobs:
  - name: hot
    query: SELECT deviceId INTO alerts FROM readings WHERE temperature > 100
    inputs: [{name: readings, topic: "devices/+/messages/events"}]
    outputs: [{name: alerts, log: {}}]
`, reader, readerAdmin, filepath.Join(dir, "r"), brokerMQTT))
	testutil.StartGateway(t, readerCfg, readerAdmin)
	code, body := readyz(t, readerAdmin)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "input: input broker unreachable: tcp://"+brokerMQTT)
	testutil.StartGateway(t, brokerCfg, brokerAdmin)
	require.Eventually(t, func() bool { code, _ := readyz(t, readerAdmin); return code == http.StatusOK }, 30*time.Second, 100*time.Millisecond)
}
