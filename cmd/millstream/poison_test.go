package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/actors"
	"github.com/millstream/millstream/internal/testutil"
)

// TestEntryThatEndsTheProcessIsSkipped: a reading whose processing ends
// the whole gateway process (fault injection sends SIGKILL, as the kernel's
// out-of-memory killer would) is in the ingest log, so every restart would
// replay it and end again. Restarted like systemd's Restart=always does, the
// gateway finds it within three more restarts, dead-letters it as poison
// with the reason, and serves again; every other reading counts once.
func TestEntryThatEndsTheProcessIsSkipped(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a gateway process several times; runs without -short")
	}
	dir := t.TempDir()
	mqtt, admin := testutil.FreeAddr(t), testutil.FreeAddr(t)
	alerts := filepath.Join(dir, "data", "alerts.jsonl")
	cfg := filepath.Join(dir, "gw.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`name: poison
mqtt_listen: %s
http_listen: %s
data_dir: %s
partitions: 4
durability: {checkpoint_interval: 3600s}
jobs:
  - name: hot
    query: SELECT deviceId, seq, temperature INTO alerts FROM readings WHERE temperature > 100
    inputs: [{name: readings, topic: "devices/+/messages/events"}]
    outputs: [{name: alerts, file: {path: %q}}]
`, mqtt, admin, filepath.Join(dir, "data"), alerts)), 0o644))
	gw := testutil.NewGateway(t, cfg, admin)
	gw.Env = []string{"MILLSTREAM_FAULT_KILL_ON=KILL-THE-GATEWAY"}
	gw.Start()

	pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqtt).SetClientID("press-7").
		SetAutoReconnect(false).SetConnectRetry(false))
	tok := pub.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	publish := func(seq int, extra string) paho.Token {
		return pub.Publish("devices/press-7/messages/events", 1, false,
			fmt.Sprintf(`{"deviceId":"press-7","seq":%d,"temperature":120%s}`, seq, extra))
	}
	for seq := 1; seq <= 5; seq++ {
		tok := publish(seq, "")
		require.True(t, tok.WaitTimeout(10*time.Second))
		require.NoError(t, tok.Error())
	}
	// The poison reading, then more readings behind it on other
	// partitions' devices are not needed: the log holds it, and a replay
	// must go past it to the end.
	publish(6, `,"note":"KILL-THE-GATEWAY"`)
	select {
	case <-gw.Exited():
	case <-time.After(30 * time.Second):
		t.Fatal("the fault did not end the gateway")
	}
	pub.Disconnect(0)

	// Restart as a supervisor would until it stays up.
	restarts := 0
	for !gw.TryStart() {
		restarts++
		require.Less(t, restarts, 6, "the gateway never came back:\n%s", gw.Logs())
	}
	restarts++
	t.Logf("ready again after %d restarts", restarts)
	require.Equal(t, 4, restarts, "two replays that end the process, a careful one that finds the entry, then up")
	logs := gw.Logs()
	require.Contains(t, logs, "replaying entry by entry to find the one that ends the process")
	require.Contains(t, logs, "log entry ends the gateway process; it will be skipped and dead-lettered")

	resp, err := http.Get("http://" + admin + "/v1/deadletters")
	require.NoError(t, err)
	defer resp.Body.Close()
	var out struct {
		DeadLetters []actors.DeadLetterView `json:"deadLetters"`
		Counts      map[string]uint64       `json:"counts"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	require.Len(t, out.DeadLetters, 1, "%+v", out)
	dl := out.DeadLetters[0]
	require.Equal(t, "poison", dl.Kind)
	require.Contains(t, dl.Reason, "the gateway process ended while applying it")
	require.Contains(t, dl.Payload, "KILL-THE-GATEWAY")
	require.Equal(t, "press-7", dl.Source)

	// It keeps serving: a reading after the poison one is processed.
	pub = paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqtt).SetClientID("press-7"))
	tok = pub.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	tok = publish(7, "")
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	pub.Disconnect(100)

	require.Eventually(t, func() bool { return len(readLines(t, alerts)) >= 6 }, 20*time.Second, 50*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // a seventh row would be a reading counted twice
	var seqs []int
	for _, line := range readLines(t, alerts) {
		var row struct {
			Seq int `json:"seq"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &row), line)
		seqs = append(seqs, row.Seq)
	}
	require.Equal(t, []int{1, 2, 3, 4, 5, 7}, seqs, "every reading but the poison one, once each")
}

// readLines is a file's non-empty lines (none if it does not exist yet).
func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines
}
