package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/actors"
	"github.com/millstream/millstream/internal/testutil"
)

// TestDeadLettersKeptAcrossKill: a real gateway keeps what its job
// refused (not JSON, a field of the wrong type) with kind, source, reason
// and payload, lists it newest first through the admin API and the CLI,
// publishes it to the dead-letter topic, and after kill -9 and the replay
// of its log still has each exactly once.
func TestDeadLettersKeptAcrossKill(t *testing.T) {
	dir := t.TempDir()
	mqtt, admin := testutil.FreeAddr(t), testutil.FreeAddr(t)
	cfg := filepath.Join(dir, "gw.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`name: dl
mqtt_listen: %s
http_listen: %s
data_dir: %s
partitions: 4
durability: {checkpoint_interval: 3600s}
dead_letters: {topic: millstream/deadletters}
jobs:
  - name: hot
    query: SELECT deviceId, temperature INTO alerts FROM readings WHERE temperature > 100
    inputs: [{name: readings, topic: "devices/+/messages/events"}]
    outputs: [{name: alerts, file: {path: %q}}]
`, mqtt, admin, filepath.Join(dir, "data"), filepath.Join(dir, "data", "alerts.jsonl"))), 0o644))
	gw := testutil.StartGateway(t, cfg, admin)

	var mu sync.Mutex
	var published []actors.DeadLetterView
	sub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqtt).SetClientID("dl-reader"))
	tok := sub.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	defer sub.Disconnect(100)
	tok = sub.Subscribe("millstream/deadletters", 0, func(_ paho.Client, m paho.Message) {
		var v actors.DeadLetterView
		if json.Unmarshal(m.Payload(), &v) == nil {
			mu.Lock()
			published = append(published, v)
			mu.Unlock()
		}
	})
	require.True(t, tok.WaitTimeout(10*time.Second))

	pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqtt).SetClientID("press-7"))
	tok = pub.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	for _, p := range []string{`{"deviceId":"press-7","temperature":`, `{"deviceId":"press-7","temperature":"boiling"}`, `{"deviceId":"press-7","temperature":120}`} {
		tok := pub.Publish("devices/press-7/messages/events", 1, false, p)
		require.True(t, tok.WaitTimeout(10*time.Second))
		require.NoError(t, tok.Error())
	}
	pub.Disconnect(100)

	list := func() (views []actors.DeadLetterView, counts map[string]uint64, next uint64) {
		resp, err := http.Get("http://" + admin + "/v1/deadletters?limit=1")
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		var out struct {
			DeadLetters []actors.DeadLetterView `json:"deadLetters"`
			Counts      map[string]uint64       `json:"counts"`
			Next        uint64                  `json:"next"`
		}
		require.NoError(t, json.Unmarshal(body, &out))
		return out.DeadLetters, out.Counts, out.Next
	}
	require.Eventually(t, func() bool { _, c, _ := list(); return c["malformed"] == 1 && c["expression_error"] == 1 }, 10*time.Second, 20*time.Millisecond)
	page, _, next := list()
	require.Len(t, page, 1)
	require.Equal(t, "expression_error", page[0].Kind, "newest first")
	require.Equal(t, "hot", page[0].Job)
	require.Equal(t, "press-7", page[0].Source)
	require.Equal(t, `{"deviceId":"press-7","temperature":"boiling"}`, page[0].Payload)
	require.NotZero(t, next)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(published) == 2 }, 10*time.Second, 20*time.Millisecond)

	cli := func() string {
		code, out, stderr := runCLI(t, "deadletters", "--admin", "http://"+admin, "--all")
		require.Equal(t, 0, code, stderr)
		return out
	}
	out := cli()
	require.Contains(t, out, "malformed hot/readings")
	require.Contains(t, out, `payload="{\"deviceId\":\"press-7\",\"temperature\":\"boiling\"}"`)

	// kill -9 before any checkpoint: the restart replays all three
	// readings, and refuses the two again; each is kept once.
	gw.Kill()
	gw.Start()
	_, counts, _ := list()
	require.Empty(t, counts, "a replay's refusals were counted before the crash")
	code, jsonOut, stderr := runCLI(t, "deadletters", "--admin", "http://"+admin, "--all", "--json")
	require.Equal(t, 0, code, stderr)
	var kinds []string
	for _, line := range strings.Split(strings.TrimSpace(jsonOut), "\n") {
		var v actors.DeadLetterView
		require.NoError(t, json.Unmarshal([]byte(line), &v))
		kinds = append(kinds, v.Kind)
	}
	require.Equal(t, []string{"expression_error", "malformed"}, kinds)
}
