package state

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/stretchr/testify/require"
)

// TestCompactionsRunUnderOurScheduler: a log written and truncated
// through many small memtables makes L0 files, and compactions take them
// down again, as under Pebble's own scheduler.
func TestCompactionsRunUnderOurScheduler(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), Config{Partitions: 4, MemTableSize: 256 << 10, NoSync: true})
	require.NoError(t, err)
	// In a goroutine: with no compaction granted, writes stall for good.
	wrote := make(chan error, 1)
	go func() {
		for round := range 40 {
			for p := range 4 {
				batch := make([]*pb.LogEntry, 200)
				for i := range batch {
					batch[i] = entry(round*200 + i)
					batch[i].Payload = make([]byte, 256)
				}
				last, err := s.Append(ctx, p, batch)
				if err == nil {
					err = s.SaveCheckpointTruncate(p, &pb.Checkpoint{LogPosition: last}, last-100)
				}
				if err != nil {
					wrote <- err
					return
				}
			}
			if err := s.db.Flush(); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	select {
	case err := <-wrote:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		// Not closed: Close would wait for the stalled writes.
		t.Fatalf("writes stalled for 30 s: %s", s.db.Metrics())
	}
	defer s.Close()
	require.Eventually(t, func() bool {
		m := s.db.Metrics()
		return m.Compact.Count > 0 && m.Levels[0].TablesCount < 4
	}, 20*time.Second, 20*time.Millisecond, "L0 never compacted: %s", s.db.Metrics())
}

// fakeDB stands for Pebble's side of the scheduler.
type fakeDB struct {
	mu        sync.Mutex
	allowed   int
	waiting   int // compactions that want a turn
	scheduled []pebble.CompactionGrantHandle
}

func (f *fakeDB) GetAllowedWithoutPermission() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.allowed
}

func (f *fakeDB) GetWaitingCompaction() (bool, pebble.WaitingCompaction) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waiting > 0, pebble.WaitingCompaction{}
}

func (f *fakeDB) Schedule(h pebble.CompactionGrantHandle) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waiting--
	f.scheduled = append(f.scheduled, h)
	return true
}

func (f *fakeDB) granted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.scheduled)
}

// TestCompactionSchedulerGrantsWhatWaits: a compaction refused at the
// limit gets its turn when one finishes, and when the limit rises; with
// nothing waiting the scheduler does not wake.
func TestCompactionSchedulerGrantsWhatWaits(t *testing.T) {
	db := &fakeDB{allowed: 1}
	s := newCompactionScheduler()
	s.Register(1, db)
	defer s.Unregister()

	ok, h := s.TrySchedule()
	require.True(t, ok)
	db.mu.Lock()
	db.waiting = 2
	db.mu.Unlock()
	ok, _ = s.TrySchedule()
	require.False(t, ok, "at the limit")
	time.Sleep(3 * compactionRetry)
	require.Zero(t, db.granted(), "granted beyond the limit")

	h.Done()
	require.Eventually(t, func() bool { return db.granted() == 1 }, 5*time.Second, time.Millisecond, "a finished compaction makes room")

	db.mu.Lock()
	db.allowed = 2
	db.mu.Unlock()
	s.UpdateGetAllowedWithoutPermission()
	require.Eventually(t, func() bool { return db.granted() == 2 }, 5*time.Second, time.Millisecond, "a higher limit makes room")

	// Nothing waits now: the next look clears the flag and stops the
	// retries.
	db.scheduled[0].Done()
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.waiting
	}, 5*time.Second, time.Millisecond)
	s.mu.Lock()
	require.Equal(t, 1, s.running)
	s.mu.Unlock()
	looks := s.looks.Load()
	time.Sleep(5 * compactionRetry)
	require.Equal(t, looks, s.looks.Load(), "the scheduler still wakes with nothing waiting")
}
