package state

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// TestDeadLettersKeptNewestFirstAndBounded: dead letters are listed newest
// first page by page, payloads are cut, the oldest go past the limit, and
// all of it survives a reopen; a replay keeps nothing twice.
func TestDeadLettersKeptNewestFirstAndBounded(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Config{Partitions: 4})
	require.NoError(t, err)
	d, err := s.OpenDeadLetters(DeadLetterLimits{MaxEntries: 100})
	require.NoError(t, err)
	big := bytes.Repeat([]byte("x"), 5000)
	for i := 1; i <= 150; i++ {
		kept, err := d.Add(&pb.DeadLetter{Kind: "malformed", Reason: fmt.Sprintf("r%d", i), Payload: big, Partition: 1}, uint64(i), 0)
		require.NoError(t, err)
		require.True(t, kept)
	}
	st := d.Stats()
	require.LessOrEqual(t, st.Entries, 100)
	require.Equal(t, uint64(150-st.Entries), st.Evicted)

	page, err := d.List(0, 10)
	require.NoError(t, err)
	require.Len(t, page, 10)
	require.Equal(t, "r150", page[0].Reason)
	require.Len(t, page[0].Payload, MaxDeadLetterPayload)
	require.Equal(t, uint32(5000), page[0].PayloadBytes)
	next, err := d.List(page[9].ID, 10)
	require.NoError(t, err)
	require.Equal(t, "r140", next[0].Reason)

	require.NoError(t, s.Close())
	s, err = Open(dir, Config{Partitions: 4})
	require.NoError(t, err)
	defer s.Close()
	d, err = s.OpenDeadLetters(DeadLetterLimits{MaxEntries: 100})
	require.NoError(t, err)
	require.Equal(t, st.Entries, d.Stats().Entries)
	require.Equal(t, st.Bytes, d.Stats().Bytes)

	// A replay refuses entries 140..150 again: none is kept twice; a new
	// entry and a second dead letter of entry 150 are.
	for i := 140; i <= 150; i++ {
		kept, err := d.Add(&pb.DeadLetter{Kind: "malformed", Partition: 1}, uint64(i), 0)
		require.NoError(t, err)
		require.False(t, kept, "entry %d", i)
	}
	kept, err := d.Add(&pb.DeadLetter{Kind: "wrong_type", Partition: 1}, 150, 1)
	require.NoError(t, err)
	require.True(t, kept)
	kept, err = d.Add(&pb.DeadLetter{Kind: "malformed", Partition: 2}, 3, 0)
	require.NoError(t, err)
	require.True(t, kept, "another partition's positions are its own")
	kept, err = d.Add(&pb.DeadLetter{Kind: "oversized"}, 0, 0)
	require.NoError(t, err)
	require.True(t, kept, "without a log position, always kept")
	all, err := d.List(0, 1000)
	require.NoError(t, err)
	require.Equal(t, d.Stats().Entries, len(all))
	require.Equal(t, "oversized", all[0].Kind)
}
