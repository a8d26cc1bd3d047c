package actors

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBatchesReachThePartitionInTheOrderCut: the flush timer cuts a
// partial batch and is descheduled before sending it; meanwhile ingestion
// fills and sends the next batch. The partition must still get the older
// batch first (CI once saw six readings overtaken this way, their
// timestamps then adjusted as out of order).
func TestBatchesReachThePartitionInTheOrderCut(t *testing.T) {
	var b batcher
	var mu sync.Mutex
	var got []int64
	record := func(batch *eventBatch) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range batch.events {
			got = append(got, e.arrival)
		}
	}
	b.add(event{arrival: 1}, 2, record)
	cut, flushed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(flushed)
		b.take(func(batch *eventBatch) {
			close(cut)
			time.Sleep(50 * time.Millisecond) // the timer, descheduled
			record(batch)
		})
	}()
	<-cut
	b.add(event{arrival: 2}, 2, record)
	b.add(event{arrival: 3}, 2, record)
	<-flushed
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []int64{1, 2, 3}, got)
}
