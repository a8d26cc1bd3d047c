package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// What a clustered gateway keeps besides the single-gateway layout:
//
//	'r' partition:uint16 -> SafeCheckpoint (latest checkpoint whose rows were all delivered)
//	'e' partition:uint16 -> uint64         (ownership epoch of the partition, C3)
//	'P' partition:uint16 -> epoch:uint64 member (the epoch promised to a take-over, then the member name taking over; C16)
//
// A replica writes the owner's log entries at the owner's sequence
// numbers (AppendAt), so a replay on the replica gives the same output ids
// as on the owner (D2). It keeps the log after the safe checkpoint's
// "through" position: the owner re-emits nothing before it.

func partKey(kind byte, p int) []byte {
	k := []byte{kind, 0, 0}
	binary.BigEndian.PutUint16(k[1:], uint16(p))
	return k
}

// LastSeq is the highest log sequence number the partition has used.
func (s *Store) LastSeq(p int) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p < 0 || p >= len(s.next) {
		return 0
	}
	return s.next[p] - 1
}

// ErrLogGap: a replicated run of log entries does not follow the copy's
// log (entries between were never stored here); the run is refused.
var ErrLogGap = errors.New("state: replicated log entries do not follow this copy's log")

// AppendAt writes a run of a partition's log entries that another gateway
// numbered, first onwards, in one synced batch (a replica; S1). Entries at
// or below through (the replica's truncation point) are skipped; entries
// already present are written again with the same content. The run must
// follow the copy (first at most one past its last entry or its
// checkpoint): a run after a gap is refused with ErrLogGap, for a copy
// with a hole would hand a take-over a log that skips entries. Entries
// after the run are dropped: they are what an older server wrote at
// those positions and never committed, and the server sends its own
// next.
func (s *Store) AppendAt(p int, first, through uint64, entries []*pb.LogEntry) error {
	if err := s.partition(p); err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	s.mu.Lock()
	next, cp := s.next[p], s.cpPos[p]
	s.mu.Unlock()
	if first > max(next, cp+1) {
		return fmt.Errorf("%w: partition %d: run from %d, copy through %d", ErrLogGap, p, first, max(next, cp+1)-1)
	}
	b := s.db.NewBatch()
	defer b.Close()
	var buf []byte
	last := uint64(0)
	for i, e := range entries {
		seq := first + uint64(i)
		if seq <= through {
			continue
		}
		var err error
		if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf[:0], e); err != nil {
			return fmt.Errorf("state: encode log entry: %w", err)
		}
		if err := b.Set(logKey(p, seq), buf, nil); err != nil {
			return err
		}
		last = seq
	}
	if last == 0 {
		return nil
	}
	if last+1 < next {
		if err := b.DeleteRange(logKey(p, last+1), logUpper(p), nil); err != nil {
			return err
		}
	}
	if err := b.Commit(s.write); err != nil {
		return fmt.Errorf("state: partition %d: commit replicated log: %w", p, err)
	}
	s.mu.Lock()
	s.next[p] = max(last+1, s.cpPos[p]+1)
	s.mu.Unlock()
	return nil
}

// SaveSafeCheckpoint stores a partition's safe checkpoint ('r').
func (s *Store) SaveSafeCheckpoint(p int, sc *pb.SafeCheckpoint) error {
	if err := s.partition(p); err != nil {
		return err
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(sc)
	if err != nil {
		return fmt.Errorf("state: encode safe checkpoint: %w", err)
	}
	if err := s.db.Set(partKey('r', p), data, pebble.NoSync); err != nil {
		return fmt.Errorf("state: partition %d: save safe checkpoint: %w", p, err)
	}
	return nil
}

// LoadSafeCheckpoint returns a partition's safe checkpoint, or nil.
func (s *Store) LoadSafeCheckpoint(p int) (*pb.SafeCheckpoint, error) {
	v, closer, err := s.db.Get(partKey('r', p))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, readErr(err, fmt.Sprintf("partition %d: read safe checkpoint", p))
	}
	defer closer.Close()
	sc := &pb.SafeCheckpoint{}
	if err := proto.Unmarshal(v, sc); err != nil {
		return nil, fmt.Errorf("%w: partition %d safe checkpoint: %w", ErrCorrupt, p, err)
	}
	return sc, nil
}

// ApplySafeCheckpoint makes a replica's state the safe checkpoint: it
// becomes the partition's checkpoint and safe checkpoint, the output mark
// moves to the checkpoint's (rows after it are re-emitted by a take-over)
// and the log through sc.Through is dropped, in one synced batch.
func (s *Store) ApplySafeCheckpoint(p int, sc *pb.SafeCheckpoint) error {
	if err := s.partition(p); err != nil {
		return err
	}
	cp := sc.GetCheckpoint()
	if cp == nil {
		return fmt.Errorf("state: partition %d: safe checkpoint without a checkpoint", p)
	}
	scData, err := proto.MarshalOptions{Deterministic: true}.Marshal(sc)
	if err != nil {
		return err
	}
	cpData, err := proto.MarshalOptions{Deterministic: true}.Marshal(cp)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set(partKey('r', p), scData, nil)
	_ = b.Set(checkpointKey(p), cpData, nil)
	_ = b.Set(writtenKey(p), binary.BigEndian.AppendUint64(nil, cp.OutputSeq), nil)
	if through := min(sc.Through, cp.LogPosition); through > 0 {
		_ = b.DeleteRange(logKey(p, 0), logKey(p, through+1), nil)
	}
	if err := b.Commit(s.write); err != nil {
		return fmt.Errorf("state: partition %d: apply safe checkpoint: %w", p, err)
	}
	s.mu.Lock()
	s.next[p] = max(s.next[p], cp.LogPosition+1)
	s.cpPos[p], s.cpKnown[p] = cp.LogPosition, true
	s.mu.Unlock()
	return nil
}

// ResetPartition drops everything a gateway holds of a partition: log,
// checkpoints and output mark (a replica about to be caught up). The
// epoch is kept.
func (s *Store) ResetPartition(p int) error {
	if err := s.partition(p); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.DeleteRange(logKey(p, 0), logUpper(p), nil)
	_ = b.Delete(checkpointKey(p), nil)
	_ = b.Delete(partKey('r', p), nil)
	_ = b.Delete(writtenKey(p), nil)
	if err := b.Commit(s.write); err != nil {
		return fmt.Errorf("state: partition %d: reset: %w", p, err)
	}
	s.mu.Lock()
	s.next[p] = 1
	s.cpPos[p], s.cpKnown[p] = 0, true
	s.mu.Unlock()
	return nil
}

// ReturnToSafe makes what a gateway holds of a partition it served, and
// gave up, what a replica of it holds: its safe checkpoint applied as a
// replica applies one (none: no checkpoint and no output mark), the log
// after it kept. The rows produced since the safe checkpoint are given up
// (another gateway re-emits them); should this gateway serve the
// partition again from this copy, it replays the log from the safe
// checkpoint and emits them itself.
func (s *Store) ReturnToSafe(p int) error {
	sc, err := s.LoadSafeCheckpoint(p)
	if err != nil {
		return err
	}
	if sc.GetCheckpoint() != nil {
		return s.ApplySafeCheckpoint(p, sc)
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Delete(checkpointKey(p), nil)
	_ = b.Delete(writtenKey(p), nil)
	if err := b.Commit(s.write); err != nil {
		return fmt.Errorf("state: partition %d: drop the checkpoint given up: %w", p, err)
	}
	s.mu.Lock()
	s.cpPos[p], s.cpKnown[p] = 0, true
	s.mu.Unlock()
	return nil
}

// Epoch is the partition's ownership epoch (0: never owned here).
func (s *Store) Epoch(p int) (uint64, error) {
	v, closer, err := s.db.Get(partKey('e', p))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, readErr(err, fmt.Sprintf("partition %d: read epoch", p))
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: partition %d epoch", ErrCorrupt, p)
	}
	return binary.BigEndian.Uint64(v), nil
}

// SetEpoch stores the partition's ownership epoch (synced).
func (s *Store) SetEpoch(p int, epoch uint64) error {
	if err := s.partition(p); err != nil {
		return err
	}
	if err := s.db.Set(partKey('e', p), binary.BigEndian.AppendUint64(nil, epoch), s.write); err != nil {
		return fmt.Errorf("state: partition %d: save epoch: %w", p, err)
	}
	return nil
}

// Promised is the highest epoch of partition p this gateway promised to a
// take-over, and the member it promised it to (0, "" when none). It is
// kept apart from the epoch: a promise says what this gateway refuses
// from now on, not which epoch its copy is of, and a take-over chooses
// the best copy by the latter.
func (s *Store) Promised(p int) (uint64, string, error) {
	if err := s.partition(p); err != nil {
		return 0, "", err
	}
	v, closer, err := s.db.Get(partKey('P', p))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", readErr(err, fmt.Sprintf("partition %d: read promised epoch", p))
	}
	defer closer.Close()
	if len(v) < 8 {
		return 0, "", fmt.Errorf("%w: partition %d promised epoch", ErrCorrupt, p)
	}
	return binary.BigEndian.Uint64(v), string(v[8:]), nil
}

// SetPromised stores the epoch of partition p promised to a take-over by
// member (synced: the promise holds across a restart).
func (s *Store) SetPromised(p int, epoch uint64, member string) error {
	if err := s.partition(p); err != nil {
		return err
	}
	v := append(binary.BigEndian.AppendUint64(nil, epoch), member...)
	if err := s.db.Set(partKey('P', p), v, s.write); err != nil {
		return fmt.Errorf("state: partition %d: save promised epoch: %w", p, err)
	}
	return nil
}

// OutboxHighWater is, per output, the seq of the last row appended.
func (s *Store) OutboxHighWater() map[string]uint64 {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	return highWater(s.outputs)
}

// OutboxHeads is, per output, the seq of the first row still in the
// outbox (math.MaxUint64 when it is empty): every row below it has left
// (delivered, expired, dropped or moved to the dead letters).
func (s *Store) OutboxHeads() (map[string]uint64, error) {
	s.outMu.Lock()
	names := make([]string, 0, len(s.outputs))
	for name := range s.outputs {
		names = append(names, name)
	}
	s.outMu.Unlock()
	heads := make(map[string]uint64, len(names))
	for _, output := range names {
		lo, hi := outboxBounds('o', output)
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return nil, err
		}
		heads[output] = math.MaxUint64
		if it.First() {
			_, heads[output], _ = splitOutboxKey(it.Key())
		}
		err = it.Error()
		it.Close()
		if err != nil {
			return nil, readErr(err, "outbox")
		}
	}
	return heads, nil
}

// Drained reports whether every row up to hw (OutboxHighWater) has left
// the outboxes whose heads are given (OutboxHeads).
func Drained(hw, heads map[string]uint64) bool {
	for output, seq := range hw {
		if head, ok := heads[output]; seq > 0 && ok && head <= seq {
			return false
		}
	}
	return true
}

// The gateways a clustered gateway has known ('g' name -> empty), so that
// after a restart it still counts the majority of the whole cluster, not
// of the gateways that happen to be up.

// SaveGatewayAddr records a gateway of the cluster with its gossip address
// (synced), so that after a restart this gateway can reach it without a
// seed.
func (s *Store) SaveGatewayAddr(name, addr string) error {
	if err := s.db.Set(append([]byte{'g'}, name...), []byte(addr), s.write); err != nil {
		return fmt.Errorf("state: save gateway %q: %w", name, err)
	}
	return nil
}

// GatewayAddrs returns the gossip address recorded for each gateway that
// has one.
func (s *Store) GatewayAddrs() (map[string]string, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'g'}, UpperBound: []byte{'g' + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[string]string{}
	for it.First(); it.Valid(); it.Next() {
		if v := it.Value(); len(v) > 0 {
			out[string(it.Key()[1:])] = string(v)
		}
	}
	if err := it.Error(); err != nil {
		return nil, readErr(err, "gateway addresses")
	}
	return out, nil
}

// DeleteGateway forgets a gateway that left the cluster for good.
func (s *Store) DeleteGateway(name string) error {
	if err := s.db.Delete(append([]byte{'g'}, name...), s.write); err != nil {
		return fmt.Errorf("state: delete gateway %q: %w", name, err)
	}
	return nil
}

// SaveForgotten records that an operator forgot a gateway (synced), so
// the mark reaches gateways that were down then; ClearForgotten drops it
// when the gateway is back.
func (s *Store) SaveForgotten(name string) error {
	if err := s.db.Set(append([]byte{'G'}, name...), nil, s.write); err != nil {
		return fmt.Errorf("state: save forgotten gateway %q: %w", name, err)
	}
	return nil
}

// ClearForgotten drops the mark of SaveForgotten.
func (s *Store) ClearForgotten(name string) error {
	if err := s.db.Delete(append([]byte{'G'}, name...), s.write); err != nil {
		return fmt.Errorf("state: clear forgotten gateway %q: %w", name, err)
	}
	return nil
}

// Forgotten lists the gateways marked by SaveForgotten.
func (s *Store) Forgotten() ([]string, error) { return s.names('G', "forgotten gateways") }

// Gateways lists the gateways recorded by SaveGateway.
func (s *Store) Gateways() ([]string, error) { return s.names('g', "gateways") }

// names lists the keys under a one-byte prefix, without it.
func (s *Store) names(prefix byte, what string) ([]string, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefix}, UpperBound: []byte{prefix + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []string
	for it.First(); it.Valid(); it.Next() {
		out = append(out, string(it.Key()[1:]))
	}
	if err := it.Error(); err != nil {
		return nil, readErr(err, what)
	}
	return out, nil
}
