package actors

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// panickySink delivers rows, but panics on every row whose payload is bad,
// as a sink with a bug for one kind of row would.
type panickySink struct {
	bad  string
	mu   sync.Mutex
	sent []string
}

func (s *panickySink) encode(string, string, int64, *value.Record, string) *pb.OutboxEntry {
	return nil
}
func (s *panickySink) close() error { return nil }
func (s *panickySink) deliver(_ context.Context, rows []*pb.OutboxEntry) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range rows {
		if string(r.Payload) == s.bad {
			panic(fmt.Sprintf("test: the sink cannot take row %d", i))
		}
	}
	for _, r := range rows {
		s.sent = append(s.sent, string(r.Payload))
	}
	return len(rows), nil
}

func (s *panickySink) delivered() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sent...)
}

// TestDrainerSurvivesAPanickingSink: an output's drainer is a supervised
// actor. A row whose delivery panics restarts it (before, the panic ended
// the process); the batch is sent again one row at a time, the row that
// panics alone is dead-lettered, and every other row is delivered once,
// in order.
func TestDrainerSurvivesAPanickingSink(t *testing.T) {
	o := NewOutputs(nil, io.Discard)
	defer o.Close()
	sink := &panickySink{bad: "row-7"}
	const key = "j/o"
	var rows []state.OutRow
	var want []string
	for i := 1; i <= 20; i++ {
		payload := fmt.Sprintf("row-%d", i)
		rows = append(rows, state.OutRow{Output: key, Entry: &pb.OutboxEntry{Payload: []byte(payload), Enqueued: time.Now().UnixNano()}})
		if payload != sink.bad {
			want = append(want, payload)
		}
	}
	require.NoError(t, o.box.AppendOutputs(0, uint64(len(rows)), rows))
	o.mu.Lock()
	o.startDrainer(key, sink, nil)
	o.mu.Unlock()

	require.Eventually(t, func() bool { return len(sink.delivered()) >= len(want) }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, want, sink.delivered())
	st := o.Status()
	require.Len(t, st, 1)
	require.EqualValues(t, 1, st[0].DeadLettered, "the row that panics alone")
	require.EqualValues(t, 2, st[0].Restarts, "a restart for the batch, one for the row alone")
	require.Zero(t, st[0].Backlog)
}
