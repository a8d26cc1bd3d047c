package actors

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
)

// TestQuietPartitionsAreNotTicked (issue 18): a durable gateway with a job
// deployed and no input logged a tick for every partition every tick
// interval, each a log entry and a sync. A partition with no job state,
// nothing waiting and no device due to change is quiet: no tick is logged
// for it until an event comes, and then the ticks resume while its window
// is open and its device online. While every partition is quiet the
// gateway's timers sleep; an event wakes them.
func TestQuietPartitionsAreNotTicked(t *testing.T) {
	dir := t.TempDir()
	job, err := config.ParseJob("job.yaml", []byte(windowJobYAML(dir)))
	require.NoError(t, err)
	st, outs, logger := openStoreAndOutputs(t, dir)
	g := New(Config{Partitions: 2, Tick: 10 * time.Millisecond, CheckpointInterval: 20 * time.Millisecond, SyncInterval: time.Microsecond,
		Store: st, Logger: logger}, outs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer func() { require.NoError(t, g.Close(ctx)) }()
	require.NoError(t, outs.Configure(job))
	require.NoError(t, g.Deploy(ctx, job))
	require.NoError(t, g.Recover(ctx))

	// loggedIn counts the entries each partition logs in d.
	loggedIn := func(d time.Duration) [2]uint64 {
		before := [2]uint64{st.LastSeq(0), st.LastSeq(1)}
		time.Sleep(d)
		return [2]uint64{st.LastSeq(0) - before[0], st.LastSeq(1) - before[1]}
	}
	require.Eventually(t, func() bool { return loggedIn(100*time.Millisecond) == [2]uint64{} },
		5*time.Second, 10*time.Millisecond, "an idle partition still logs ticks")
	require.Zero(t, loggedIn(200 * time.Millisecond)[1], "20 tick intervals on an idle partition")
	require.NotZero(t, g.quietSleeps.Load(), "every partition quiet: the timers sleep instead of ticking")

	var dev string
	var payload []byte
	for n := 0; dev == ""; n++ {
		if d, pl := reading(n); PartitionOf(d, 2) == 1 {
			dev, payload = d, pl
		}
	}
	_, c, err := g.IngestTopicAsync("devices/"+dev+"/messages/events", payload)
	require.NoError(t, err)
	require.NoError(t, c.Wait())
	logged := loggedIn(200 * time.Millisecond)
	require.Greater(t, logged[1], uint64(5), "an open window and an online device are ticked")
	require.Zero(t, logged[0], "the other partition stays quiet")
}
