package actors

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/operators/value"
)

// countingSink counts rows per job/output.
type countingSink struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingSink) Write(job, output string, _ int64, _ *value.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[job+"/"+output]++
}

func (c *countingSink) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func passJob(name string) string {
	return fmt.Sprintf(`name: %s
query: SELECT deviceId, v INTO o FROM telemetry
inputs: [{name: telemetry}]
outputs: [{name: o, log: {}}]
`, name)
}

// TestAdminAPIAndHotDeployUnderTraffic deploys and removes a job through
// the admin API while traffic flows; a job deployed before the traffic
// loses nothing, and the metrics show the per-job counts.
func TestAdminAPIAndHotDeployUnderTraffic(t *testing.T) {
	sink := &countingSink{}
	g := New(Config{Partitions: 4, BatchDelay: time.Millisecond}, Rows(sink), nil)
	outs := NewOutputs(nil, io.Discard)
	srv := httptest.NewServer(NewAdmin(g, outs, nil).Handler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	code, body := do(t, http.MethodPut, srv.URL+"/v1/jobs", passJob("steady"))
	require.Equal(t, http.StatusOK, code, body)

	var sent atomic.Int64
	var ingestErr atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			dev := fmt.Sprintf("d%d", i%17)
			if err := g.Ingest("telemetry", dev, []byte(fmt.Sprintf(`{"deviceId":"%s","v":%d}`, dev, i))); err != nil {
				ingestErr.Store(err)
				return
			}
			sent.Add(1)
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	code, body = do(t, http.MethodPut, srv.URL+"/v1/jobs", passJob("extra"))
	require.Equal(t, http.StatusOK, code, body)
	time.Sleep(50 * time.Millisecond)
	code, body = do(t, http.MethodDelete, srv.URL+"/v1/jobs/extra", "")
	require.Equal(t, http.StatusOK, code, body)
	time.Sleep(20 * time.Millisecond)
	close(stop)
	<-done
	require.Nil(t, ingestErr.Load())
	require.NoError(t, g.Drain(ctx))

	require.Equal(t, int(sent.Load()), sink.get("steady/o"), "the steady job lost or duplicated rows while another was deployed and removed")
	require.Greater(t, sink.get("extra/o"), 0)

	code, body = do(t, http.MethodGet, srv.URL+"/v1/jobs", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"name":"steady"`)
	require.NotContains(t, body, `"extra"`)
	code, body = do(t, http.MethodGet, srv.URL+"/v1/jobs/steady", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, fmt.Sprintf(`"EventsOut":%d`, sent.Load()))
	code, body = do(t, http.MethodGet, srv.URL+"/v1/jobs/steady/plan", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "stages")
	code, body = do(t, http.MethodGet, srv.URL+"/metrics", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, fmt.Sprintf(`millstream_job_events_total{job_name="steady",kind="out"} %d`, sent.Load()))
	require.Contains(t, body, `millstream_job_watermark_lag_seconds{job_name="steady"}`)
	require.Contains(t, body, `millstream_partition_batch_seconds_count`)
	require.Contains(t, body, `millstream_partition_mailbox_batches{partition="0"} 0`)
	require.Contains(t, body, `millstream_stage_event_seconds_bucket{job_name="steady",stage="select1",le="+Inf"}`)
	require.NotContains(t, body, `job_name="extra"`, "the removed job's series are gone")
	code, _ = do(t, http.MethodGet, srv.URL+"/healthz", "")
	require.Equal(t, http.StatusOK, code)

	// Bad jobs are refused with the reason; nothing changes.
	code, body = do(t, http.MethodPut, srv.URL+"/v1/jobs", "name: bad\nquery: SELECT FROM\n")
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "line 1")
	code, _ = do(t, http.MethodDelete, srv.URL+"/v1/jobs/nope", "")
	require.Equal(t, http.StatusNotFound, code)

	require.NoError(t, g.Close(ctx))
	code, _ = do(t, http.MethodGet, srv.URL+"/readyz", "")
	require.Equal(t, http.StatusServiceUnavailable, code)
}
