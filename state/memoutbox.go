package state

import (
	"math"
	"sort"
	"sync"
	"time"
)

// MemOutbox is the outbox of a gateway without durable state: the same
// contract as the store's (Outbox, O1 and O2), kept in memory, so rows
// take one path to their sinks in both modes. What it holds is lost when
// the process ends; that is what running in memory means. Its quota is
// the drainers' (bytes counted as in the store: about a row's encoded
// size), so it is bounded like the store's. Safe for concurrent use.
//
// Row ids must not repeat those of an earlier process, or a file output
// would take new rows for resends of rows it has: OutputWritten starts
// every partition at a number taken from the clock when the outbox is
// made, so partitions number their rows from there.
type MemOutbox struct {
	mu      sync.Mutex // serializes appends (O1) and guards everything below
	base    uint64     // OutputWritten of a partition that has appended nothing
	written map[int]uint64
	outputs map[string]*outputStats
	queues  map[string]*memQueue
}

// memQueue is one output's rows, oldest first: rows[head:] are waiting
// (those with gone set have left, out of order), rows[:head] are unused.
type memQueue struct {
	rows []memRow
	head int
	dead []OutboxItem // the newest maxMemDead rows refused for good
}

type memRow struct {
	OutboxItem
	gone bool
}

// maxMemDead is how many dead letters a MemOutbox keeps per output (all
// are counted).
const maxMemDead = 1000

var (
	_ Outbox = (*MemOutbox)(nil)
	_ Outbox = (*Store)(nil)
)

// NewMemOutbox makes an empty in-memory outbox.
func NewMemOutbox() *MemOutbox {
	return &MemOutbox{base: uint64(time.Now().UnixNano()), written: map[int]uint64{}, outputs: map[string]*outputStats{},
		queues: map[string]*memQueue{}}
}

// Durable implements Outbox: rows are lost when the process ends.
func (m *MemOutbox) Durable() bool { return false }

// output returns an output's stats and rows (m.mu held).
func (m *MemOutbox) output(name string) (*outputStats, *memQueue) {
	q := m.queues[name]
	if q == nil {
		q = &memQueue{}
		m.queues[name] = q
	}
	return outputOf(m.outputs, name), q
}

// AppendOutputs implements Outbox (O1, O2).
func (m *MemOutbox) AppendOutputs(p int, lastSeq uint64, rows []OutRow) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range rows {
		st, q := m.output(r.Output)
		size := memSize(r)
		q.rows = append(q.rows, memRow{OutboxItem: OutboxItem{Seq: st.next, Size: size, Entry: r.Entry}})
		st.next++
		st.Entries++
		st.Bytes += int64(size)
	}
	m.written[p] = lastSeq
	return nil
}

// memSize is about the bytes the row takes encoded (the store's measure),
// without encoding it.
func memSize(r OutRow) int {
	e := r.Entry
	return len(e.Id) + len(e.Payload) + len(e.Topic) + 20
}

// OutputWritten implements Outbox.
func (m *MemOutbox) OutputWritten(p int) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w, ok := m.written[p]; ok {
		return w, nil
	}
	return m.base, nil
}

// ReadOutbox implements Outbox.
func (m *MemOutbox) ReadOutbox(output string, after uint64, n int, newest bool) ([]OutboxItem, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.queues[output]
	if q == nil || n <= 0 {
		return nil, nil
	}
	rows := q.rows[q.head:]
	from := sort.Search(len(rows), func(i int) bool { return rows[i].Seq > after })
	rows = rows[from:]
	var items []OutboxItem
	if newest {
		for i := len(rows) - 1; i >= 0 && len(items) < n; i-- {
			if !rows[i].gone {
				items = append(items, rows[i].OutboxItem)
			}
		}
		for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
			items[i], items[j] = items[j], items[i]
		}
		return items, nil
	}
	for i := 0; i < len(rows) && len(items) < n; i++ {
		if !rows[i].gone {
			items = append(items, rows[i].OutboxItem)
		}
	}
	return items, nil
}

// ForgetOutbox implements Outbox; in memory the rows go at once.
func (m *MemOutbox) ForgetOutbox(output string, items []OutboxItem) {
	m.remove(output, items, false)
}

// DeleteOutbox implements Outbox.
func (m *MemOutbox) DeleteOutbox(output string, items []OutboxItem) error {
	m.remove(output, items, false)
	return nil
}

// DeleteOutboxRange implements Outbox: the rows are gone already
// (ForgetOutbox).
func (m *MemOutbox) DeleteOutboxRange(string, uint64, uint64) error { return nil }

// DeadLetterOutbox implements Outbox: the newest maxMemDead are kept.
func (m *MemOutbox) DeadLetterOutbox(output string, items []OutboxItem) error {
	m.remove(output, items, true)
	return nil
}

func (m *MemOutbox) remove(output string, items []OutboxItem, dead bool) {
	if len(items) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st, q := m.output(output)
	rows := q.rows[q.head:]
	for _, it := range items {
		i := sort.Search(len(rows), func(i int) bool { return rows[i].Seq >= it.Seq })
		if i == len(rows) || rows[i].Seq != it.Seq || rows[i].gone {
			continue
		}
		rows[i].gone = true
		st.Entries--
		st.Bytes -= int64(rows[i].Size)
		if dead {
			st.Dead++
			q.dead = append(q.dead, rows[i].OutboxItem)
			if len(q.dead) > maxMemDead {
				q.dead = append(q.dead[:0], q.dead[len(q.dead)-maxMemDead:]...)
			}
		}
	}
	for q.head < len(q.rows) && q.rows[q.head].gone {
		q.rows[q.head] = memRow{} // let the entry go
		q.head++
	}
	if q.head == len(q.rows) {
		q.rows, q.head = q.rows[:0], 0
	} else if q.head > 1024 && q.head > len(q.rows)/2 {
		n := copy(q.rows, q.rows[q.head:])
		clear(q.rows[n:])
		q.rows, q.head = q.rows[:n], 0
	}
}

// DeadLetters implements Outbox.
func (m *MemOutbox) DeadLetters(output string, n int) ([]OutboxItem, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.queues[output]
	if q == nil {
		return nil, nil
	}
	return append([]OutboxItem(nil), q.dead[:min(n, len(q.dead))]...), nil
}

// Outbox implements Outbox.
func (m *MemOutbox) Outbox(output string) OutboxStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return statsOf(m.outputs, output)
}

// OutboxHighWater implements Outbox.
func (m *MemOutbox) OutboxHighWater() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return highWater(m.outputs)
}

// OutboxHeads implements Outbox.
func (m *MemOutbox) OutboxHeads() (map[string]uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	heads := make(map[string]uint64, len(m.queues))
	for name, q := range m.queues {
		heads[name] = math.MaxUint64
		if q.head < len(q.rows) { // never a row that is gone (remove)
			heads[name] = q.rows[q.head].Seq
		}
	}
	return heads, nil
}

// CompactOutbox implements Outbox: nothing to give back.
func (m *MemOutbox) CompactOutbox(string) error { return nil }
