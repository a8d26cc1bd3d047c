package state

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

func rows(output string, ids ...string) []OutRow {
	var out []OutRow
	for _, id := range ids {
		out = append(out, OutRow{Output: output, Entry: &pb.OutboxEntry{Id: id, Payload: []byte(`{"_id":"` + id + `"}`)}})
	}
	return out
}

func ids(items []OutboxItem) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Entry.Id)
	}
	return out
}

// TestOutboxKeepsOrderMarksAndStatsAcrossReopen: rows come back in the
// order they were appended, per output; each partition's mark says which
// of its rows are in (O2); deletes, dead letters and the statistics
// survive a reopen.
func TestOutboxKeepsOrderMarksAndStatsAcrossReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	s, err := Open(dir, Config{Partitions: 4})
	require.NoError(t, err)
	require.NoError(t, s.AppendOutputs(1, 3, rows("j/a", "a1", "a2", "a3")))
	require.NoError(t, s.AppendOutputs(2, 1, append(rows("j/a", "a4"), rows("j/b", "b1")...)))
	w1, err := s.OutputWritten(1)
	require.NoError(t, err)
	require.Equal(t, uint64(3), w1)
	items, err := s.ReadOutbox("j/a", 0, 10, false)
	require.NoError(t, err)
	require.Equal(t, []string{"a1", "a2", "a3", "a4"}, ids(items))
	newest, err := s.ReadOutbox("j/a", 0, 2, true)
	require.NoError(t, err)
	require.Equal(t, []string{"a3", "a4"}, ids(newest), "the newest rows, oldest first")
	require.NoError(t, s.DeleteOutbox("j/a", items[:2]))
	require.NoError(t, s.DeadLetterOutbox("j/a", items[2:3]))
	require.Equal(t, OutboxStats{Entries: 1, Bytes: int64(items[3].Size), Dead: 1}, s.Outbox("j/a"))
	require.NoError(t, s.Close())

	s, err = Open(dir, Config{Partitions: 4})
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, OutboxStats{Entries: 1, Bytes: int64(items[3].Size), Dead: 1}, s.Outbox("j/a"))
	require.Equal(t, int64(1), s.Outbox("j/b").Entries)
	left, err := s.ReadOutbox("j/a", items[2].Seq, 10, false)
	require.NoError(t, err)
	require.Equal(t, []string{"a4"}, ids(left))
	dead, err := s.DeadLetters("j/a", 10)
	require.NoError(t, err)
	require.Equal(t, []string{"a3"}, ids(dead))
	// New rows continue after the highest seq ever used.
	require.NoError(t, s.AppendOutputs(1, 4, rows("j/a", "a5")))
	all, err := s.ReadOutbox("j/a", 0, 10, false)
	require.NoError(t, err)
	require.Equal(t, []string{"a4", "a5"}, ids(all))
	require.Greater(t, all[1].Seq, all[0].Seq)
}

// TestJobCatalog: deployed jobs survive a reopen; removed ones do not.
func TestJobCatalog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	s, err := Open(dir, Config{Partitions: 1})
	require.NoError(t, err)
	require.NoError(t, s.SaveJob(&pb.Job{Name: "a", Query: "SELECT * INTO o FROM i"}))
	require.NoError(t, s.SaveJob(&pb.Job{Name: "b", Query: "SELECT * INTO o FROM i"}))
	require.NoError(t, s.DeleteJob("a"))
	require.NoError(t, s.Close())
	s, err = Open(dir, Config{Partitions: 1})
	require.NoError(t, err)
	defer s.Close()
	jobs, err := s.Jobs()
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	require.Equal(t, "b", jobs[0].Name)
}

// TestCheckpointTruncatesOnlyWhatItIsAllowedTo: a checkpoint may keep log
// entries it covers (another partition still needs them), and DropLog
// removes a damaged log whole.
func TestCheckpointTruncatesOnlyWhatItIsAllowedTo(t *testing.T) {
	s, err := Open(t.TempDir(), Config{Partitions: 2})
	require.NoError(t, err)
	defer s.Close()
	groups := []LogGroup{{Partition: 1, Entries: []*pb.LogEntry{{Input: "i"}, {Input: "i"}, {Input: "i"}, {Input: "i"}}}}
	require.NoError(t, s.AppendGroup(t.Context(), groups))
	require.Equal(t, uint64(1), groups[0].First)
	require.NoError(t, s.SaveCheckpointTruncate(1, &pb.Checkpoint{LogPosition: 4}, 2))
	n, err := s.LogLength(1)
	require.NoError(t, err)
	require.Equal(t, 2, n, "entries 3 and 4 are kept")
	require.NoError(t, s.DropLog(1))
	n, err = s.LogLength(1)
	require.NoError(t, err)
	require.Zero(t, n)
}
