package state

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Parked input: events a clustered gateway took in while cut off from the
// cluster's majority, acknowledged to their publishers and waiting to be
// forwarded to the gateway serving their partition.
//
//	'f' partition:uint16 origin 0x00 origin_seq:uint64 -> LogEntry
//
// The key is the event's forwarding identity (C7): parking one twice
// stores it once, and a parked event forwarded again after a restart is
// recognised by the gateway that logged it the first time.

func parkKey(p int, origin string, oseq uint64) []byte {
	k := append(partKey('f', p), origin...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, oseq)
}

// Park stores entries of partition p (each with its origin and origin
// seq); once it returns they survive a crash (with Sync, the default).
func (s *Store) Park(p int, entries []*pb.LogEntry) error {
	if err := s.partition(p); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, e := range entries {
		if e.Origin == "" {
			return fmt.Errorf("state: park partition %d: an entry without origin", p)
		}
		v, err := proto.Marshal(e)
		if err != nil {
			return fmt.Errorf("state: park partition %d: %w", p, err)
		}
		if err := b.Set(parkKey(p, e.Origin, e.OriginSeq), v, nil); err != nil {
			return fmt.Errorf("state: park partition %d: %w", p, err)
		}
	}
	if err := b.Commit(s.write); err != nil {
		return fmt.Errorf("state: park partition %d: %w", p, err)
	}
	return nil
}

// Unpark deletes parked entries once the serving gateway logged them.
// Not synced: an entry that comes back after a crash is forwarded again
// and recognised as a resend.
func (s *Store) Unpark(p int, entries []*pb.LogEntry) error {
	if err := s.partition(p); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, e := range entries {
		if err := b.Delete(parkKey(p, e.Origin, e.OriginSeq), nil); err != nil {
			return fmt.Errorf("state: unpark partition %d: %w", p, err)
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("state: unpark partition %d: %w", p, err)
	}
	return nil
}

// Parked lists partition p's parked entries, by origin and then origin
// seq (the order each origin numbered them in).
func (s *Store) Parked(p int) ([]*pb.LogEntry, error) {
	if err := s.partition(p); err != nil {
		return nil, err
	}
	lo := partKey('f', p)
	hi := partKey('f', p+1)
	if p+1 > 0xffff {
		hi = []byte{'f' + 1}
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, readErr(err, "parked input")
	}
	defer it.Close()
	var out []*pb.LogEntry
	for it.First(); it.Valid(); it.Next() {
		e := &pb.LogEntry{}
		if err := proto.Unmarshal(it.Value(), e); err != nil {
			return nil, fmt.Errorf("%w: parked input of partition %d: %w", ErrCorrupt, p, err)
		}
		out = append(out, e)
	}
	if err := it.Error(); err != nil {
		return nil, readErr(err, "parked input")
	}
	return out, nil
}
