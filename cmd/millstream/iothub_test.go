package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/testutil"
)

// TestIoTHubTwinSurvivesKill9: a reported-properties patch a device sent
// over $iothub/twin and got its 204 for is in the ingest log: after kill
// -9, before any checkpoint, the twin the device reads back has it.
func TestIoTHubTwinSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a gateway process; runs without -short")
	}
	dir := t.TempDir()
	mqtt, admin := testutil.FreeAddr(t), testutil.FreeAddr(t)
	cfg := filepath.Join(dir, "gw.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf("name: twin\nmqtt_listen: %s\nhttp_listen: %s\ndata_dir: %s\npartitions: 4\ndurability: {checkpoint_interval: 3600s}\n",
		mqtt, admin, filepath.Join(dir, "data"))), 0o644))
	gw := testutil.StartGateway(t, cfg, admin)

	var mu sync.Mutex
	got := map[string][]byte{}
	connect := func() paho.Client {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqtt).SetClientID("press-1"))
		tok := c.Connect()
		require.True(t, tok.WaitTimeout(10*time.Second))
		require.NoError(t, tok.Error())
		tok = c.Subscribe("$iothub/twin/res/#", 0, func(_ paho.Client, m paho.Message) {
			mu.Lock()
			got[m.Topic()] = m.Payload()
			mu.Unlock()
		})
		require.True(t, tok.WaitTimeout(10*time.Second))
		return c
	}
	await := func(topic string) []byte {
		var b []byte
		require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); var ok bool; b, ok = got[topic]; return ok }, 10*time.Second, 10*time.Millisecond, topic)
		return b
	}
	c := connect()
	c.Publish("$iothub/twin/PATCH/properties/reported/?$rid=1", 0, false, `{"firmware":"2.0"}`)
	await("$iothub/twin/res/204/?$rid=1&$version=1")
	c.Disconnect(0)
	gw.Kill()
	gw.Start()
	c = connect()
	defer c.Disconnect(100)
	c.Publish("$iothub/twin/GET/?$rid=2", 0, false, "")
	var twin map[string]map[string]any
	require.NoError(t, json.Unmarshal(await("$iothub/twin/res/200/?$rid=2"), &twin))
	require.Equal(t, map[string]any{"firmware": "2.0", "$version": 1.0}, twin["reported"])
}
