package state

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// compactionScheduler decides when Pebble may start a compaction, as
// Pebble's default scheduler does: up to the number the DB allows
// without permission. It differs in one way that matters on an idle
// edge box: Pebble's default samples the DB every 100 ms for as long as
// the DB is open, ten wake-ups a second that cost an idle gateway about
// 2 ms of CPU a second (issue 18; benchmarks/RESULTS.md, "Idle CPU").
// This one looks only when something happened (a compaction asked, one
// finished, a flush changed what is allowed) and, while a compaction
// waits for its turn, every 100 ms; with nothing waiting it sleeps.
type compactionScheduler struct {
	db pebble.DBForCompaction

	mu      sync.Mutex
	running int  // compactions granted and not done
	waiting bool // a compaction was refused and may still wait for a grant
	closed  bool

	poke  chan struct{} // something happened: look now
	stop  chan struct{}
	done  chan struct{}
	looks atomic.Uint64 // times the granting goroutine woke (tests: an idle one sleeps)
}

// compactionRetry is how often a waiting compaction is offered a turn
// again (Pebble's default samples at this rate all the time).
const compactionRetry = 100 * time.Millisecond

var _ pebble.CompactionScheduler = (*compactionScheduler)(nil)

func newCompactionScheduler() *compactionScheduler {
	return &compactionScheduler{poke: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// Register starts the granting goroutine; Pebble calls it once, on open.
func (s *compactionScheduler) Register(_ int, db pebble.DBForCompaction) {
	s.db = db
	go s.run()
}

// Unregister stops granting; once it returns no grant is in progress.
func (s *compactionScheduler) Unregister() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
}

// TrySchedule is asked by the DB (holding its own mutex): grant at once
// when under the limit, or remember that a compaction waits.
func (s *compactionScheduler) TrySchedule() (bool, pebble.CompactionGrantHandle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, nil
	}
	if s.db.GetAllowedWithoutPermission() > s.running {
		s.running++
		return true, s
	}
	s.waiting = true
	s.wake()
	return false, nil
}

// UpdateGetAllowedWithoutPermission: a flush may allow more compactions.
func (s *compactionScheduler) UpdateGetAllowedWithoutPermission() { s.wake() }

// The grant handle.
func (s *compactionScheduler) Started()                                          {}
func (s *compactionScheduler) MeasureCPU(pebble.CompactionGoroutineKind)         {}
func (s *compactionScheduler) CumulativeStats(pebble.CompactionGrantHandleStats) {}

// Done: a granted compaction ended, so another may start.
func (s *compactionScheduler) Done() {
	s.mu.Lock()
	s.running--
	s.mu.Unlock()
	s.wake()
}

func (s *compactionScheduler) wake() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// run grants from one goroutine, so grants never overlap, and never
// while the DB holds its mutex (it calls TrySchedule and Done with it).
func (s *compactionScheduler) run() {
	defer close(s.done)
	var retry *time.Ticker
	var retries <-chan time.Time
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		select {
		case <-s.stop:
			return
		case <-s.poke:
		case <-retries:
		}
		s.looks.Add(1)
		waiting := s.grant()
		switch {
		case waiting && retry == nil:
			retry = time.NewTicker(compactionRetry)
			retries = retry.C
		case !waiting && retry != nil:
			retry.Stop()
			retry, retries = nil, nil
		}
	}
}

// grant offers the DB as many turns as it is allowed; it reports whether
// a compaction may still be waiting.
func (s *compactionScheduler) grant() bool {
	s.mu.Lock()
	if s.closed || !s.waiting {
		s.mu.Unlock()
		return false
	}
	free := s.db.GetAllowedWithoutPermission() - s.running
	s.mu.Unlock()
	for ; free > 0; free-- {
		// Asked only when a turn can be given: the DB picks a compaction
		// to answer it, work wasted if it then cannot run.
		if waiting, _ := s.db.GetWaitingCompaction(); !waiting {
			s.mu.Lock()
			s.waiting = false
			s.mu.Unlock()
			return false
		}
		// Counted before the grant: the compaction may be done before
		// Schedule returns.
		s.mu.Lock()
		s.running++
		s.mu.Unlock()
		if !s.db.Schedule(s) {
			s.mu.Lock()
			s.running--
			s.mu.Unlock()
			break // declined: offered again on the next retry
		}
	}
	return true
}
