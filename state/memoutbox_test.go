package state

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOutboxStoresAgree: the store's outbox and the in-memory one give
// the same rows, marks, heads and counts for the same calls (sizes aside:
// the memory one estimates them).
func TestOutboxStoresAgree(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "s"), Config{Partitions: 4})
	require.NoError(t, err)
	defer s.Close()
	for name, ob := range map[string]Outbox{"pebble": s, "memory": NewMemOutbox()} {
		t.Run("store="+name, func(t *testing.T) {
			require.NoError(t, ob.AppendOutputs(1, 3, rows("j/a", "a1", "a2", "a3", "a4", "a5")))
			require.NoError(t, ob.AppendOutputs(2, 1, rows("j/b", "b1")))
			w, err := ob.OutputWritten(1)
			require.NoError(t, err)
			require.Equal(t, uint64(3), w)
			require.Equal(t, map[string]uint64{"j/a": 5, "j/b": 1}, ob.OutboxHighWater())
			items, err := ob.ReadOutbox("j/a", 0, 10, false)
			require.NoError(t, err)
			require.Equal(t, []string{"a1", "a2", "a3", "a4", "a5"}, ids(items))
			newest, err := ob.ReadOutbox("j/a", items[0].Seq, 2, true)
			require.NoError(t, err)
			require.Equal(t, []string{"a4", "a5"}, ids(newest))

			ob.ForgetOutbox("j/a", items[:1])
			require.NoError(t, ob.DeleteOutboxRange("j/a", items[0].Seq, items[0].Seq))
			require.NoError(t, ob.DeleteOutbox("j/a", items[3:4])) // from the middle (live first)
			require.NoError(t, ob.DeadLetterOutbox("j/a", items[1:2]))
			st := ob.Outbox("j/a")
			require.Equal(t, int64(2), st.Entries)
			require.Equal(t, int64(1), st.Dead)
			require.Equal(t, int64(items[2].Size+items[4].Size), st.Bytes)
			left, err := ob.ReadOutbox("j/a", items[0].Seq, 10, false)
			require.NoError(t, err)
			require.Equal(t, []string{"a3", "a5"}, ids(left))
			dead, err := ob.DeadLetters("j/a", 10)
			require.NoError(t, err)
			require.Equal(t, []string{"a2"}, ids(dead))
			heads, err := ob.OutboxHeads()
			require.NoError(t, err)
			require.Equal(t, map[string]uint64{"j/a": items[2].Seq, "j/b": 1}, heads)

			require.NoError(t, ob.DeleteOutbox("j/a", left))
			heads, err = ob.OutboxHeads()
			require.NoError(t, err)
			require.Equal(t, uint64(math.MaxUint64), heads["j/a"])
			require.Equal(t, OutboxStats{Dead: 1}, ob.Outbox("j/a"))
			require.NoError(t, ob.CompactOutbox("j/a"))
		})
	}
}

// TestMemOutboxNumbersAfterEarlierProcesses: a partition that has appended
// nothing starts its row numbers from the clock, so ids never repeat an
// earlier process's; after appends, from its mark.
func TestMemOutboxNumbersAfterEarlierProcesses(t *testing.T) {
	m := NewMemOutbox()
	w, err := m.OutputWritten(3)
	require.NoError(t, err)
	require.Greater(t, w, uint64(1)<<60)
	require.False(t, m.Durable())
	require.NoError(t, m.AppendOutputs(3, w+2, rows("j/a", "x", "y")))
	w2, err := m.OutputWritten(3)
	require.NoError(t, err)
	require.Equal(t, w+2, w2)
}
