package actors

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/value"
)

// TestHTTPSinkBatchesAndRetries: an in-memory gateway's HTTP output sends
// rows in order, in batches of batch_size, each once, even though the
// endpoint fails the first request (the drainer retries it).
func TestHTTPSinkBatchesAndRetries(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]any
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		assert.Equal(t, "secret", r.Header.Get("X-Token"))
		body, _ := io.ReadAll(r.Body)
		var rows []map[string]any
		assert.NoError(t, json.Unmarshal(body, &rows))
		assert.LessOrEqual(t, len(rows), 3)
		got = append(got, rows...)
	}))
	defer srv.Close()
	job, err := config.ParseJob("job.yaml", []byte(fmt.Sprintf(`name: job
query: SELECT i INTO out FROM readings
inputs: [{name: readings}]
outputs:
  - name: out
    http: {url: %q, batch_size: 3, headers: {X-Token: secret}}
    delivery: {retry_min: 0.01s, retry_max: 0.02s}
`, srv.URL)))
	require.NoError(t, err)
	outs := NewOutputs(nil, nil)
	require.NoError(t, outs.Configure(job))
	g := New(Config{Partitions: 1}, outs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, g.Deploy(ctx, job))
	for i := 0; i < 10; i++ {
		require.NoError(t, g.Ingest("readings", "d", []byte(fmt.Sprintf(`{"i":%d}`, i))))
	}
	require.NoError(t, g.Drain(ctx))
	require.NoError(t, g.Close(ctx))
	require.NoError(t, outs.Close(), "close delivers what the in-memory outbox holds")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 10)
	for i, r := range got {
		require.Equal(t, float64(i), r["i"])
		require.NotEmpty(t, r["_id"])
	}
	require.Equal(t, uint64(10), outs.Status()[0].Delivered)
	require.Positive(t, outs.Status()[0].Retries)
}

// TestMessageIDStableAndDistinct: a row's id depends on its job, output,
// time, partition and sequence number, and on nothing else.
func TestMessageIDStableAndDistinct(t *testing.T) {
	a := outputID("j", "o", 10, 1, 7)
	require.Equal(t, a, outputID("j", "o", 10, 1, 7), "same row, same id")
	require.Regexp(t, `^[0-9a-f]{16}$`, a)
	for _, other := range []string{
		outputID("j", "o", 10, 1, 8), outputID("j", "o", 11, 1, 7), outputID("j", "o", 10, 2, 7),
		outputID("j", "p", 10, 1, 7), outputID("k", "o", 10, 1, 7),
	} {
		require.NotEqual(t, a, other)
	}
	rec := rowEntry(a, &value.Record{})
	require.Equal(t, `{"_id":"`+a+`"}`, string(rec.Payload))
}
