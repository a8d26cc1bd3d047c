package actors

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
)

type capturePublisher struct {
	mu   sync.Mutex
	msgs []string
	qos  []byte
}

func (c *capturePublisher) Publish(topic string, payload []byte, qos byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, topic+" "+string(payload))
	c.qos = append(c.qos, qos)
	return nil
}

// TestDevicesOnlineOfflineTwinAndPassivation drives device liveness with a
// fake clock: online and offline events reach a query reading FROM Devices,
// the twin shows reported and desired properties, desired properties are
// published to the device, and idle devices leave memory.
func TestDevicesOnlineOfflineTwinAndPassivation(t *testing.T) {
	clock := &testClock{}
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	set := func(d time.Duration) { clock.t.Store(t0.Add(d).UnixNano()/100 + 621355968000000000) }
	set(0)
	sink := &captureSink{}
	pub := &capturePublisher{}
	g := New(Config{Partitions: 4, Now: clock.now, Tick: time.Hour, DeviceSilence: 10 * time.Second, PassivateAfter: time.Minute}, Rows(sink), nil)
	g.SetPublisher(pub)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	job, err := config.ParseJob("job.yaml", []byte(`name: liveness
query: SELECT deviceId, status INTO o FROM Devices
outputs: [{name: o, log: {}}]
`))
	require.NoError(t, err)
	require.NoError(t, g.Deploy(ctx, job))
	step := func(d time.Duration, f func()) {
		set(d)
		if f != nil {
			f()
		}
		g.tick()
		require.NoError(t, g.Drain(ctx))
	}
	send := func(dev string) {
		require.NoError(t, g.Ingest("telemetry", dev, []byte(fmt.Sprintf(`{"deviceId":"%s","t":1}`, dev))))
	}
	step(0, func() { send("d1"); send("d2") })
	step(5*time.Second, func() { send("d1") })
	step(12*time.Second, nil)                   // d2 silent for 12 s: offline
	step(20*time.Second, nil)                   // d1 silent for 15 s: offline
	step(30*time.Second, func() { send("d1") }) // d1 is back

	devs, err := g.Devices(ctx)
	require.NoError(t, err)
	require.Len(t, devs, 2)
	require.Equal(t, "d1", devs[0].ID)
	require.True(t, devs[0].Online)
	require.Equal(t, uint64(3), devs[0].Messages)
	require.JSONEq(t, `{"deviceId":"d1","t":1}`, string(devs[0].Reported))
	require.False(t, devs[1].Online)

	// PUT /v1/devices/{id}/desired (actors/admin) calls SetDesired.
	require.NoError(t, g.SetDesired(ctx, "d2", []byte(`{"fan":"high"}`)))
	require.Equal(t, []string{`devices/d2/twin/desired {"fan":"high"}`}, pub.msgs)
	require.ErrorIs(t, g.SetDesired(ctx, "d2", []byte(`[1]`)), ErrBadRequest)

	step(100*time.Second, nil) // d1 silent 70 s: offline, and both idle past a minute
	devs, err = g.Devices(ctx)
	require.NoError(t, err)
	require.Len(t, devs, 1, "passivated devices leave memory; d2 stays for its desired properties")
	require.Equal(t, "d2", devs[0].ID)
	require.JSONEq(t, `{"fan":"high"}`, string(devs[0].Desired))
	_, err = g.Device(ctx, "d1")
	require.ErrorIs(t, err, ErrUnknownDevice)

	var got []string
	for _, r := range sink.rows["o"] {
		got = append(got, string(r.Vals[0].Str())+" "+r.Vals[1].Str())
	}
	require.ElementsMatch(t, []string{"d1 online", "d2 online", "d2 offline", "d1 offline", "d1 online", "d1 offline"}, got)
	require.NoError(t, g.Close(ctx))
}

// TestDeviceKeepsOnlySmallReportedPayloads: a device's last payload is its
// reported state only up to MaxReportedBytes; a larger one is counted, not
// held (4,000 devices that sent 200 KiB each held 800 MiB).
func TestDeviceKeepsOnlySmallReportedPayloads(t *testing.T) {
	g, ctx := passThroughGateway(t, nil)
	var err error
	big := `{"pad":"` + strings.Repeat("x", MaxReportedBytes) + `"}`
	_, err = g.IngestTopic("devices/big/messages/events", []byte(big))
	require.NoError(t, err)
	_, err = g.IngestTopic("devices/small/messages/events", []byte(`{"t":1}`))
	require.NoError(t, err)
	require.NoError(t, g.Drain(ctx))
	d, err := g.Device(ctx, "big")
	require.NoError(t, err)
	require.Nil(t, d.Reported)
	require.Equal(t, len(big), d.ReportedBytes)
	require.Equal(t, uint64(1), d.Messages)
	d, err = g.Device(ctx, "small")
	require.NoError(t, err)
	require.JSONEq(t, `{"t":1}`, string(d.Reported))
	require.Zero(t, d.ReportedBytes)
}

// TestLongDeviceIDDeadLettered: a message whose device id is over
// MaxDeviceIDBytes is dead-lettered (kind bad_device_id), not kept as a
// device: ids are listed by the admin API and the console, and 30 ids of
// 60,000 bytes made every console frame 10 MB.
func TestLongDeviceIDDeadLettered(t *testing.T) {
	dead := NewDeadLetters(nil, "", nil)
	g, ctx := passThroughGateway(t, dead)
	var err error
	long := strings.Repeat("<", MaxDeviceIDBytes+1)
	_, err = g.IngestTopic("devices/"+long+"/messages/events", []byte(`{"t":1}`))
	require.NoError(t, err)
	_, err = g.IngestTopic("devices/"+long[1:]+"/messages/events", []byte(`{"t":2}`))
	require.NoError(t, err)
	require.NoError(t, g.Drain(ctx))
	devs, err := g.DevicesPage(ctx, "", 10)
	require.NoError(t, err)
	require.Len(t, devs, 1, "the id at the limit is a device, the longer one is not")
	require.Len(t, devs[0].ID, MaxDeviceIDBytes)
	require.Equal(t, map[string]uint64{DeadLetterDeviceID: 1}, dead.Counts())
	kept, err := dead.List(0, 10)
	require.NoError(t, err)
	require.Len(t, kept, 1)
	require.Contains(t, kept[0].Reason, "device id of 257 bytes is over the limit of 256")
	require.Equal(t, "j", kept[0].Job)
	require.LessOrEqual(t, len(kept[0].Source), 70)

	// Every other way in refuses such an id.
	require.ErrorIs(t, g.Ingest("i", long, []byte(`{"t":3}`)), ErrBadRequest)
	require.ErrorIs(t, g.PatchReported(long, []byte(`{"fw":1}`)), ErrBadRequest)
	require.ErrorIs(t, g.SetDesired(ctx, long, []byte(`{"interval":5}`)), ErrBadRequest)
	devs, err = g.DevicesPage(ctx, "", 10)
	require.NoError(t, err)
	require.Len(t, devs, 1)
}

// passThroughGateway is an in-memory gateway running job j (SELECT * from
// input i, every topic), closed at cleanup; ctx bounds the test.
func passThroughGateway(t *testing.T, dead DeadLetterSink) (*Gateway, context.Context) {
	t.Helper()
	g := New(Config{Partitions: 2}, NewOutputs(nil, io.Discard), dead)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(func() {
		_ = g.Close(ctx)
		cancel()
	})
	job, err := config.ParseJob("j.yaml", []byte("name: j\nquery: SELECT * INTO o FROM i\ninputs: [{name: i}]\noutputs: [{name: o, log: {}}]\n"))
	require.NoError(t, err)
	require.NoError(t, g.Deploy(ctx, job))
	return g, ctx
}
