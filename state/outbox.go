package state

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// The outbox keeps output rows until their sink has them. Keys:
//
//	'o' output 0x00 seq:uint64 -> OutboxEntry (waiting rows, in order)
//	'x' output 0x00 seq:uint64 -> OutboxEntry (rows a sink refused for good)
//	'w' partition:uint16       -> uint64      (last output seq of the partition in the outbox)
//
// Invariants:
//
//	O1: appends are serialized and committed in key order, so a reader
//	    that has seen key k never later finds a new key below k.
//	O2: an append writes its rows and the partition's 'w' mark in one
//	    batch: after a crash, 'w' says exactly which rows of the partition
//	    reached the outbox, and a replay skips those (one copy per id).

// Outbox is where output rows wait for their sink: the store's (Pebble,
// durable) or a MemOutbox (in memory). Both keep O1 and O2 and count
// their rows alike, so a drainer treats them alike. Safe for concurrent
// use; one drainer per output reads and removes its rows.
type Outbox interface {
	// Durable reports whether rows survive the process (a sink need not
	// sync what comes from an outbox that does not).
	Durable() bool
	// AppendOutputs adds a partition's rows and records lastSeq as its
	// last output in the outbox (O2).
	AppendOutputs(p int, lastSeq uint64, rows []OutRow) error
	// OutputWritten is the last output seq of partition p in the outbox.
	OutputWritten(p int) (uint64, error)
	// ReadOutbox returns up to n rows of an output after seq after, oldest
	// first; with newest, the n newest rows above after, oldest first.
	ReadOutbox(output string, after uint64, n int, newest bool) ([]OutboxItem, error)
	// ForgetOutbox counts rows as gone; DeleteOutboxRange deletes them later.
	ForgetOutbox(output string, items []OutboxItem)
	DeleteOutboxRange(output string, from, to uint64) error
	// DeleteOutbox removes delivered, expired or dropped rows at once.
	DeleteOutbox(output string, items []OutboxItem) error
	// DeadLetterOutbox moves rows a sink refused for good to the output's
	// dead letters; DeadLetters lists up to n of them.
	DeadLetterOutbox(output string, items []OutboxItem) error
	DeadLetters(output string, n int) ([]OutboxItem, error)
	// Outbox returns an output's statistics.
	Outbox(output string) OutboxStats
	// OutboxHighWater is, per output, the seq of the last row appended;
	// OutboxHeads, the seq of the first row still waiting (MaxUint64: none).
	OutboxHighWater() map[string]uint64
	OutboxHeads() (map[string]uint64, error)
	// CompactOutbox gives the space of removed rows back.
	CompactOutbox(output string) error
}

// OutRow is one row for the outbox.
type OutRow struct {
	Output string // "job/output"
	Entry  *pb.OutboxEntry
}

// OutboxItem is a stored row.
type OutboxItem struct {
	Seq   uint64
	Size  int
	Entry *pb.OutboxEntry
}

// OutboxStats describes one output's outbox.
type OutboxStats struct {
	Entries int64
	Bytes   int64
	Dead    int64 // rows in dead letter
}

type outputStats struct {
	OutboxStats
	next uint64 // next seq
}

func outboxKey(kind byte, output string, seq uint64) []byte {
	k := make([]byte, 0, len(output)+10)
	k = append(k, kind)
	k = append(k, output...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

func outboxBounds(kind byte, output string) (lo, hi []byte) {
	lo = append(append([]byte{kind}, output...), 0)
	hi = append(append([]byte{kind}, output...), 1)
	return lo, hi
}

func writtenKey(p int) []byte {
	k := []byte{'w', 0, 0}
	binary.BigEndian.PutUint16(k[1:], uint16(p))
	return k
}

// splitOutboxKey returns the output name and seq of an 'o' or 'x' key.
func splitOutboxKey(k []byte) (string, uint64, bool) {
	if len(k) < 10 || k[len(k)-9] != 0 {
		return "", 0, false
	}
	return string(k[1 : len(k)-9]), binary.BigEndian.Uint64(k[len(k)-8:]), true
}

func (s *Store) loadOutboxStats() error {
	for _, kind := range []byte{'o', 'x'} {
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{kind}, UpperBound: []byte{kind + 1}})
		if err != nil {
			return fmt.Errorf("state: outbox: %w", err)
		}
		for it.First(); it.Valid(); it.Next() {
			name, seq, ok := splitOutboxKey(it.Key())
			if !ok {
				it.Close()
				return fmt.Errorf("%w: outbox key %q", ErrCorrupt, it.Key())
			}
			st := s.output(name)
			if kind == 'o' {
				st.Entries++
				st.Bytes += int64(len(it.Value()))
				st.next = max(st.next, seq+1)
			} else {
				st.Dead++
			}
		}
		err = it.Error()
		it.Close()
		if err != nil {
			return fmt.Errorf("state: outbox: %w", err)
		}
	}
	return nil
}

// output returns the stats of an output, creating them (outMu held or
// during Open).
func (s *Store) output(name string) *outputStats { return outputOf(s.outputs, name) }

// outputOf returns the stats of an output in outputs, creating them.
func outputOf(outputs map[string]*outputStats, name string) *outputStats {
	st := outputs[name]
	if st == nil {
		st = &outputStats{next: 1}
		outputs[name] = st
	}
	return st
}

// statsOf returns the stats of an output in outputs (none: zero).
func statsOf(outputs map[string]*outputStats, name string) OutboxStats {
	if st := outputs[name]; st != nil {
		return st.OutboxStats
	}
	return OutboxStats{}
}

// highWater is OutboxHighWater of outputs.
func highWater(outputs map[string]*outputStats) map[string]uint64 {
	hw := make(map[string]uint64, len(outputs))
	for name, st := range outputs {
		hw[name] = st.next - 1
	}
	return hw
}

// Durable implements Outbox.
func (s *Store) Durable() bool { return true }

// AppendOutputs adds a partition's rows to their outboxes and records
// lastSeq as the partition's last output in the outbox, in one batch (O1,
// O2). The batch is not synced: rows lost in a crash are produced again by
// the replay of the (synced) ingest log.
func (s *Store) AppendOutputs(p int, lastSeq uint64, rows []OutRow) error {
	if err := s.partition(p); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	s.outMu.Lock()
	defer s.outMu.Unlock()
	type delta struct{ n, bytes int64 }
	deltas := map[*outputStats]delta{}
	next := map[*outputStats]uint64{}
	var buf []byte
	for _, r := range rows {
		st := s.output(r.Output)
		seq, ok := next[st]
		if !ok {
			seq = st.next
		}
		next[st] = seq + 1
		var err error
		buf, err = proto.MarshalOptions{}.MarshalAppend(buf[:0], r.Entry)
		if err != nil {
			return fmt.Errorf("state: encode outbox entry: %w", err)
		}
		if err := b.Set(outboxKey('o', r.Output, seq), buf, nil); err != nil {
			return err
		}
		d := deltas[st]
		d.n++
		d.bytes += int64(len(buf))
		deltas[st] = d
	}
	if err := b.Set(writtenKey(p), binary.BigEndian.AppendUint64(nil, lastSeq), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("state: partition %d: commit outbox: %w", p, err)
	}
	for st, n := range next {
		st.next = n
	}
	for st, d := range deltas {
		st.Entries += d.n
		st.Bytes += d.bytes
	}
	return nil
}

// OutputWritten is the last output seq of partition p in the outbox (O2).
func (s *Store) OutputWritten(p int) (uint64, error) {
	v, closer, err := s.db.Get(writtenKey(p))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("state: partition %d: %w", p, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: partition %d output mark", ErrCorrupt, p)
	}
	return binary.BigEndian.Uint64(v), nil
}

// ReadOutbox returns up to n rows of an output after seq after, oldest
// first; with newest, the n newest rows above after, oldest first.
func (s *Store) ReadOutbox(output string, after uint64, n int, newest bool) ([]OutboxItem, error) {
	lo, hi := outboxBounds('o', output)
	if after > 0 {
		lo = outboxKey('o', output, after+1)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, fmt.Errorf("state: outbox %s: %w", output, err)
	}
	defer it.Close()
	var items []OutboxItem
	valid, step := it.First, it.Next
	if newest {
		valid, step = it.Last, it.Prev
	}
	for ok := valid(); ok && len(items) < n; ok = step() {
		_, seq, good := splitOutboxKey(it.Key())
		e := &pb.OutboxEntry{}
		if !good || proto.Unmarshal(it.Value(), e) != nil {
			return nil, fmt.Errorf("%w: outbox %s entry %x", ErrCorrupt, output, it.Key())
		}
		items = append(items, OutboxItem{Seq: seq, Size: len(it.Value()), Entry: e})
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("state: outbox %s: %w", output, err)
	}
	if newest {
		sort.Slice(items, func(i, j int) bool { return items[i].Seq < items[j].Seq })
	}
	return items, nil
}

// DeleteOutbox removes delivered, expired or dropped rows.
func (s *Store) DeleteOutbox(output string, items []OutboxItem) error {
	return s.removeOutbox(output, items, false)
}

// DeadLetterOutbox moves rows a sink refused for good out of the queue,
// keeping them under the output's dead letters.
func (s *Store) DeadLetterOutbox(output string, items []OutboxItem) error {
	return s.removeOutbox(output, items, true)
}

func (s *Store) removeOutbox(output string, items []OutboxItem, dead bool) error {
	if len(items) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	var bytes int64
	// Point deletes, not a range: a range tombstone in the memtable makes
	// every later read fragment the memtable's tombstones again (measured:
	// alert p99 doubled).
	for _, it := range items {
		if err := b.Delete(outboxKey('o', output, it.Seq), nil); err != nil {
			return err
		}
		if dead {
			data, err := proto.Marshal(it.Entry)
			if err != nil {
				return err
			}
			if err := b.Set(outboxKey('x', output, it.Seq), data, nil); err != nil {
				return err
			}
		}
		bytes += int64(it.Size)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("state: outbox %s: %w", output, err)
	}
	s.outMu.Lock()
	st := s.output(output)
	st.Entries -= int64(len(items))
	st.Bytes -= bytes
	if dead {
		st.Dead += int64(len(items))
	}
	s.outMu.Unlock()
	return nil
}

// ForgetOutbox counts rows as gone from the outbox (its statistics)
// without deleting them yet: a drainer deletes what it delivered from the
// head in ranges, later (DeleteOutboxRange), so that one range tombstone
// stands for thousands of rows. Rows a crash leaves undeleted are sent
// again after the restart (at least once).
func (s *Store) ForgetOutbox(output string, items []OutboxItem) {
	var bytes int64
	for _, it := range items {
		bytes += int64(it.Size)
	}
	s.outMu.Lock()
	st := s.output(output)
	st.Entries -= int64(len(items))
	st.Bytes -= bytes
	s.outMu.Unlock()
}

// DeleteOutboxRange deletes an output's rows with seq in [from, to], all
// of them already forgotten or removed.
func (s *Store) DeleteOutboxRange(output string, from, to uint64) error {
	if to < from {
		return nil
	}
	if err := s.db.DeleteRange(outboxKey('o', output, from), outboxKey('o', output, to+1), pebble.NoSync); err != nil {
		return fmt.Errorf("state: outbox %s: %w", output, err)
	}
	return nil
}

// DeadLetters returns up to n rows of an output's dead letters.
func (s *Store) DeadLetters(output string, n int) ([]OutboxItem, error) {
	lo, hi := outboxBounds('x', output)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var items []OutboxItem
	for ok := it.First(); ok && len(items) < n; ok = it.Next() {
		_, seq, _ := splitOutboxKey(it.Key())
		e := &pb.OutboxEntry{}
		if err := proto.Unmarshal(it.Value(), e); err != nil {
			return nil, fmt.Errorf("%w: dead letter %x", ErrCorrupt, it.Key())
		}
		items = append(items, OutboxItem{Seq: seq, Size: len(it.Value()), Entry: e})
	}
	return items, it.Error()
}

// Outbox returns an output's outbox statistics.
func (s *Store) Outbox(output string) OutboxStats {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	return statsOf(s.outputs, output)
}

// CompactOutbox compacts an output's key range, and the ingest log's,
// so the disk space of delivered rows and truncated log entries is given
// back now rather than at Pebble's leisure.
func (s *Store) CompactOutbox(output string) error {
	lo, hi := outboxBounds('o', output)
	if err := s.db.Compact(context.Background(), lo, hi, true); err != nil {
		return fmt.Errorf("state: compact outbox %s: %w", output, err)
	}
	if err := s.db.Compact(context.Background(), []byte{'l'}, []byte{'l' + 1}, true); err != nil {
		return fmt.Errorf("state: compact log: %w", err)
	}
	return nil
}

// DiskUsage is the bytes the store's files take on disk.
func (s *Store) DiskUsage() uint64 { return s.db.Metrics().DiskSpaceUsage() }

// Flush writes the memtable to disk and syncs (used before compaction
// measurements and on clean shutdown).
func (s *Store) Flush() error { return s.db.Flush() }

// Metrics describes the store's files and compactions (Pebble's report).
func (s *Store) Metrics() string { return s.db.Metrics().String() }
