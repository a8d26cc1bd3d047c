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

// TestExternalBrokerReconnects: when mosquitto goes away and comes back on
// the same address, the gateway reconnects, subscribes again and ingests
// what devices publish after that.
func TestExternalBrokerReconnects(t *testing.T) {
	addr, kill := startMosquittoOn(t, "", "")
	g := New(Config{Partitions: 2}, nil, nil)
	job, err := config.ParseJob("job.yaml", []byte("name: j\nquery: SELECT v INTO o FROM t\ninputs: [{name: t}]\noutputs: [{name: o, log: {}}]\n"))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, g.Deploy(ctx, job))
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
