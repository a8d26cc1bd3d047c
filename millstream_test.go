package millstream_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream"
	"github.com/millstream/millstream/internal/logging/logtest"
	"github.com/millstream/millstream/internal/testutil"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

func TestStartNeedsAConfig(t *testing.T) {
	_, err := millstream.Start(context.Background(), millstream.Options{})
	require.ErrorIs(t, err, millstream.ErrNoConfig)
}

// TestValidateFillsDefaultsAndNamesTheField: Validate writes the defaults
// into the configuration, and a bad one is refused naming its field,
// before anything is opened or listens.
func TestValidateFillsDefaultsAndNamesTheField(t *testing.T) {
	o := millstream.Options{Config: &pb.GatewayConfig{Name: "lib", DataDir: t.TempDir()}}
	require.NoError(t, o.Validate())
	require.EqualValues(t, 64, o.Config.Partitions, "the default number of partitions")
	require.NotEmpty(t, o.Config.MqttListen, "the default MQTT listener")

	bad := millstream.Options{Config: &pb.GatewayConfig{Name: "lib", DataDir: t.TempDir(), MqttListen: "0.0.0.0:1883"}}
	err := bad.Validate()
	require.Error(t, err)
	require.Contains(t, err.Error(), "mqtt_listen")
	_, err = millstream.Start(context.Background(), bad)
	require.Error(t, err)
}

// TestStartRunsAJobAndCloses: a durable gateway started through the
// library takes a reading over MQTT, its job's row reaches the log output,
// the admin API answers, and Close leaves no goroutine of the gateway
// running.
func TestStartRunsAJobAndCloses(t *testing.T) {
	out := &logtest.Buffer{} // the drainer writes from its own goroutine
	cfg := &pb.GatewayConfig{
		Name: "lib", DataDir: t.TempDir(), Partitions: 4,
		MqttListen: "127.0.0.1:0", HttpListen: "127.0.0.1:0",
		Jobs: []*pb.Job{{
			Name:    "hot",
			Query:   "SELECT deviceId, temperature INTO alerts FROM telemetry WHERE temperature > 90",
			Inputs:  []*pb.JobInput{{Name: "telemetry", Topic: "factory/+/telemetry"}},
			Outputs: []*pb.JobOutput{{Name: "alerts", Sink: &pb.JobOutput_Log{Log: &pb.LogSink{}}}},
		}},
	}
	ctx := context.Background()
	gw, err := millstream.Start(ctx, millstream.Options{Config: cfg, Output: out})
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			gw.Close(ctx)
		}
	})
	require.NotEmpty(t, gw.BrokerAddr())
	require.Nil(t, gw.Node(), "standalone")
	require.NoError(t, gw.Drain(ctx), "a standalone gateway has nothing to hand off")

	resp, err := http.Get(gw.AdminURL() + "/v1/jobs")
	require.NoError(t, err)
	var list struct {
		Jobs []struct{ Name string }
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
	resp.Body.Close()
	require.Len(t, list.Jobs, 1)
	require.Equal(t, "hot", list.Jobs[0].Name)

	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + gw.BrokerAddr()).SetClientID("press-01"))
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	for _, temp := range []int{50, 95} {
		p := c.Publish("factory/press-01/telemetry", 1, false, `{"deviceId":"press-01","temperature":`+strings.TrimSpace(jsonInt(temp))+`}`)
		require.True(t, p.WaitTimeout(10*time.Second))
		require.NoError(t, p.Error())
	}
	c.Disconnect(100)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), `"temperature":95`) }, 10*time.Second, 20*time.Millisecond,
		"the row of the reading over 90 reaches the log output")
	require.NotContains(t, out.String(), `"temperature":50`)
	require.Equal(t, uint64(2), gw.Runtime().Stats().EventsIn)

	gw.Close(ctx)
	closed = true
	testutil.NoGoroutinesLeft(t, "millstream/millstream/actors", "millstream/millstream/state", "mochi-mqtt/server", "cockroachdb/pebble")
	_, err = http.Get(gw.AdminURL() + "/healthz")
	require.Error(t, err, "the admin API is closed")
}

func jsonInt(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
