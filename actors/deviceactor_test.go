package actors

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/value"
)

// noLeaks fails the test if, once its cleanups (the gateway's Close
// among them) have run, a goroutine it started is still running: the
// device actors, the clock and the log writer must all stop with their
// gateway. Call it first, so that its check runs last.
func noLeaks(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) })
}

// clockedGateway is an in-memory gateway on a clock the test moves, with
// the pass-through job reading input i, devices silent after 10 s and
// passivated a minute later; step moves the clock to t0+d, runs f, ticks
// the partitions and waits for them.
func clockedGateway(t *testing.T, cfg Config) (g *Gateway, ctx context.Context, step func(d time.Duration, f func())) {
	t.Helper()
	clock := &testClock{}
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	set := func(d time.Duration) { clock.t.Store(value.FromTime(t0.Add(d))) }
	set(0)
	cfg.Partitions, cfg.Now, cfg.Tick, cfg.DeviceSilence, cfg.PassivateAfter = 4, clock.now, time.Hour, 10*time.Second, time.Minute
	g = New(cfg, NewOutputs(nil, nil), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(func() {
		require.NoError(t, g.Close(ctx))
		cancel()
	})
	job, err := config.ParseJob("j.yaml", []byte("name: j\nquery: SELECT * INTO o FROM i\ninputs: [{name: i}]\noutputs: [{name: o, log: {}}]\n"))
	require.NoError(t, err)
	require.NoError(t, g.Deploy(ctx, job))
	step = func(d time.Duration, f func()) {
		set(d)
		if f != nil {
			f()
		}
		g.tick()
		require.NoError(t, g.Drain(ctx))
	}
	return g, ctx, step
}

// TestDeviceActorsActivatedOnDemandAndPassivated: each device heard from
// gets an actor that counts its messages, bytes and resends; a device idle
// past the passivation time loses its actor and keeps only its twin; a
// desired-properties write activates a dormant device's actor, which is
// passivated again at the next sweep with the new version kept.
func TestDeviceActorsActivatedOnDemandAndPassivated(t *testing.T) {
	noLeaks(t)
	g, ctx, step := clockedGateway(t, Config{SequenceField: "seq"})
	var sent = map[string]uint64{}
	send := func(dev string, seq int) {
		payload := fmt.Sprintf(`{"seq":%d,"v":%d}`, seq, seq*7)
		sent[dev] += uint64(len(payload))
		require.NoError(t, g.Ingest("i", dev, []byte(payload)))
	}
	step(0, func() {
		for seq := 1; seq <= 3; seq++ {
			send("d1", seq)
			send("d2", seq)
			send("d3", seq)
		}
		send("d1", 2) // a resend: dropped, counted on d1
	})
	require.Equal(t, int64(3), g.deviceActorsLive.Load())
	require.Equal(t, uint64(3), g.deviceActivations.Load())
	d1, err := g.Device(ctx, "d1")
	require.NoError(t, err)
	require.Equal(t, uint64(3), d1.Messages)
	require.Equal(t, uint64(1), d1.Duplicates)
	require.Equal(t, sent["d1"]-uint64(len(`{"seq":2,"v":14}`)), d1.Bytes, "the resend's bytes are not counted")
	require.JSONEq(t, `{"seq":3,"v":21}`, string(d1.Reported))
	require.True(t, d1.Online)

	// A write to a device never heard from activates an actor for it,
	// which the next sweep passivates; the write stays.
	require.NoError(t, g.SetDesired(ctx, "d9", []byte(`{"fan":"low"}`)))
	require.Equal(t, int64(4), g.deviceActorsLive.Load())
	step(time.Second, nil)
	require.Equal(t, int64(3), g.deviceActorsLive.Load(), "the actor activated for a write is passivated")
	require.NoError(t, g.SetDesired(ctx, "d9", []byte(`{"fan":"high"}`)))
	tw, err := g.TwinOf(ctx, "d9")
	require.NoError(t, err)
	require.JSONEq(t, `{"fan":"high"}`, string(tw.Desired))
	require.Equal(t, uint64(2), tw.DesiredVersion, "the version survives passivation")

	// All silent: offline after 10 s, passivated a minute later.
	step(20*time.Second, nil)
	devs, err := g.Devices(ctx)
	require.NoError(t, err)
	require.Len(t, devs, 4)
	for _, d := range devs[:3] {
		require.False(t, d.Online, d.ID)
		require.Equal(t, uint64(3), d.Messages, d.ID)
	}
	step(2*time.Minute, nil)
	require.Zero(t, g.deviceActorsLive.Load())
	require.Equal(t, uint64(5), g.devicePassivations.Load(), "d1-d3 once, d9 twice")
	devs, err = g.Devices(ctx)
	require.NoError(t, err)
	require.Len(t, devs, 1, "only the device with a twin is kept while dormant")
	require.Equal(t, "d9", devs[0].ID)
	require.Equal(t, uint64(2), devs[0].DesiredVersion)

	// d1 comes back: a new actor, counting from its return.
	step(3*time.Minute, func() { send("d1", 4) })
	require.Equal(t, int64(1), g.deviceActorsLive.Load())
	d1, err = g.Device(ctx, "d1")
	require.NoError(t, err)
	require.Equal(t, uint64(1), d1.Messages)
	require.True(t, d1.Online)
}

// TestDurableDeviceActorsRecoverTheirState: the device actors' state
// (counters, last payload, both sides of the twin with their versions)
// comes back after a restart from the checkpoint and the log's replay,
// equal to what it was before, and so do desired properties acknowledged
// after the last checkpoint (they are logged, not only held in memory).
func TestDurableDeviceActorsRecoverTheirState(t *testing.T) {
	for _, deviceActors := range []int{0, 4} {
		t.Run(fmt.Sprintf("device_actors=%d", deviceActors), func(t *testing.T) { durableDevicesRecover(t, deviceActors) })
	}
}

func durableDevicesRecover(t *testing.T, deviceActors int) {
	dir := t.TempDir()
	job, err := config.ParseJob("job.yaml", []byte(windowJobYAML(dir)))
	require.NoError(t, err)
	clock := &testClock{}
	cfg := Config{Partitions: 4, Tick: time.Hour, SequenceField: "seq", SyncInterval: time.Microsecond, Now: clock.now,
		CheckpointInterval: time.Hour, DeviceActors: deviceActors}
	d := openDurable(t, dir, job, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ingestReadings(t, d.g, clock, 0, 300)
	ingestReadings(t, d.g, clock, 250, 300) // resends
	require.NoError(t, d.g.PatchReported("press-03", []byte(`{"fw":"1.0","temp":{"max":90}}`)))
	require.NoError(t, d.g.SetDesired(ctx, "press-03", []byte(`{"rate":5}`)))
	require.NoError(t, d.g.SetDesired(ctx, "never-seen", []byte(`{"rate":1}`)))
	require.NoError(t, d.g.Drain(ctx))
	require.NoError(t, d.g.Checkpoint(ctx))
	// After the checkpoint: replayed from the log.
	ingestReadings(t, d.g, clock, 300, 500)
	require.NoError(t, d.g.PatchReported("press-03", []byte(`{"fw":"1.1","temp":{"max":null}}`)))
	require.NoError(t, d.g.SetDesired(ctx, "press-03", []byte(`{"rate":10}`)))
	require.NoError(t, d.g.SetDesired(ctx, "never-seen", []byte(`{"rate":2}`)))
	require.NoError(t, d.g.Drain(ctx))
	before, err := d.g.Devices(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, before)
	var dups uint64
	for _, dev := range before {
		dups += dev.Duplicates
	}
	require.Equal(t, uint64(50), dups)
	tw, err := d.g.TwinOf(ctx, "press-03")
	require.NoError(t, err)
	require.JSONEq(t, `{"fw":"1.1","temp":{}}`, string(tw.Reported))
	require.Equal(t, uint64(2), tw.ReportedVersion)
	require.JSONEq(t, `{"rate":10}`, string(tw.Desired))
	require.Equal(t, uint64(2), tw.DesiredVersion)

	// A crash: no checkpoint at close, so what came after the one above
	// is replayed from the log.
	d.g.ready.Store(false)
	d.close(t)
	d = openDurable(t, dir, job, cfg)
	defer d.close(t)
	after, err := d.g.Devices(ctx)
	require.NoError(t, err)
	require.Equal(t, before, after)
	got, err := d.g.TwinOf(ctx, "press-03")
	require.NoError(t, err)
	require.Equal(t, tw, got)
}

// TestDeviceRecordsSameWithFewActors: past the partition's share of
// Config.DeviceActors, devices keep their records in the partition;
// what the admin API shows of them is the same as with an actor each,
// through resends, twin writes, silence and passivation.
func TestDeviceRecordsSameWithFewActors(t *testing.T) {
	run := func(deviceActors int) (views [][]Device, peak int64) {
		g, ctx, step := clockedGateway(t, Config{SequenceField: "seq", DeviceActors: deviceActors})
		look := func() {
			devs, err := g.Devices(ctx)
			require.NoError(t, err)
			views = append(views, devs)
			peak = max(peak, g.deviceActorsLive.Load())
		}
		for round := 0; round < 6; round++ {
			step(time.Duration(round)*15*time.Second, func() {
				for d := 0; d < 60; d++ {
					if (d+round)%3 == 0 {
						continue // silent this round
					}
					dev := fmt.Sprintf("dev-%02d", d)
					require.NoError(t, g.Ingest("i", dev, []byte(fmt.Sprintf(`{"seq":%d,"r":%d}`, round, d))))
					if d%7 == 0 {
						require.NoError(t, g.Ingest("i", dev, []byte(fmt.Sprintf(`{"seq":%d,"r":%d}`, round, d)))) // resend
					}
					if d%11 == 0 {
						require.NoError(t, g.PatchReported(dev, []byte(fmt.Sprintf(`{"round":%d}`, round))))
					}
				}
				if round == 2 {
					require.NoError(t, g.SetDesired(ctx, "dev-05", []byte(`{"rate":2}`)))
				}
			})
			look()
		}
		step(10*time.Minute, g.tick) // all offline and passivated
		look()
		step(11*time.Minute, func() {
			for d := 0; d < 60; d += 5 { // some come back: their twins with them
				require.NoError(t, g.Ingest("i", fmt.Sprintf("dev-%02d", d), []byte(`{"seq":9}`)))
			}
		})
		look()
		return views, peak
	}
	many, peakMany := run(0)
	few, peakFew := run(4)
	require.Equal(t, many, few)
	require.Greater(t, peakMany, int64(40))
	require.LessOrEqual(t, peakFew, int64(4), "one actor per partition after each sweep")
	require.NotEmpty(t, many[len(many)-1], "the devices with a twin stay")
}

// TestDeviceActorPanicKeepsItsPartitionGoing: a device actor that panics
// on every message its partition sends drops the message, is counted,
// and still answers its partition's state requests, so reads and
// checkpoints go on; the other devices are untouched.
func TestDeviceActorPanicKeepsItsPartitionGoing(t *testing.T) {
	deviceFault = func(id string, msg any) {
		if id == "bad" {
			panic("test: the bad device's actor fails")
		}
	}
	defer func() { deviceFault = nil }()
	dir := t.TempDir()
	job, err := config.ParseJob("job.yaml", []byte(windowJobYAML(dir)))
	require.NoError(t, err)
	clock := &testClock{}
	d := openDurable(t, dir, job, Config{Partitions: 2, Tick: time.Hour, SyncInterval: time.Microsecond, Now: clock.now, CheckpointInterval: time.Hour})
	defer d.close(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		for _, dev := range []string{"bad", "good"} {
			_, err := d.g.IngestTopic("devices/"+dev+"/messages/events", []byte(`{"temperature":1}`))
			require.NoError(t, err)
		}
	}
	require.NoError(t, d.g.Drain(ctx))
	require.NoError(t, d.g.Checkpoint(ctx), "the checkpoint does not wait forever for the failing actor")
	good, err := d.g.Device(ctx, "good")
	require.NoError(t, err)
	require.Equal(t, uint64(3), good.Messages)
	devs, err := d.g.Devices(ctx)
	require.NoError(t, err)
	require.Len(t, devs, 2)
	require.Greater(t, d.g.deviceFailures.Load(), uint64(0))
	_, err = d.g.Device(ctx, "bad")
	require.Error(t, err, "a read the failing actor dropped is answered with an error, not left to time out")
}
