package actors

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/querytest"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

const sample = "../deployments/jobs/temperature-filtering"

// testClock is the arrival-time clock: the test moves it to each event's
// time before publishing it, as if devices sent in real time.
type testClock struct{ t atomic.Int64 }

func (c *testClock) now() time.Time { return value.ToTime(c.t.Load()) }

func mqttClient(t *testing.T, addr, id string) paho.Client {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(true).SetAutoReconnect(false)
	c := paho.NewClient(opts)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// sampleJob is the temperature-filtering sample job with its LocalOutput
// written to a file and its CloudOutput published over MQTT.
func sampleJob(t *testing.T, localFile string) *pb.Job {
	t.Helper()
	query, err := os.ReadFile(filepath.Join(sample, "query.sql"))
	require.NoError(t, err)
	jobYAML := "name: temp\nquery: |\n  " + strings.ReplaceAll(string(query), "\n", "\n  ") + `
inputs:
  - name: EdgeInput
    topic: devices/+/messages/events/#
    device_id: topic:1
outputs:
  - name: LocalOutput
    file: {path: ` + localFile + `}
  - name: CloudOutput
    mqtt: {topic: "up/{job}/{output}", qos: 1}
`
	job, err := config.ParseJob("job.yaml", []byte(jobYAML))
	require.NoError(t, err)
	return job
}

// runSample publishes the sample input through brokerAddr (one MQTT
// message per reading, QoS 1, in file order), then compares what the
// gateway's outputs produce, row by row, with the sample's expected
// outputs (computed independently of Millstream).
func runSample(t *testing.T, g *Gateway, outs *Outputs, clock *testClock, brokerAddr, localFile string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	var cloud []string
	sub := mqttClient(t, brokerAddr, "subscriber")
	tok := sub.Subscribe("up/#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		cloud = append(cloud, string(m.Payload()))
		mu.Unlock()
	})
	require.True(t, tok.WaitTimeout(5*time.Second))

	pub := mqttClient(t, brokerAddr, "devices")
	f, err := os.Open(filepath.Join(sample, "input.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sent := uint64(0)
	for sc.Scan() {
		var d value.Decoder
		rec, err := d.Decode(sc.Bytes())
		require.NoError(t, err)
		dev, _ := rec.Get("deviceId")
		ts, _ := rec.Get("eventTime")
		at, err := value.ParseTime(ts.Str())
		require.NoError(t, err)
		clock.t.Store(at) // the reading arrives at its own time
		tok := pub.Publish("devices/"+dev.Str()+"/messages/events/", 1, false, append([]byte(nil), sc.Bytes()...))
		require.True(t, tok.WaitTimeout(5*time.Second))
		require.NoError(t, tok.Error())
		sent++
		// Wait until the gateway has it: an external broker delivers
		// asynchronously, and the clock must not run ahead of the reading.
		require.Eventually(t, func() bool { return g.Stats().EventsIn >= sent }, 5*time.Second, time.Millisecond)
	}
	require.Equal(t, uint64(480), sent)
	require.NoError(t, g.Drain(ctx))
	require.NoError(t, g.FlushWindows(ctx))
	require.NoError(t, outs.Close())

	// Every output row carries a stable, unique _id; strip it and compare.
	compare := func(name string, lines []string) {
		t.Helper()
		var got []*value.Record
		ids := map[string]bool{}
		for _, l := range lines {
			v, err := value.ParseJSON(l)
			require.NoError(t, err)
			r := v.Record()
			id, ok := r.Get("_id")
			require.True(t, ok, "no _id in %s", l)
			require.False(t, ids[id.Str()], "duplicate _id %s", id.Str())
			ids[id.Str()] = true
			got = append(got, &value.Record{Names: r.Names[1:], Vals: r.Vals[1:]})
		}
		data, err := os.ReadFile(filepath.Join(sample, "expected-"+name+".jsonl"))
		require.NoError(t, err)
		want, err := querytest.ReadJSONLines(data)
		require.NoError(t, err)
		diff := querytest.CompareRows(want, got, querytest.DefaultCompare)
		require.True(t, diff.Empty(), "%s: %d rows expected, %d produced:\n%s", name, len(want), len(got), diff)
	}
	local, err := os.ReadFile(localFile)
	require.NoError(t, err)
	compare("LocalOutput", strings.Split(strings.TrimSpace(string(local)), "\n"))
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(cloud) >= 10
	}, 5*time.Second, 20*time.Millisecond)
	time.Sleep(100 * time.Millisecond) // a duplicate would arrive now
	mu.Lock()
	compare("CloudOutput", cloud)
	mu.Unlock()
	st := g.Stats()
	require.Equal(t, uint64(480), st.EventsIn)
	require.Zero(t, st.DeadLettered)
}

// TestGatewayEmbeddedBrokerEndToEnd: devices publish to the embedded broker.
func TestGatewayEmbeddedBrokerEndToEnd(t *testing.T) {
	dir := t.TempDir()
	job := sampleJob(t, filepath.Join(dir, "local.jsonl"))
	clock := &testClock{}
	outs := NewOutputs(nil, nil)
	g := New(Config{Partitions: 4, Now: clock.now, Tick: time.Hour}, outs, nil)
	broker, err := StartBroker(g, BrokerOptions{Listen: "127.0.0.1:0", MaxPayload: 256 << 10})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Closed in a cleanup, so a failure half-way leaves no broker running
	// into the next test.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, broker.Close())
		require.NoError(t, g.Close(ctx))
	})
	outs.SetPublisher(broker)
	require.NoError(t, outs.Configure(job))
	require.NoError(t, g.Deploy(ctx, job))
	runSample(t, g, outs, clock, broker.Addr(), filepath.Join(dir, "local.jsonl"))
}

// TestGatewayMosquittoEndToEnd: devices publish to a real mosquitto; the
// gateway subscribes to it and publishes its MQTT output back to it.
func TestGatewayMosquittoEndToEnd(t *testing.T) {
	addr := startMosquitto(t)
	dir := t.TempDir()
	job := sampleJob(t, filepath.Join(dir, "local.jsonl"))
	clock := &testClock{}
	outs := NewOutputs(nil, nil)
	g := New(Config{Partitions: 4, Now: clock.now, Tick: time.Hour}, outs, nil)
	up, err := ConnectExternal(&pb.ExternalBroker{Url: "tcp://" + addr, ClientId: "gw-up"}, nil, nil, nil)
	require.NoError(t, err)
	defer up.Close()
	outs.SetPublisher(up)
	require.NoError(t, outs.Configure(job))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, g.Deploy(ctx, job))
	src, err := ConnectExternal(&pb.ExternalBroker{Url: "tcp://" + addr, ClientId: "gw-src"}, g, g.Topics, nil)
	require.NoError(t, err)
	defer src.Close()
	require.Eventually(t, func() bool { return src.c.IsConnectionOpen() }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond) // the subscription follows the connection
	runSample(t, g, outs, clock, addr, filepath.Join(dir, "local.jsonl"))
	require.Equal(t, uint64(480), src.Received())
	require.NoError(t, g.Close(ctx))
}

// TestGatewayBadInputOverMQTT: invalid JSON, wrong types and oversized
// payloads are counted and dead-lettered or rejected; valid messages are
// unaffected and the gateway keeps serving.
func TestGatewayBadInputOverMQTT(t *testing.T) {
	job, err := config.ParseJob("job.yaml", []byte(`name: alerts
query: SELECT deviceId, temperature INTO Alerts FROM Telemetry WHERE temperature > 100
inputs: [{name: Telemetry, topic: "devices/+/messages/events/#"}]
outputs: [{name: Alerts, log: {prefix: A}}]
`))
	require.NoError(t, err)
	var logMu sync.Mutex
	var logged strings.Builder
	outs := NewOutputs(nil, writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logged.Write(p)
	}))
	require.NoError(t, outs.Configure(job))
	dead := NewDeadLetters(nil, "", nil)
	g := New(Config{Partitions: 2}, outs, dead)
	broker, err := StartBroker(g, BrokerOptions{Listen: "127.0.0.1:0", MaxPayload: 1024})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, g.Deploy(ctx, job))
	pub := mqttClient(t, broker.Addr(), "bad-device")
	send := func(topic, payload string) {
		tok := pub.Publish(topic, 1, false, payload)
		require.True(t, tok.WaitTimeout(5*time.Second))
	}
	send("devices/d1/messages/events/", `{"deviceId":"d1","temperature":120}`)
	send("devices/d1/messages/events/", `{"deviceId":"d1","temperature":`)           // invalid JSON
	send("devices/d1/messages/events/", `{"deviceId":"d1","temperature":"boiling"}`) // wrong type
	send("devices/d1/messages/events/", `{"deviceId":"d1","pad":"`+strings.Repeat("x", 2000)+`"}`)
	send("somewhere/else", `{"deviceId":"d1","temperature":130}`) // no job listens
	send("devices/d2/messages/events/", `{"deviceId":"d2","temperature":101}`)
	require.NoError(t, g.Drain(ctx))

	kept, err := dead.List(0, 10)
	require.NoError(t, err)
	require.Len(t, kept, 3)
	kinds := map[string]string{}
	for _, k := range kept {
		if k.Kind == DeadLetterOversized {
			require.Equal(t, "devices/d1/messages/events/", k.Source, "the gateway refused it, before any job")
			require.Equal(t, uint32(2026), k.PayloadBytes)
			continue
		}
		require.Equal(t, "alerts", k.Job)
		require.Equal(t, "d1", k.Source)
		kinds[k.Kind] = string(k.Payload)
	}
	require.Equal(t, map[string]string{exec.DeadLetterMalformed: `{"deviceId":"d1","temperature":`,
		exec.DeadLetterExpression: `{"deviceId":"d1","temperature":"boiling"}`}, kinds)
	require.Equal(t, map[string]uint64{exec.DeadLetterMalformed: 1, exec.DeadLetterExpression: 1, DeadLetterOversized: 1}, dead.Counts())
	require.Equal(t, uint64(1), broker.Rejected())
	require.Equal(t, uint64(1), broker.Unrouted())
	logMu.Lock()
	out := logged.String()
	logMu.Unlock()
	require.Contains(t, out, `{"deviceId":"d1","temperature":120}`)
	require.Contains(t, out, `{"deviceId":"d2","temperature":101}`)
	require.Equal(t, 2, strings.Count(out, "\n"))
	require.NoError(t, broker.Close())
	require.NoError(t, g.Close(ctx))
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
