package actors

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"
)

// twinClient is a device speaking IoT Hub's twin topics.
type twinClient struct {
	c    paho.Client
	mu   sync.Mutex
	msgs map[string][]byte // topic -> payload
}

func newTwinClient(t *testing.T, url, id string) *twinClient {
	tc := &twinClient{c: mustDial(t, url, id, nil), msgs: map[string][]byte{}}
	h := func(_ paho.Client, m paho.Message) {
		tc.mu.Lock()
		tc.msgs[m.Topic()] = m.Payload()
		tc.mu.Unlock()
	}
	require.Equal(t, byte(0), subackQoS(t, tc.c, "$iothub/twin/res/#", 0, h))
	require.Equal(t, byte(0), subackQoS(t, tc.c, "$iothub/twin/PATCH/properties/desired/#", 0, h))
	return tc
}

func subackQoS(t *testing.T, c paho.Client, filter string, qos byte, h paho.MessageHandler) byte {
	t.Helper()
	tok := c.Subscribe(filter, qos, h)
	require.True(t, tok.WaitTimeout(5*time.Second))
	return tok.(*paho.SubscribeToken).Result()[filter]
}

// await waits for a message on topic and returns its payload.
func (tc *twinClient) await(t *testing.T, topic string) []byte {
	t.Helper()
	var got []byte
	require.Eventually(t, func() bool {
		tc.mu.Lock()
		defer tc.mu.Unlock()
		var ok bool
		got, ok = tc.msgs[topic]
		return ok
	}, 5*time.Second, 5*time.Millisecond, "no message on %s", topic)
	return got
}

func (tc *twinClient) publish(t *testing.T, topic, payload string) {
	t.Helper()
	tok := tc.c.Publish(topic, 0, false, payload)
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
}

// TestIoTHubTwinTopics: a device using the IoT Hub SDK's twin topics
// patches its reported properties (merge patch, versions counted), reads
// its twin and is told of new desired properties; another device
// subscribed to the same response filters hears none of it, and nobody
// can publish as the hub.
func TestIoTHubTwinTopics(t *testing.T) {
	gw := startSecureGateway(t, BrokerOptions{})
	url := "tcp://" + gw.b.Addr()
	dev := newTwinClient(t, url, "press-1")
	other := newTwinClient(t, url, "press-2")

	dev.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=1", `{"firmware":"1.2","limits":{"max":90,"min":10}}`)
	require.Empty(t, dev.await(t, "$iothub/twin/res/204/?$rid=1&$version=1"))
	dev.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=2", `{"limits":{"min":null}}`)
	dev.await(t, "$iothub/twin/res/204/?$rid=2&$version=2")
	dev.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=3", `not json`)
	dev.await(t, "$iothub/twin/res/400/?$rid=3")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, gw.g.SetDesired(ctx, "press-1", []byte(`{"interval":5}`)))
	var desired map[string]any
	require.NoError(t, json.Unmarshal(dev.await(t, "$iothub/twin/PATCH/properties/desired/?$version=1"), &desired))
	require.Equal(t, map[string]any{"interval": 5.0, "$version": 1.0}, desired)

	dev.publish(t, "$iothub/twin/GET/?$rid=4", "")
	var twin map[string]map[string]any
	require.NoError(t, json.Unmarshal(dev.await(t, "$iothub/twin/res/200/?$rid=4"), &twin))
	require.Equal(t, map[string]any{"interval": 5.0, "$version": 1.0}, twin["desired"])
	require.Equal(t, map[string]any{"firmware": "1.2", "limits": map[string]any{"max": 90.0}, "$version": 2.0}, twin["reported"])

	// press-2 posing as the hub: refused, and routed to nobody.
	other.publish(t, "$iothub/twin/res/200/?$rid=99", `{"desired":{"evil":true}}`)
	other.publish(t, "$iothub/twin/PATCH/properties/desired/?$version=9", `{"evil":true}`)
	time.Sleep(200 * time.Millisecond)
	dev.mu.Lock()
	for topic := range dev.msgs {
		require.False(t, strings.Contains(topic, "99") || strings.Contains(topic, "version=9"), "press-1 got %s", topic)
	}
	dev.mu.Unlock()
	other.mu.Lock()
	require.Empty(t, other.msgs, "press-2 hears nothing of press-1's twin")
	other.mu.Unlock()
	d, err := gw.g.Device(ctx, "press-1")
	require.NoError(t, err)
	require.Zero(t, d.Messages, "twin calls are not telemetry")
}

func TestIoTHubACL(t *testing.T) {
	for _, c := range []struct {
		topic string
		write bool
		ok    bool
	}{
		{"$iothub/twin/GET/?$rid=1", true, true},
		{"$iothub/twin/PATCH/properties/reported/?$rid=1", true, true},
		{"$iothub/twin/res/200/?$rid=1", true, false},
		{"$iothub/twin/PATCH/properties/desired/?$version=1", true, false},
		{"$iothub/methods/res/200/?$rid=1", true, true}, // a device answers a direct method
		{"$iothub/methods/POST/reboot/?$rid=1", true, false},
		{"$iothub/methods/POST/#", false, true},
		{"$iothub/methods/res/#", false, false},
		{"$iothub/twin/res/#", false, true},
		{"$iothub/twin/PATCH/properties/desired/#", false, true},
		{"$iothub/#", false, false},
		{"$iothub/+/res/#", false, false},
	} {
		require.Equal(t, c.ok, aclAllows(roleDevice, "press-1", c.topic, c.write), "%s write=%v", c.topic, c.write)
	}
}
