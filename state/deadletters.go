package state

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Dead letters: what the gateway refused (a payload that is not JSON, a
// field of the wrong type, an oversized message), each kept with its
// reason under 'D' + an 8-byte id that grows with time, so the newest
// are listed first and the oldest removed first when the store is over
// its limits. 'd' + partition holds, per partition, the log position
// (and index within the entry) of the newest dead letter kept: a replay
// after a restart refuses the same entries again, and those are kept
// already.

// DeadLetterLimits bound the dead letters kept; past either, the oldest
// are removed (and counted in Evicted).
type DeadLetterLimits struct {
	MaxEntries int
	MaxBytes   int64
}

// Defaults of DeadLetterLimits, and the most payload bytes kept of each.
const (
	DefaultDeadLetterEntries = 10_000
	DefaultDeadLetterBytes   = 16 << 20
	MaxDeadLetterPayload     = 1024
)

// DeadLetterStore keeps dead letters in the store.
type DeadLetterStore struct {
	db     *pebble.DB
	limits DeadLetterLimits

	mu      sync.Mutex
	first   uint64 // lowest id kept (next when empty)
	next    uint64
	count   int
	bytes   int64
	evicted uint64
	high    map[uint32]replayPos
}

// replayPos orders dead letters of one partition by log entry, then by
// their index within the entry.
type replayPos struct {
	pos uint64
	idx uint32
}

func (a replayPos) after(b replayPos) bool {
	return a.pos > b.pos || (a.pos == b.pos && a.idx > b.idx)
}

// DeadLetterEntry is one kept dead letter and its id.
type DeadLetterEntry struct {
	ID uint64
	*pb.DeadLetter
}

func deadLetterKey(id uint64) []byte {
	k := make([]byte, 9)
	k[0] = 'D'
	binary.BigEndian.PutUint64(k[1:], id)
	return k
}

func deadLetterHighKey(p uint32) []byte {
	k := make([]byte, 5)
	k[0] = 'd'
	binary.BigEndian.PutUint32(k[1:], p)
	return k
}

// OpenDeadLetters opens the store's dead letters, reading their count and
// size once.
func (s *Store) OpenDeadLetters(limits DeadLetterLimits) (*DeadLetterStore, error) {
	if limits.MaxEntries <= 0 {
		limits.MaxEntries = DefaultDeadLetterEntries
	}
	if limits.MaxBytes <= 0 {
		limits.MaxBytes = DefaultDeadLetterBytes
	}
	// Ids start at 1: List's before=0 means "from the newest".
	d := &DeadLetterStore{db: s.db, limits: limits, high: map[uint32]replayPos{}, next: 1}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'D'}, UpperBound: []byte{'D' + 1}})
	if err != nil {
		return nil, fmt.Errorf("state: dead letters: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if len(it.Key()) != 9 {
			continue
		}
		id := binary.BigEndian.Uint64(it.Key()[1:])
		if d.count == 0 {
			d.first = id
		}
		d.next = id + 1
		d.count++
		d.bytes += int64(len(it.Value()))
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("state: dead letters: %w", err)
	}
	if d.count == 0 {
		d.first = d.next
	}
	it, err = s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'d'}, UpperBound: []byte{'d' + 1}})
	if err != nil {
		return nil, fmt.Errorf("state: dead letters: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if len(it.Key()) == 5 && len(it.Value()) == 12 {
			d.high[binary.BigEndian.Uint32(it.Key()[1:])] = replayPos{binary.BigEndian.Uint64(it.Value()), binary.BigEndian.Uint32(it.Value()[8:])}
		}
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("state: dead letters: %w", err)
	}
	return d, nil
}

// Add keeps a dead letter, its payload cut to MaxDeadLetterPayload bytes.
// pos > 0 says it was refused while partition dl.Partition applied log
// entry pos (idx: the how-manieth dead letter of that entry): one at or
// before the newest kept for the partition comes from a replay and is
// not kept again (kept false).
func (d *DeadLetterStore) Add(dl *pb.DeadLetter, pos uint64, idx uint32) (kept bool, err error) {
	if len(dl.Payload) > MaxDeadLetterPayload {
		if dl.PayloadBytes == 0 {
			dl.PayloadBytes = uint32(len(dl.Payload))
		}
		dl.Payload = dl.Payload[:MaxDeadLetterPayload]
	}
	data, err := proto.Marshal(dl)
	if err != nil {
		return false, fmt.Errorf("state: dead letter: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	at := replayPos{pos, idx}
	if pos > 0 {
		if h, ok := d.high[dl.Partition]; ok && !at.after(h) {
			return false, nil
		}
	}
	b := d.db.NewBatch()
	defer b.Close()
	id := d.next
	if err := b.Set(deadLetterKey(id), data, nil); err != nil {
		return false, err
	}
	if pos > 0 {
		v := make([]byte, 12)
		binary.BigEndian.PutUint64(v, pos)
		binary.BigEndian.PutUint32(v[8:], idx)
		if err := b.Set(deadLetterHighKey(dl.Partition), v, nil); err != nil {
			return false, err
		}
	}
	// Not synced: a dead letter lost in a crash is refused, and kept,
	// again by the replay.
	if err := b.Commit(pebble.NoSync); err != nil {
		return false, fmt.Errorf("state: dead letter: %w", err)
	}
	d.next++
	d.count++
	d.bytes += int64(len(data))
	if pos > 0 {
		d.high[dl.Partition] = at
	}
	return true, d.evictLocked()
}

// evictLocked removes the oldest dead letters while over the limits, a
// tenth of the limit at a time so that a full store is not trimmed on
// every add.
func (d *DeadLetterStore) evictLocked() error {
	if d.count <= d.limits.MaxEntries && d.bytes <= d.limits.MaxBytes {
		return nil
	}
	wantCount := d.limits.MaxEntries - d.limits.MaxEntries/10
	wantBytes := d.limits.MaxBytes - d.limits.MaxBytes/10
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: deadLetterKey(d.first), UpperBound: []byte{'D' + 1}})
	if err != nil {
		return fmt.Errorf("state: dead letters: %w", err)
	}
	b := d.db.NewBatch()
	defer b.Close()
	count, bytes, first := d.count, d.bytes, d.first
	for ok := it.First(); ok && (count > wantCount || bytes > wantBytes); ok = it.Next() {
		if err := b.Delete(it.Key(), nil); err != nil {
			it.Close()
			return err
		}
		count--
		bytes -= int64(len(it.Value()))
		first = binary.BigEndian.Uint64(it.Key()[1:]) + 1
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("state: dead letters: %w", err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("state: dead letters: %w", err)
	}
	d.evicted += uint64(d.count - count)
	d.count, d.bytes, d.first = count, bytes, first
	return nil
}

// List returns up to limit dead letters, newest first, with ids below
// before (0: from the newest).
func (d *DeadLetterStore) List(before uint64, limit int) ([]DeadLetterEntry, error) {
	upper := []byte{'D' + 1}
	if before > 0 {
		upper = deadLetterKey(before)
	}
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'D'}, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("state: dead letters: %w", err)
	}
	defer it.Close()
	var out []DeadLetterEntry
	for ok := it.Last(); ok && len(out) < limit; ok = it.Prev() {
		if len(it.Key()) != 9 {
			continue
		}
		dl := &pb.DeadLetter{}
		if err := proto.Unmarshal(it.Value(), dl); err != nil {
			return nil, fmt.Errorf("%w: dead letter %x", ErrCorrupt, it.Key())
		}
		out = append(out, DeadLetterEntry{ID: binary.BigEndian.Uint64(it.Key()[1:]), DeadLetter: dl})
	}
	return out, it.Error()
}

// DeadLetterStats are the store's dead-letter figures.
type DeadLetterStats struct {
	Entries int    `json:"entries"`
	Bytes   int64  `json:"bytes"`
	Evicted uint64 `json:"evicted"`
}

// Stats returns how many dead letters are kept, their size, and how many
// were removed to stay within the limits since the store was opened.
func (d *DeadLetterStore) Stats() DeadLetterStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return DeadLetterStats{Entries: d.count, Bytes: d.bytes, Evicted: d.evicted}
}
