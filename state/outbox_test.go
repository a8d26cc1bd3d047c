package state

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

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

// TestJobCatalogSurvivesReopen: the newest update of each job name, a
// removal included, is there after a reopen; CatalogJobs lists the
// deployed ones.
func TestJobCatalogSurvivesReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	s, err := Open(dir, Config{Partitions: 1})
	require.NoError(t, err)
	require.NoError(t, s.SaveJobUpdate(&pb.JobUpdate{Job: &pb.Job{Name: "a", Query: "SELECT * INTO o FROM i"}, Version: 1, Origin: "gw1"}))
	require.NoError(t, s.SaveJobUpdate(&pb.JobUpdate{Job: &pb.Job{Name: "b", Query: "SELECT * INTO o FROM i"}, Version: 2, Origin: "gw1"}))
	require.NoError(t, s.SaveJobUpdate(&pb.JobUpdate{Removed: "a", Version: 3, Origin: "gw2"}))
	require.NoError(t, s.Close())
	s, err = Open(dir, Config{Partitions: 1})
	require.NoError(t, err)
	defer s.Close()
	us, err := s.JobUpdates()
	require.NoError(t, err)
	require.Len(t, us, 2)
	require.Equal(t, "a", us[0].Removed)
	require.EqualValues(t, 3, us[0].Version)
	require.Equal(t, "b", us[1].Job.GetName())
	u, ok, err := s.JobUpdate("b")
	require.NoError(t, err)
	require.True(t, ok)
	require.EqualValues(t, 2, u.Version)
	_, ok, err = s.JobUpdate("c")
	require.NoError(t, err)
	require.False(t, ok)
	jobs, err := s.CatalogJobs()
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	require.Equal(t, "b", jobs[0].Name)
}

// TestJobCatalogMigratesTheOldCatalog: jobs kept where a gateway kept
// them before the single catalog move into it, unless the catalog has a
// word on the name already; the old records are gone after.
func TestJobCatalogMigratesTheOldCatalog(t *testing.T) {
	s, err := Open(t.TempDir(), Config{Partitions: 1})
	require.NoError(t, err)
	defer s.Close()
	for _, name := range []string{"a", "b"} {
		data, err := proto.Marshal(&pb.Job{Name: name, Query: "SELECT * INTO o FROM i"})
		require.NoError(t, err)
		require.NoError(t, s.db.Set(legacyJobKey(name), data, pebble.Sync))
	}
	require.NoError(t, s.SaveJobUpdate(&pb.JobUpdate{Removed: "a", Version: 4, Origin: "gw2"}))
	moved, err := s.MigrateJobCatalog("gw1")
	require.NoError(t, err)
	require.Equal(t, 1, moved)
	us, err := s.JobUpdates()
	require.NoError(t, err)
	require.Len(t, us, 2)
	require.Equal(t, "a", us[0].Removed, "the newer removal stands")
	require.Equal(t, "b", us[1].Job.GetName())
	require.EqualValues(t, 1, us[1].Version)
	require.Equal(t, "gw1", us[1].Origin)
	moved, err = s.MigrateJobCatalog("gw1")
	require.NoError(t, err)
	require.Zero(t, moved, "the old records are gone")
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

func TestGatewaysKnownAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Config{Partitions: 4})
	require.NoError(t, err)
	require.NoError(t, s.SaveGatewayAddr("gw1", "127.0.0.1:7001"))
	require.NoError(t, s.SaveGatewayAddr("gw2", "127.0.0.1:7002"))
	require.NoError(t, s.SaveGatewayAddr("gw3", ""))
	require.NoError(t, s.SaveGatewayAddr("gw3", "127.0.0.1:7003"), "an address learnt later replaces none")
	require.NoError(t, s.DeleteGateway("gw2"))
	require.NoError(t, s.Close())
	s, err = Open(dir, Config{Partitions: 4})
	require.NoError(t, err)
	defer s.Close()
	gws, err := s.Gateways()
	require.NoError(t, err)
	require.Equal(t, []string{"gw1", "gw3"}, gws)
	addrs, err := s.GatewayAddrs()
	require.NoError(t, err)
	require.Equal(t, map[string]string{"gw1": "127.0.0.1:7001", "gw3": "127.0.0.1:7003"}, addrs)
}

// TestParkedInputAcrossReopen: parked entries survive reopening, come back
// per partition in each origin's order, are stored once however often
// they are parked, and are gone once unparked.
func TestParkedInputAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Config{Partitions: 4})
	require.NoError(t, err)
	entry := func(origin string, oseq uint64) *pb.LogEntry {
		return &pb.LogEntry{Job: "j", Device: "d", Payload: []byte(fmt.Sprintf(`{"n":%d}`, oseq)), Origin: origin, OriginSeq: oseq}
	}
	var want []*pb.LogEntry
	for i := uint64(1); i <= 300; i++ {
		want = append(want, entry("gw1#b", i))
	}
	require.NoError(t, s.Park(3, want[:200]))
	require.NoError(t, s.Park(3, want[150:])) // overlapping: stored once
	require.NoError(t, s.Park(3, []*pb.LogEntry{entry("gw1#a", 7)}))
	require.NoError(t, s.Park(2, []*pb.LogEntry{entry("gw1#b", 1)}))
	require.Error(t, s.Park(3, []*pb.LogEntry{{Job: "j"}}), "an entry without origin")
	require.Error(t, s.Park(4, want[:1]), "a partition out of range")
	require.NoError(t, s.Close())

	s, err = Open(dir, Config{Partitions: 4})
	require.NoError(t, err)
	defer s.Close()
	got, err := s.Parked(3)
	require.NoError(t, err)
	require.Len(t, got, 301)
	require.Equal(t, "gw1#a", got[0].Origin)
	for i, e := range got[1:] {
		require.True(t, proto.Equal(want[i], e), "entry %d: %v", i, e)
	}
	require.NoError(t, s.Unpark(3, got[:101]))
	got, err = s.Parked(3)
	require.NoError(t, err)
	require.Len(t, got, 200)
	require.Equal(t, uint64(101), got[0].OriginSeq)
	other, err := s.Parked(2)
	require.NoError(t, err)
	require.Len(t, other, 1, "partitions are kept apart")
}
