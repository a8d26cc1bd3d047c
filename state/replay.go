package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// The replay journal lets a gateway find a log entry that ends its whole
// process while it is applied (an out-of-memory kill, a fatal runtime
// error), which no recover() sees: without it every restart would replay
// the entry and end again. Each partition has a fixed slot in a small file
// beside Pebble's, written with pwrite and never synced. A process that
// ends keeps what it wrote (the page cache outlives it); a machine that
// loses power may lose the last marks, which costs only a longer search
// after the next restart. The slot's checksum tells a torn or zeroed slot
// from a mark.

// ReplayJournalFile is the journal's file name in the store's directory.
// Pebble leaves files whose names it does not know alone.
const ReplayJournalFile = "MILLSTREAM-REPLAY"

const replaySlotBytes = 40

// ReplayMark is how far a partition's replay got before the process ended.
type ReplayMark struct {
	// From is the log position the replay started after (its checkpoint).
	From uint64
	// Reached is the last entry applied with the process still running.
	Reached uint64
	// StartReached is Reached when the latest replay started: a replay
	// that ends the process without passing it made no progress.
	StartReached uint64
	// Applying is, during a careful replay, the entry being applied now.
	Applying uint64
	// Deaths counts replays from From that ended the process without
	// progress.
	Deaths uint32
}

// ReplayJournal holds one ReplayMark slot per partition. Partitions write
// their own slots concurrently.
type ReplayJournal struct {
	f     *os.File
	parts int
}

// OpenReplayJournal opens (or creates) the journal in the store's
// directory.
func (s *Store) OpenReplayJournal() (*ReplayJournal, error) {
	path := filepath.Join(s.dir, ReplayJournalFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state: replay journal: %w", err)
	}
	return &ReplayJournal{f: f, parts: s.cfg.Partitions}, nil
}

// Close closes the journal file.
func (j *ReplayJournal) Close() error {
	if j == nil || j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// Mark reads partition p's slot; ok is false when it holds no mark (never
// written, cleared, torn or from another partition count).
func (j *ReplayJournal) Mark(p int) (m ReplayMark, ok bool, err error) {
	if p < 0 || p >= j.parts {
		return m, false, fmt.Errorf("state: replay journal: partition %d of %d", p, j.parts)
	}
	var b [replaySlotBytes]byte
	n, err := j.f.ReadAt(b[:], int64(p)*replaySlotBytes)
	if err != nil && !errors.Is(err, io.EOF) {
		return m, false, fmt.Errorf("state: replay journal: %w", err)
	}
	if n < len(b) {
		return m, false, nil // past the end: never written
	}
	if crc32.ChecksumIEEE(b[:36]) != binary.BigEndian.Uint32(b[36:]) {
		return m, false, nil
	}
	m.From = binary.BigEndian.Uint64(b[0:])
	m.Reached = binary.BigEndian.Uint64(b[8:])
	m.StartReached = binary.BigEndian.Uint64(b[16:])
	m.Applying = binary.BigEndian.Uint64(b[24:])
	m.Deaths = binary.BigEndian.Uint32(b[32:])
	return m, true, nil
}

// SetMark writes partition p's slot (one pwrite, not synced).
func (j *ReplayJournal) SetMark(p int, m ReplayMark) error {
	var b [replaySlotBytes]byte
	binary.BigEndian.PutUint64(b[0:], m.From)
	binary.BigEndian.PutUint64(b[8:], m.Reached)
	binary.BigEndian.PutUint64(b[16:], m.StartReached)
	binary.BigEndian.PutUint64(b[24:], m.Applying)
	binary.BigEndian.PutUint32(b[32:], m.Deaths)
	binary.BigEndian.PutUint32(b[36:], crc32.ChecksumIEEE(b[:36]))
	return j.write(p, b[:])
}

// ClearMark empties partition p's slot: its replay finished.
func (j *ReplayJournal) ClearMark(p int) error {
	var b [replaySlotBytes]byte
	return j.write(p, b[:])
}

func (j *ReplayJournal) write(p int, b []byte) error {
	if p < 0 || p >= j.parts {
		return fmt.Errorf("state: replay journal: partition %d of %d", p, j.parts)
	}
	if _, err := j.f.WriteAt(b, int64(p)*replaySlotBytes); err != nil {
		return fmt.Errorf("state: replay journal: %w", err)
	}
	return nil
}
