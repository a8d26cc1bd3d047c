package state

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Sentinel errors.
var (
	ErrCorrupt = errors.New("state: damaged data")
	ErrClosed  = errors.New("state: store is closed")
	// ErrStaleCheckpoint: a checkpoint older (by log position) than the
	// one stored would move the partition's state back; it is refused.
	ErrStaleCheckpoint = errors.New("state: checkpoint older than the stored one")
)

// FormatVersion is the Pebble format the store is pinned to.
const FormatVersion = pebble.FormatTableFormatV6

// Config configures a Store. Zero fields take the defaults in comments.
type Config struct {
	// Partitions is the number of partitions (default 64, at most 65536).
	Partitions int
	// NoSync makes Append return before the log reaches the disk. UNSAFE:
	// a power loss or kill -9 loses recently acknowledged events. For
	// benchmarks and throwaway runs only. Default false (fsync).
	NoSync bool
	// Logger receives Pebble's messages (its routine ones at debug level).
	Logger *slog.Logger
	// MemTableSize is Pebble's memtable size (default 16 MiB; two may be
	// in memory). Log entries and outbox rows that die (checkpoint,
	// delivery) while still in the memtable never reach a table file, but
	// a large memtable's flush stalls the log's fsync behind it: 64 MiB
	// gave alert p99 of 130-520 ms, 16 MiB 18 ms (benchmarks/RESULTS.md).
	MemTableSize uint64
}

// pebbleLogger sends Pebble's log lines to slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) { p.l.Debug(fmt.Sprintf(format, args...)) }

func (p pebbleLogger) Errorf(format string, args ...any) { p.l.Error(fmt.Sprintf(format, args...)) }

func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
	pebble.DefaultLogger.Fatalf(format, args...)
}

// Store is one gateway's Pebble store. Safe for concurrent use across
// partitions (S4).
type Store struct {
	db    *pebble.DB
	dir   string
	cfg   Config
	write *pebble.WriteOptions
	mu    sync.Mutex // guards next and cpPos
	next  []uint64   // next sequence number per partition (S2)
	// cpPos is the log position of each partition's stored checkpoint,
	// read from disk once (cpKnown), so that refusing one that moves back
	// costs no read of the previous checkpoint per write.
	cpPos   []uint64
	cpKnown []bool

	outMu   sync.Mutex // serializes outbox appends (O1) and guards outputs
	outputs map[string]*outputStats
}

// Open opens (or creates) the store in dir.
func Open(dir string, cfg Config) (*Store, error) {
	if cfg.Partitions <= 0 {
		cfg.Partitions = 64
	}
	if cfg.Partitions > 1<<16 {
		return nil, fmt.Errorf("state: %d partitions: at most 65536", cfg.Partitions)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	plog := logger.With("component", "pebble")
	if cfg.MemTableSize == 0 {
		cfg.MemTableSize = 16 << 20
	}
	opts := &pebble.Options{FormatMajorVersion: FormatVersion, Logger: pebbleLogger{plog},
		MemTableSize: cfg.MemTableSize, MemTableStopWritesThreshold: 4,
		EventListener: &pebble.EventListener{
			// Pebble's default ends the process here; the read that found it
			// returns an error instead, which names the damage (ErrCorrupt).
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				plog.Error("damaged store file", "path", info.Path, "error", info.Details)
			},
			// Tell a slow disk from Pebble holding writes back (a long
			// ingest log commit delays every PUBACK; issue 11 saw one
			// take 33 s without a word).
			DiskSlow: func(info pebble.DiskSlowInfo) {
				plog.Warn("disk is slow: one write or sync has not finished", "path", info.Path, "op", info.OpType.String(),
					"bytes", info.WriteSize, "waiting", info.Duration.Round(time.Millisecond))
			},
			WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
				plog.Warn("store holds writes back until compactions catch up", "reason", info.Reason)
			},
			WriteStallEnd: func() { plog.Info("store takes writes again") },
		}}
	opts.Experimental.CompactionScheduler = newCompactionScheduler()
	db, err := pebble.Open(dir, opts)
	if err != nil {
		if pebble.IsCorruptionError(err) {
			return nil, fmt.Errorf("%w: open %s: %w", ErrCorrupt, dir, err)
		}
		return nil, fmt.Errorf("state: open %s: %w", dir, err)
	}
	s := &Store{db: db, dir: dir, cfg: cfg, write: pebble.Sync, next: make([]uint64, cfg.Partitions),
		cpPos: make([]uint64, cfg.Partitions), cpKnown: make([]bool, cfg.Partitions), outputs: map[string]*outputStats{}}
	if cfg.NoSync {
		s.write = pebble.NoSync
	}
	for p := range s.next {
		last, err := s.lastSeq(p)
		if err != nil {
			db.Close()
			return nil, err
		}
		s.next[p] = last + 1
	}
	if err := s.loadOutboxStats(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func logKey(p int, seq uint64) []byte {
	k := make([]byte, 11)
	k[0] = 'l'
	binary.BigEndian.PutUint16(k[1:], uint16(p))
	binary.BigEndian.PutUint64(k[3:], seq)
	return k
}

// logUpper is the exclusive upper bound of a partition's log keys.
func logUpper(p int) []byte {
	if p+1 >= 1<<16 {
		return []byte{'l' + 1}
	}
	k := make([]byte, 3)
	k[0] = 'l'
	binary.BigEndian.PutUint16(k[1:], uint16(p+1))
	return k
}

func checkpointKey(p int) []byte {
	k := make([]byte, 3)
	k[0] = 'c'
	binary.BigEndian.PutUint16(k[1:], uint16(p))
	return k
}

// lastSeq finds the highest sequence number ever used by a partition: the
// last log entry, or the checkpoint's position when the log is truncated.
func (s *Store) lastSeq(p int) (uint64, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: logKey(p, 0), UpperBound: logUpper(p)})
	if err != nil {
		return 0, fmt.Errorf("state: partition %d: %w", p, err)
	}
	defer it.Close()
	var last uint64
	if it.Last() {
		last = binary.BigEndian.Uint64(it.Key()[3:])
	}
	if err := it.Error(); err != nil {
		return 0, readErr(err, fmt.Sprintf("partition %d: read log", p))
	}
	cp, err := s.LoadCheckpoint(p)
	if errors.Is(err, ErrCorrupt) {
		return last, nil // reported when the partition recovers
	}
	if err != nil {
		return 0, err
	}
	if cp != nil && cp.LogPosition > last {
		last = cp.LogPosition
	}
	return last, nil
}

func (s *Store) partition(p int) error {
	if p < 0 || p >= len(s.next) {
		return fmt.Errorf("state: partition %d out of range [0, %d)", p, len(s.next))
	}
	return nil
}

// Append writes entries to one partition's log in one batch and returns
// the sequence number of the last one (S1: durable on return with Sync).
func (s *Store) Append(ctx context.Context, p int, entries []*pb.LogEntry) (uint64, error) {
	g := []LogGroup{{Partition: p, Entries: entries}}
	if err := s.AppendGroup(ctx, g); err != nil {
		return 0, err
	}
	return g[0].First + uint64(len(entries)) - 1, nil
}

// LogGroup is one partition's share of a group commit.
type LogGroup struct {
	Partition int
	Entries   []*pb.LogEntry
	// First is set by AppendGroup: the sequence number of Entries[0].
	First uint64
}

// AppendGroup writes the entries of several partitions in one batch with
// one sync (group commit) and sets each group's First. With Sync (the
// default) every entry is on disk when it returns (S1). The caller must be
// the only writer of these partitions' logs while it runs (S4).
func (s *Store) AppendGroup(ctx context.Context, groups []LogGroup) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	var buf []byte
	s.mu.Lock()
	for i := range groups {
		g := &groups[i]
		if err := s.partition(g.Partition); err != nil {
			s.mu.Unlock()
			return err
		}
		g.First = s.next[g.Partition]
		s.next[g.Partition] += uint64(len(g.Entries))
	}
	s.mu.Unlock()
	for _, g := range groups {
		for i, e := range g.Entries {
			var err error
			buf, err = proto.MarshalOptions{}.MarshalAppend(buf[:0], e)
			if err != nil {
				return fmt.Errorf("state: encode log entry: %w", err)
			}
			if err := b.Set(logKey(g.Partition, g.First+uint64(i)), buf, nil); err != nil {
				return fmt.Errorf("state: append: %w", err)
			}
		}
	}
	if err := b.Commit(s.write); err != nil {
		return fmt.Errorf("state: commit log: %w", err)
	}
	return nil
}

// ReadLog calls fn for every entry of a partition after position, in order.
func (s *Store) ReadLog(p int, after uint64, fn func(seq uint64, e *pb.LogEntry) error) error {
	if err := s.partition(p); err != nil {
		return err
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: logKey(p, after+1), UpperBound: logUpper(p)})
	if err != nil {
		return fmt.Errorf("state: partition %d: %w", p, err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		seq := binary.BigEndian.Uint64(it.Key()[3:])
		e := &pb.LogEntry{}
		if err := proto.Unmarshal(it.Value(), e); err != nil {
			return fmt.Errorf("%w: partition %d log entry %d: %w", ErrCorrupt, p, seq, err)
		}
		if err := fn(seq, e); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return readErr(err, fmt.Sprintf("partition %d: read log", p))
	}
	return nil
}

// SaveCheckpoint stores a partition's checkpoint and drops the log entries
// it covers, atomically (S3).
func (s *Store) SaveCheckpoint(p int, cp *pb.Checkpoint) error {
	return s.SaveCheckpointTruncate(p, cp, cp.LogPosition)
}

// SaveCheckpointTruncate stores a partition's checkpoint and drops the log
// entries up to and including through (at most cp.LogPosition), atomically
// (S3). A partition keeps entries its checkpoint covers while another
// partition still needs them (forwarded events not yet logged there).
//
// The batch is not synced: if a crash loses it, it loses the truncation
// with it, and recovery starts from the previous checkpoint, whose log is
// still there. The next synced write (an ingest log commit) makes it durable.
func (s *Store) SaveCheckpointTruncate(p int, cp *pb.Checkpoint, through uint64) error {
	if err := s.partition(p); err != nil {
		return err
	}
	if cp.TakenAt == 0 {
		cp.TakenAt = time.Now().UnixNano()
	}
	through = min(through, cp.LogPosition)
	// A checkpoint never goes back: one behind the stored one comes from a
	// gateway that does not hold the partition's state (issue 11 C: an
	// idle replica's empty state overwrote the replicated copy). A stored
	// checkpoint that cannot be read sets no bound.
	if old := s.checkpointPosition(p); old > cp.LogPosition {
		return fmt.Errorf("%w: partition %d: position %d, stored %d", ErrStaleCheckpoint, p, cp.LogPosition, old)
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(cp)
	if err != nil {
		return fmt.Errorf("state: encode checkpoint: %w", err)
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(checkpointKey(p), data, nil); err != nil {
		return err
	}
	if through > 0 {
		if err := b.DeleteRange(logKey(p, 0), logKey(p, through+1), nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("state: partition %d: commit checkpoint: %w", p, err)
	}
	s.setCheckpointPosition(p, cp.LogPosition)
	return nil
}

// checkpointPosition is the log position of p's stored checkpoint (0 when
// it has none or it cannot be read: a damaged one sets no bound).
func (s *Store) checkpointPosition(p int) uint64 {
	s.mu.Lock()
	pos, known := s.cpPos[p], s.cpKnown[p]
	s.mu.Unlock()
	if known {
		return pos
	}
	if cp, err := s.LoadCheckpoint(p); err == nil && cp != nil {
		pos = cp.LogPosition
	}
	s.setCheckpointPosition(p, pos)
	return pos
}

func (s *Store) setCheckpointPosition(p int, pos uint64) {
	s.mu.Lock()
	s.cpPos[p], s.cpKnown[p] = pos, true
	s.mu.Unlock()
}

// LoadCheckpoint returns a partition's checkpoint, or nil when it has none.
func (s *Store) LoadCheckpoint(p int) (*pb.Checkpoint, error) {
	v, closer, err := s.db.Get(checkpointKey(p))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, readErr(err, fmt.Sprintf("partition %d: read checkpoint", p))
	}
	defer closer.Close()
	cp := &pb.Checkpoint{}
	if err := proto.Unmarshal(v, cp); err != nil {
		return nil, fmt.Errorf("%w: partition %d checkpoint: %w", ErrCorrupt, p, err)
	}
	return cp, nil
}

// LogLength counts a partition's log entries (tests, metrics).
func (s *Store) LogLength(p int) (int, error) {
	n := 0
	err := s.ReadLog(p, 0, func(uint64, *pb.LogEntry) error { n++; return nil })
	return n, err
}

// Close flushes and closes the store.
func (s *Store) Close() error {
	if s.db == nil {
		return ErrClosed
	}
	// Flushed, so the next start need not replay the write-ahead log.
	_ = s.db.Flush()
	err := s.db.Close()
	s.db = nil
	return err
}

// readErr wraps a read error, marking Pebble's corruption errors
// (checksum mismatches, truncated files) as ErrCorrupt.
func readErr(err error, what string) error {
	if pebble.IsCorruptionError(err) {
		return fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
	}
	return fmt.Errorf("state: %s: %w", what, err)
}

// DropLog deletes a partition's whole ingest log (recovery from a damaged
// log: what it held is lost, and the caller says so).
func (s *Store) DropLog(p int) error {
	if err := s.partition(p); err != nil {
		return err
	}
	if err := s.db.DeleteRange(logKey(p, 0), logUpper(p), pebble.Sync); err != nil {
		return fmt.Errorf("state: partition %d: drop log: %w", p, err)
	}
	return nil
}
