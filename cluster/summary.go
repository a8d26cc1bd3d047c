package cluster

import (
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Batching of the per-partition lines: a cluster start, a gateway joining
// or leaving, or a drain changes most partitions at once, and a line per
// partition (16 to 64 per gateway, and per change) buried the lines that
// matter. Each change is logged at debug with its details; at info one
// line per kind of change (and its why, or the gateway it went to) lists
// the partitions of a round: those changed with no more than batchQuiet
// between them, for batchMaxWait at most.
const (
	batchQuiet   = 300 * time.Millisecond
	batchMaxWait = 2 * time.Second
)

// partitionLog gathers per-partition changes into summary lines.
type partitionLog struct {
	log     *slog.Logger
	quiet   time.Duration
	maxWait time.Duration
	mu      sync.Mutex
	batches map[batchKey]*partitionBatch
}

// batchKey is what one summary line has in common: its message and one
// attribute (why, to, holder).
type batchKey struct {
	msg, key, value string
}

type partitionBatch struct {
	parts []int
	first time.Time
	took  time.Duration // the longest change's
	timer *time.Timer
}

func newPartitionLog(log *slog.Logger) *partitionLog {
	return &partitionLog{log: log, quiet: batchQuiet, maxWait: batchMaxWait, batches: map[batchKey]*partitionBatch{}}
}

// add counts partition p into the summary line msg with key=value, and
// took (if not 0) into its longest.
func (l *partitionLog) add(msg, key, value string, p int, took time.Duration) {
	k := batchKey{msg, key, value}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.batches[k]
	if b == nil {
		b = &partitionBatch{first: time.Now()}
		b.timer = time.AfterFunc(l.quiet, func() { l.flushKey(k, b) })
		l.batches[k] = b
	} else if time.Since(b.first) < l.maxWait {
		// Still the same round: wait for the rest of it. A batch never
		// waits much longer than maxWait, however busy.
		b.timer.Reset(l.quiet)
	}
	b.parts = append(b.parts, p)
	b.took = max(b.took, took)
}

func (l *partitionLog) flushKey(k batchKey, b *partitionBatch) {
	l.mu.Lock()
	if l.batches[k] != b {
		l.mu.Unlock()
		return // flushed already
	}
	delete(l.batches, k)
	l.mu.Unlock()
	l.write(k, b)
}

// flush logs every pending summary now (before a line that should come
// after them, and on close).
func (l *partitionLog) flush() {
	l.mu.Lock()
	batches := l.batches
	l.batches = map[batchKey]*partitionBatch{}
	l.mu.Unlock()
	keys := make([]batchKey, 0, len(batches))
	for k, b := range batches {
		b.timer.Stop()
		keys = append(keys, k)
	}
	// In the order the rounds began.
	sort.Slice(keys, func(i, j int) bool { return batches[keys[i]].first.Before(batches[keys[j]].first) })
	for _, k := range keys {
		l.write(k, batches[k])
	}
}

func (l *partitionLog) write(k batchKey, b *partitionBatch) {
	args := []any{"count", len(b.parts), "partitions", partitionList(b.parts), k.key, k.value}
	if b.took > 0 {
		args = append(args, "took_max", b.took.Round(time.Millisecond))
	}
	l.log.Info(k.msg, args...)
}

// partitionList writes partitions as sorted ranges: "0-3,7,9-10".
func partitionList(parts []int) string {
	ps := append([]int(nil), parts...)
	sort.Ints(ps)
	var sb strings.Builder
	for i := 0; i < len(ps); {
		j := i
		for j+1 < len(ps) && ps[j+1] <= ps[j]+1 {
			j++
		}
		if sb.Len() > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.Itoa(ps[i]))
		if ps[j] != ps[i] {
			sb.WriteByte('-')
			sb.WriteString(strconv.Itoa(ps[j]))
		}
		i = j + 1
	}
	return sb.String()
}
