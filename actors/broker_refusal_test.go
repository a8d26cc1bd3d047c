package actors

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
)

// durableGatewayWithBroker is a durable gateway with its job deployed, not
// yet recovered, and its embedded broker; the broker is closed at cleanup.
func durableGatewayWithBroker(t *testing.T) (*Gateway, *Broker, context.Context) {
	t.Helper()
	dir := t.TempDir()
	job, err := config.ParseJob("job.yaml", []byte(windowJobYAML(dir)))
	require.NoError(t, err)
	st, outs, logger := openStoreAndOutputs(t, dir)
	g := New(Config{Partitions: 2, Store: st, Logger: logger}, outs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	b, err := StartBroker(g, BrokerOptions{Listen: "127.0.0.1:0", MaxPayload: 256 << 10, Logger: logger})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	require.NoError(t, outs.Configure(job))
	require.NoError(t, g.Deploy(ctx, job))
	return g, b, ctx
}

// TestBrokerRefusesConnectionsWhileRecovering (issue 11 A): while a durable
// gateway recovers, its broker refuses connections with "server
// unavailable" instead of accepting publishes it never acknowledges (MQTT
// 3.1.1 clients resend only after a reconnect, so they hung). Once
// recovered, the same client connects and its QoS 1 publish is
// acknowledged.
func TestBrokerRefusesConnectionsWhileRecovering(t *testing.T) {
	g, b, ctx := durableGatewayWithBroker(t)
	defer func() { require.NoError(t, g.Close(ctx)) }()

	opts := paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetClientID("dev-00").SetAutoReconnect(false).SetProtocolVersion(4)
	c := paho.NewClient(opts)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second), "CONNECT unanswered")
	require.Error(t, tok.Error(), "connected to a gateway that cannot take messages yet")
	require.Contains(t, strings.ToLower(tok.Error().Error()), "unavailable")
	require.Equal(t, uint64(1), b.RefusedConnections())

	require.NoError(t, g.Recover(ctx))
	c = paho.NewClient(opts)
	tok = c.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	defer c.Disconnect(100)
	_, payload := reading(0)
	pub := c.Publish("devices/dev-00/messages/events", 1, false, payload)
	require.True(t, pub.WaitTimeout(5*time.Second), "QoS 1 publish not acknowledged")
	require.NoError(t, pub.Error())
	require.Equal(t, uint64(1), g.Stats().EventsIn)
}

// TestBrokerDisconnectsOnRefusedPublish (issue 11 A): a QoS 1 publish the
// gateway cannot take (here: it is closing) closes an MQTT 3.1.1 client's
// connection, so the client reconnects and resends it, instead of leaving
// it in flight with no PUBACK and the connection open.
func TestBrokerDisconnectsOnRefusedPublish(t *testing.T) {
	g, b, ctx := durableGatewayWithBroker(t)
	require.NoError(t, g.Recover(ctx))

	var lost atomic.Bool
	opts := paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetClientID("dev-00").SetAutoReconnect(false).
		SetConnectionLostHandler(func(paho.Client, error) { lost.Store(true) })
	c := paho.NewClient(opts)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	defer c.Disconnect(100)

	require.NoError(t, g.Close(ctx))
	_, payload := reading(0)
	c.Publish("devices/dev-00/messages/events", 1, false, payload)
	require.Eventually(t, lost.Load, 5*time.Second, 10*time.Millisecond, "a refused publish left the connection open")
	require.Equal(t, uint64(1), b.Refused())
}
