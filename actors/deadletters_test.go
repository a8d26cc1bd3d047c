package actors

import (
	"time"

	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/state"
)

// TestOversizedDeadLettered: a payload over MaxPayloadBytes is reported,
// kept with its first bytes, its size and its source, and counted; one at
// the limit is not.
func TestOversizedDeadLettered(t *testing.T) {
	dead := NewDeadLetters(nil, "", nil)
	g := &Gateway{cfg: Config{MaxPayloadBytes: 100}, dead: dead}
	require.False(t, g.Oversized("devices/a/messages/events", bytes.Repeat([]byte("x"), 100)))
	require.True(t, g.Oversized("devices/a/messages/events", bytes.Repeat([]byte("x"), 5000)))
	kept, err := dead.List(0, 10)
	require.NoError(t, err)
	require.Len(t, kept, 1)
	require.Equal(t, DeadLetterOversized, kept[0].Kind)
	require.Equal(t, "devices/a/messages/events", kept[0].Source)
	require.Len(t, kept[0].Payload, state.MaxDeadLetterPayload)
	require.Equal(t, uint32(5000), kept[0].PayloadBytes)
	require.Contains(t, kept[0].Reason, "5000 bytes is over max_payload_bytes 100")
	require.Equal(t, uint64(1), g.Stats().DeadLettered)
	require.Equal(t, map[string]uint64{DeadLetterOversized: 1}, dead.Counts())
}

// TestMemoryDeadLettersBounded: without a store the newest
// memoryDeadLetters are kept, listed newest first, page by page.
func TestMemoryDeadLettersBounded(t *testing.T) {
	dead := NewDeadLetters(nil, "", nil)
	for i := 0; i < memoryDeadLetters+50; i++ {
		dead.DeadLetter(Rejected{Job: "j", DeadLetter: deadLetterOf(i)})
	}
	all, err := dead.List(0, 5000)
	require.NoError(t, err)
	require.Len(t, all, memoryDeadLetters)
	require.Equal(t, uint64(memoryDeadLetters+50), all[0].ID)
	page, err := dead.List(all[9].ID, 10)
	require.NoError(t, err)
	require.Equal(t, all[10:20], page)
	require.Equal(t, uint64(memoryDeadLetters+50), dead.Counts()["malformed"])
}

func deadLetterOf(i int) exec.DeadLetter {
	return exec.DeadLetter{Kind: exec.DeadLetterMalformed, Reason: "not JSON", Payload: []byte{byte(i)}}
}

// TestDiskGuardHysteresis: the guard refuses once the free-space floor is
// crossed, says why, and takes input again only with a margin.
func TestDiskGuardHysteresis(t *testing.T) {
	st, err := state.Open(t.TempDir(), state.Config{Partitions: 1})
	require.NoError(t, err)
	defer st.Close()
	sp, err := st.DiskSpace()
	require.NoError(t, err)
	d := &diskGuard{store: st, floor: 1, logger: slog.New(slog.DiscardHandler)}
	d.check()
	require.NoError(t, d.admit())
	d.floor = sp.FreeBytes + 1<<30
	d.check()
	require.ErrorIs(t, d.admit(), ErrDiskFull)
	require.ErrorContains(t, d.admit(), "under the floor")
	d.floor = sp.FreeBytes - sp.FreeBytes/50 // free is above the floor but within 10% of it
	d.check()
	require.ErrorIs(t, d.admit(), ErrDiskFull, "not yet back with a margin")
	d.floor = 1
	d.quota = sp.StoreBytes + 1<<30
	d.check()
	require.NoError(t, d.admit())
	d.quota = 1
	d.check()
	require.ErrorContains(t, d.admit(), "over its quota")
	require.Equal(t, uint64(4), d.refused.Load())
}

// TestDiskGuardMeasuresLessWithRoom: the guard measures every 500 ms near
// a limit or while refusing, and less often with gigabytes of room (a
// measurement was 40% of an idle gateway's CPU).
func TestDiskGuardMeasuresLessWithRoom(t *testing.T) {
	const gib = uint64(1 << 30)
	d := &diskGuard{floor: gib / 8, logger: slog.New(slog.DiscardHandler)}
	for _, c := range []struct {
		free, store, quota uint64
		want               time.Duration
	}{
		{free: 100 * gib, want: 5 * time.Second},
		{free: 2 * gib, want: 2 * time.Second},
		{free: gib / 2, want: diskCheckEvery},
		{free: 100 * gib, store: 10 * gib, quota: 10*gib + gib/2, want: diskCheckEvery},
		{free: 100 * gib, store: 10 * gib, quota: 12 * gib, want: 2 * time.Second},
		{free: 100 * gib, store: 10 * gib, quota: 9 * gib, want: diskCheckEvery},
	} {
		d.quota = c.quota
		require.Equal(t, c.want, d.nextCheck(state.DiskSpace{FreeBytes: c.free, StoreBytes: c.store}), "%+v", c)
	}
	d.quota = 0
	d.refusing.Store(true)
	require.Equal(t, diskCheckEvery, d.nextCheck(state.DiskSpace{FreeBytes: 100 * gib}), "while refusing")
}
