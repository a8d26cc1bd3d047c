package actors

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// TestHTTPSinkBatchesAndRetries: rows arrive in order, in batches, each
// once, even though the endpoint fails the first request.
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
	s := newHTTPSink(&pb.HttpSink{Url: srv.URL, BatchSize: 3, BatchInterval: durationpb.New(10 * time.Millisecond), Headers: map[string]string{"X-Token": "secret"}})
	for i := 0; i < 10; i++ {
		rec := &value.Record{Names: []string{"i"}, Vals: []value.Value{value.Int(int64(i))}}
		require.NoError(t, s.write("job", "out", int64(i), rec))
	}
	require.NoError(t, s.close())
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 10)
	for i, r := range got {
		require.Equal(t, float64(i), r["i"])
		require.NotEmpty(t, r["_id"])
	}
}

func TestMessageIDStableAndDistinct(t *testing.T) {
	rec := func(v int64) *value.Record {
		return &value.Record{Names: []string{"v"}, Vals: []value.Value{value.Int(v)}}
	}
	a := string(withID("j", "o", 10, rec(1)))
	require.Equal(t, a, string(withID("j", "o", 10, rec(1))), "same row, same id")
	require.Regexp(t, `^\{"_id":"[0-9a-f]{16}","v":1\}$`, a)
	for _, other := range []string{
		string(withID("j", "o", 10, rec(2))), string(withID("j", "o", 11, rec(1))),
		string(withID("j", "p", 10, rec(1))), string(withID("k", "o", 10, rec(1))),
	} {
		require.NotEqual(t, a[:25], other[:25])
	}
	require.Regexp(t, `^\{"_id":"[0-9a-f]{16}"\}$`, string(withID("j", "o", 1, &value.Record{})))
}
