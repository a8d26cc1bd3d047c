package state

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

func entry(i int) *pb.LogEntry {
	return &pb.LogEntry{Input: "t", Device: fmt.Sprintf("d%d", i%7), Payload: []byte(fmt.Sprintf(`{"i":%d}`, i)), Arrival: int64(i)}
}

func readAll(t *testing.T, s *Store, p int, after uint64) []uint64 {
	t.Helper()
	var seqs []uint64
	require.NoError(t, s.ReadLog(p, after, func(seq uint64, e *pb.LogEntry) error {
		require.Equal(t, fmt.Sprintf(`{"i":%d}`, e.Arrival), string(e.Payload))
		seqs = append(seqs, seq)
		return nil
	}))
	return seqs
}

func TestStoreLogCheckpointAndReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(dir, Config{Partitions: 4})
	require.NoError(t, err)
	last, err := s.Append(ctx, 1, []*pb.LogEntry{entry(1), entry(2), entry(3)})
	require.NoError(t, err)
	require.Equal(t, uint64(3), last)
	last, err = s.Append(ctx, 1, []*pb.LogEntry{entry(4)})
	require.NoError(t, err)
	require.Equal(t, uint64(4), last)
	_, err = s.Append(ctx, 2, []*pb.LogEntry{entry(1)})
	require.NoError(t, err)
	require.Equal(t, []uint64{1, 2, 3, 4}, readAll(t, s, 1, 0))
	require.Equal(t, []uint64{3, 4}, readAll(t, s, 1, 2))
	require.Equal(t, []uint64{1}, readAll(t, s, 2, 0), "partitions are separate")

	// A checkpoint drops the log it covers, atomically with itself.
	require.NoError(t, s.SaveCheckpoint(1, &pb.Checkpoint{LogPosition: 3, Jobs: map[string][]byte{"j": []byte("state")}}))
	require.Equal(t, []uint64{4}, readAll(t, s, 1, 0))
	require.NoError(t, s.Close())

	// Reopen: sequences continue (S2), even for a partition whose whole log
	// a checkpoint covered.
	s, err = Open(dir, Config{Partitions: 4})
	require.NoError(t, err)
	defer s.Close()
	cp, err := s.LoadCheckpoint(1)
	require.NoError(t, err)
	require.Equal(t, uint64(3), cp.LogPosition)
	require.Equal(t, "state", string(cp.Jobs["j"]))
	last, err = s.Append(ctx, 1, []*pb.LogEntry{entry(5)})
	require.NoError(t, err)
	require.Equal(t, uint64(5), last)
	require.NoError(t, s.SaveCheckpoint(2, &pb.Checkpoint{LogPosition: 1}))
	require.NoError(t, s.Close())
	s, err = Open(dir, Config{Partitions: 4})
	require.NoError(t, err)
	last, err = s.Append(ctx, 2, []*pb.LogEntry{entry(2)})
	require.NoError(t, err)
	require.Equal(t, uint64(2), last, "a sequence number covered by a checkpoint is never reused")
	none, err := s.LoadCheckpoint(3)
	require.NoError(t, err)
	require.Nil(t, none)
	_, err = s.Append(ctx, 9, nil)
	require.Error(t, err)
}

func TestStoreCorruptCheckpointIsAnError(t *testing.T) {
	s, err := Open(t.TempDir(), Config{Partitions: 2})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.db.Set(checkpointKey(0), []byte{0xff, 0xff, 0xff}, nil))
	_, err = s.LoadCheckpoint(0)
	require.ErrorIs(t, err, ErrCorrupt)
	require.Contains(t, err.Error(), "partition 0 checkpoint")
	require.NoError(t, s.db.Set(logKey(1, 1), []byte{0xff, 0xff, 0xff}, nil))
	err = s.ReadLog(1, 0, func(uint64, *pb.LogEntry) error { return nil })
	require.ErrorIs(t, err, ErrCorrupt)
}

// TestStoreSurvivesKill9 appends from a child process that reports every
// acknowledged (synced) batch, kills it with SIGKILL at a random moment and
// checks after reopening that every acknowledged entry is there, in order,
// with nothing after a gap.
func TestStoreSurvivesKill9(t *testing.T) {
	if os.Getenv("MILLSTREAM_STATE_CHILD") != "" {
		appendForever(os.Getenv("MILLSTREAM_STATE_CHILD"))
		return
	}
	dir := t.TempDir()
	acked := uint64(0)
	for round := 0; round < 5; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestStoreSurvivesKill9$")
		cmd.Env = append(os.Environ(), "MILLSTREAM_STATE_CHILD="+dir)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		sc := bufio.NewScanner(out)
		stopAt := 50 + round*37
		n := 0
		for sc.Scan() {
			if seq, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
				v, err := strconv.ParseUint(seq, 10, 64)
				require.NoError(t, err)
				acked = v
				if n++; n == stopAt {
					break
				}
			}
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()

		s, err := Open(dir, Config{Partitions: 2})
		require.NoError(t, err)
		seqs := readAll(t, s, 0, 0)
		require.NoError(t, s.Close())
		require.GreaterOrEqual(t, uint64(len(seqs)), acked, "round %d: acknowledged entries lost", round)
		for i, seq := range seqs {
			require.Equal(t, uint64(i+1), seq, "round %d: gap in the log", round)
		}
	}
}

// appendForever is the child of TestStoreSurvivesKill9.
func appendForever(dir string) {
	s, err := Open(dir, Config{Partitions: 2})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		batch := make([]*pb.LogEntry, 1+i%5)
		for k := range batch {
			batch[k] = entry(0)
		}
		last, err := s.Append(context.Background(), 0, batch)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Fprintf(w, "acked %d\n", last)
		w.Flush()
	}
}

// TestReturnToSafe: a partition given up goes back to what a replica
// holds: the safe checkpoint and the log after it, the output mark at
// the safe checkpoint's; with no safe checkpoint, no checkpoint and no
// mark. The log after stays either way.
func TestReturnToSafe(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), Config{Partitions: 2})
	require.NoError(t, err)
	defer s.Close()
	last, err := s.Append(ctx, 1, []*pb.LogEntry{entry(1), entry(2), entry(3), entry(4), entry(5)})
	require.NoError(t, err)
	require.NoError(t, s.SaveSafeCheckpoint(1, &pb.SafeCheckpoint{Checkpoint: &pb.Checkpoint{LogPosition: 2, OutputSeq: 7}, Through: 2}))
	// Served, the log is truncated only through the safe checkpoint.
	require.NoError(t, s.SaveCheckpointTruncate(1, &pb.Checkpoint{LogPosition: 4, OutputSeq: 12}, 2))
	require.NoError(t, s.AppendOutputs(1, 12, nil))

	require.NoError(t, s.ReturnToSafe(1))
	cp, err := s.LoadCheckpoint(1)
	require.NoError(t, err)
	require.Equal(t, uint64(2), cp.LogPosition)
	w, err := s.OutputWritten(1)
	require.NoError(t, err)
	require.Equal(t, uint64(7), w, "rows after the safe checkpoint are emitted again")
	require.Equal(t, []uint64{3, 4, 5}, readAll(t, s, 1, 0), "the log after the safe checkpoint stays")
	require.Equal(t, last, s.LastSeq(1))
	require.NoError(t, s.SaveCheckpoint(1, &pb.Checkpoint{LogPosition: 3}), "a checkpoint after the safe one is taken again")

	// No safe checkpoint: nothing but the log.
	_, err = s.Append(ctx, 0, []*pb.LogEntry{entry(1), entry(2)})
	require.NoError(t, err)
	require.NoError(t, s.SaveCheckpointTruncate(0, &pb.Checkpoint{LogPosition: 1, OutputSeq: 3}, 0))
	require.NoError(t, s.ReturnToSafe(0))
	cp, err = s.LoadCheckpoint(0)
	require.NoError(t, err)
	require.Nil(t, cp)
	w, err = s.OutputWritten(0)
	require.NoError(t, err)
	require.Zero(t, w)
	require.Equal(t, []uint64{1, 2}, readAll(t, s, 0, 0))
}

// TestAppendAtFollowsTheCopy: a replicated run must follow the copy's log
// (or its checkpoint); one after a gap is refused, and what the copy held
// after a run (an older server's uncommitted entries) goes.
func TestAppendAtFollowsTheCopy(t *testing.T) {
	s, err := Open(t.TempDir(), Config{Partitions: 2})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.AppendAt(1, 1, 0, []*pb.LogEntry{entry(1), entry(2), entry(3), entry(4), entry(5)}))
	require.Equal(t, uint64(5), s.LastSeq(1))

	err = s.AppendAt(1, 7, 0, []*pb.LogEntry{entry(7)})
	require.ErrorIs(t, err, ErrLogGap, "position 6 was never stored here")
	require.Equal(t, []uint64{1, 2, 3, 4, 5}, readAll(t, s, 1, 0), "a refused run changes nothing")

	// A new server's run from 3: entries 4 and 5 of the older one go.
	require.NoError(t, s.AppendAt(1, 3, 0, []*pb.LogEntry{entry(30)}))
	require.Equal(t, []uint64{1, 2, 3}, readAll(t, s, 1, 0))
	require.Equal(t, uint64(3), s.LastSeq(1))
	require.NoError(t, s.AppendAt(1, 4, 0, []*pb.LogEntry{entry(40), entry(50)}))
	require.Equal(t, []uint64{1, 2, 3, 4, 5}, readAll(t, s, 1, 0))

	// After a safe checkpoint past the log, a run from just after it follows.
	require.NoError(t, s.ApplySafeCheckpoint(0, &pb.SafeCheckpoint{Checkpoint: &pb.Checkpoint{LogPosition: 9}, Through: 9}))
	require.NoError(t, s.AppendAt(0, 10, 0, []*pb.LogEntry{entry(10)}))
	require.Equal(t, []uint64{10}, readAll(t, s, 0, 0))
	require.ErrorIs(t, s.AppendAt(0, 12, 0, []*pb.LogEntry{entry(12)}), ErrLogGap)
}
