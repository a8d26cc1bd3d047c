package state

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReplayJournalSlots(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "state"), Config{Partitions: 4})
	require.NoError(t, err)
	defer s.Close()
	j, err := s.OpenReplayJournal()
	require.NoError(t, err)
	_, ok, err := j.Mark(3)
	require.NoError(t, err)
	require.False(t, ok, "never written")
	m := ReplayMark{From: 10, Reached: 74, StartReached: 10, Applying: 75, Deaths: 2}
	require.NoError(t, j.SetMark(1, m))
	require.NoError(t, j.SetMark(2, ReplayMark{From: 1}))
	got, ok, err := j.Mark(1)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, m, got)
	require.NoError(t, j.ClearMark(2))
	_, ok, err = j.Mark(2)
	require.NoError(t, err)
	require.False(t, ok, "cleared")
	require.Error(t, j.SetMark(4, m), "partition out of range")
	_, _, err = j.Mark(-1)
	require.Error(t, err)
	require.NoError(t, j.Close())

	// A torn slot (one byte changed) reads as no mark, never as a wrong one.
	path := filepath.Join(dir, "state", ReplayJournalFile)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[replaySlotBytes+9] ^= 0xff
	require.NoError(t, os.WriteFile(path, b, 0o600))
	j, err = s.OpenReplayJournal()
	require.NoError(t, err)
	defer j.Close()
	_, ok, err = j.Mark(1)
	require.NoError(t, err)
	require.False(t, ok)
}
