package actors

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/internal/testutil"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// startMosquitto runs a real mosquitto on a free loopback port for the
// test. Without mosquitto the test is skipped loudly, unless
// MILLSTREAM_REQUIRE_BROKER is set (CI sets it), which turns the skip into
// a failure.
func startMosquitto(t *testing.T) string { addr, _ := startMosquittoOn(t, "", ""); return addr }

// startMosquittoWith adds extra lines to the listener's configuration.
func startMosquittoWith(t *testing.T, extra string) string {
	addr, _ := startMosquittoOn(t, "", extra)
	return addr
}

func startMosquittoOn(t *testing.T, addr, extra string) (string, func()) {
	return testutil.Mosquitto(t, addr, extra)
}

// topicTGateway is an in-memory gateway with one job that passes
// every event of its input t to a log output.
func topicTGateway(ctx context.Context, t *testing.T) *Gateway {
	g := New(Config{Partitions: 2}, nil, nil)
	job, err := config.ParseJob("job.yaml", []byte("name: j\nquery: SELECT v INTO o FROM t\ninputs: [{name: t}]\noutputs: [{name: o, log: {}}]\n"))
	require.NoError(t, err)
	require.NoError(t, g.Deploy(ctx, job))
	return g
}

// TestExternalBrokerReconnects: when mosquitto goes away and comes back on
// the same address, the gateway reconnects, subscribes again and ingests
// what devices publish after that.
func TestExternalBrokerReconnects(t *testing.T) {
	addr, kill := startMosquittoOn(t, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	g := topicTGateway(ctx, t)
	src, err := ConnectExternal(&pb.ExternalBroker{Url: "tcp://" + addr, ClientId: "gw"}, g, g.Topics, nil)
	require.NoError(t, err)
	defer src.Close()
	publish := func(n int) {
		dev := mqttClient(t, addr, fmt.Sprintf("dev-%d", n))
		for i := 0; i < n; i++ {
			tok := dev.Publish("devices/d1/messages/events/", 1, false, []byte(`{"v":1}`))
			require.True(t, tok.WaitTimeout(5*time.Second))
		}
		dev.Disconnect(100)
	}
	require.Eventually(t, func() bool { return src.c.IsConnectionOpen() }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	publish(5)
	require.Eventually(t, func() bool { return g.Stats().EventsIn == 5 }, 5*time.Second, 10*time.Millisecond)

	kill()
	_, _ = startMosquittoOn(t, addr, "")
	require.Eventually(t, func() bool { return src.c.IsConnectionOpen() }, 20*time.Second, 50*time.Millisecond, "no reconnect")
	time.Sleep(200 * time.Millisecond) // resubscribed in the connect handler
	publish(7)
	require.Eventually(t, func() bool { return g.Stats().EventsIn == 12 }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, g.Close(ctx))
}

// TestExternalBrokerTakesWhatWasQueuedForItsSession: a persistent session
// gets the messages the broker queued while the gateway was away (or was
// sending when it was killed) right after CONNACK, before the connect
// handler has subscribed again. Each is ingested and acknowledged; none is
// left unacknowledged in the broker's in-flight window, where a MQTT 3.1.1
// broker would hold it until the next reconnect.
func TestExternalBrokerTakesWhatWasQueuedForItsSession(t *testing.T) {
	addr := startMosquitto(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	g := topicTGateway(ctx, t)
	cfg := &pb.ExternalBroker{Url: "tcp://" + addr, ClientId: "gw-session"}
	src, err := ConnectExternal(cfg, g, g.Topics, nil)
	require.NoError(t, err)
	require.Eventually(t, src.Subscribed, 10*time.Second, 10*time.Millisecond)
	src.Close() // the session and its subscription stay with the broker

	const n = 200
	dev := mqttClient(t, addr, "dev-queued")
	for i := 0; i < n; i++ {
		tok := dev.Publish("devices/d1/messages/events/", 1, false, []byte(fmt.Sprintf(`{"v":%d}`, i)))
		require.True(t, tok.WaitTimeout(5*time.Second))
		require.NoError(t, tok.Error())
	}
	dev.Disconnect(100)

	// The connect handler subscribes late, as on a busy machine: the
	// broker has sent what it queued by then.
	late := func() { time.Sleep(300 * time.Millisecond) }
	testHookBeforeSubscribe.Store(&late)
	t.Cleanup(func() { testHookBeforeSubscribe.Store(nil) })
	src, err = ConnectExternal(cfg, g, g.Topics, nil)
	require.NoError(t, err)
	defer src.Close()
	require.Eventually(t, func() bool { return g.Stats().EventsIn == n }, 10*time.Second, 10*time.Millisecond,
		"queued messages ingested: %d of %d", g.Stats().EventsIn, n)
	require.NoError(t, g.Close(ctx))
}
