package actors

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestClockActorRestartsAndKeepsTicking: the clock actor panics on its
// first ticks; its supervisor restarts it, and it goes on ticking: a
// silent device goes offline, and partial batches are still flushed.
func TestClockActorRestartsAndKeepsTicking(t *testing.T) {
	noLeaks(t)
	var ticks atomic.Int64
	clockFault = func() {
		if ticks.Add(1) <= 2 {
			panic("test: the clock fails")
		}
	}
	defer func() { clockFault = nil }()
	g := New(Config{Partitions: 2, Tick: 20 * time.Millisecond, DeviceSilence: 100 * time.Millisecond, BatchSize: 1000}, NewOutputs(nil, nil), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer func() { require.NoError(t, g.Close(ctx)) }()
	require.NoError(t, g.Ingest("i", "d1", []byte(`{"t":1}`))) // waits in a partial batch: the clock flushes it
	require.Eventually(t, func() bool {
		d, err := g.Device(ctx, "d1")
		return err == nil && d.Messages == 1 && !d.Online
	}, 5*time.Second, 10*time.Millisecond, "the restarted clock flushes the batch and ticks the device offline")
	require.GreaterOrEqual(t, ticks.Load(), int64(3), "two failed ticks, then the ones that went through")
}
