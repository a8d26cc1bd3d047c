package actors

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/internal/testutil"
)

// serveCollectors serves g's own collectors (Gateway.Collectors) as the
// admin API (actors/admin) registers them, and returns a scrape.
func serveCollectors(t *testing.T, g *Gateway) func() string {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(g.Collectors()...)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return func() string {
		t.Helper()
		resp, err := http.Get(srv.URL)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		return string(body)
	}
}

// passGateway is an in-memory gateway running job name (every telemetry
// event to a log output), closed after the test, with its sink and a
// scrape of its collectors.
func passGateway(t *testing.T, partitions int, name string) (*Gateway, *countingSink, func() string) {
	t.Helper()
	sink := &countingSink{}
	g := New(Config{Partitions: partitions, BatchDelay: time.Millisecond}, Rows(sink), nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, g.Close(ctx))
	})
	job, err := config.ParseJob("job.yaml", []byte("name: "+name+"\nquery: SELECT deviceId, v INTO o FROM telemetry\ninputs: [{name: telemetry}]\noutputs: [{name: o, log: {}}]\n"))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, g.Deploy(ctx, job))
	return g, sink, serveCollectors(t, g)
}

// TestMetricsStageHistogram: the stage time is a histogram of the sampled
// rows, labelled job_name (Prometheus renames a job label to
// exported_job), and the jobs' memory figures are there. The series the
// admin API adds are tested in actors/admin.
func TestMetricsStageHistogram(t *testing.T) {
	g, sink, scrape := passGateway(t, 2, "pass")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// One device: every row goes through one partition's executor, which
	// samples one row in 256.
	const rows = 3 * 256
	for i := 0; i < rows; i++ {
		require.NoError(t, g.Ingest("telemetry", "dev-1", []byte(`{"deviceId":"dev-1","v":1}`)))
	}
	require.NoError(t, g.Drain(ctx))
	require.Equal(t, rows, sink.get("pass/o"))
	body := scrape()
	require.Contains(t, body, `millstream_job_state_bytes{job_name="pass"}`)
	require.NotRegexp(t, `[{,]job="`, body)

	// The histogram: a bucket per bound and +Inf, cumulative, counting
	// the sampled rows.
	const stage = `job_name="pass",stage="select1"`
	require.Equal(t, 3.0, testutil.SeriesValue(t, body, `millstream_stage_event_seconds_count{`+stage+`}`), body)
	require.Equal(t, 3.0, testutil.SeriesValue(t, body, `millstream_stage_event_seconds_bucket{`+stage+`,le="+Inf"}`))
	buckets := regexp.MustCompile(`(?m)^millstream_stage_event_seconds_bucket\{`+regexp.QuoteMeta(stage)+`,le="[^"]+"\} (\S+)$`).FindAllStringSubmatch(body, -1)
	require.Len(t, buckets, len(stageBuckets)+1)
	prev := 0.0
	for _, b := range buckets {
		v, err := strconv.ParseFloat(b[1], 64)
		require.NoError(t, err)
		require.GreaterOrEqual(t, v, prev, "buckets are cumulative")
		prev = v
	}
	require.Greater(t, testutil.SeriesValue(t, body, `millstream_stage_event_seconds_sum{`+stage+`}`), 0.0)
	require.Contains(t, body, "# TYPE millstream_stage_event_seconds histogram")
}

// TestStageSeriesGoWithTheirJob: a removed job's histogram series are
// deleted (a histogram keeps series until then).
func TestStageSeriesGoWithTheirJob(t *testing.T) {
	g, sink, scrape := passGateway(t, 1, "brief")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 256; i++ {
		require.NoError(t, g.Ingest("telemetry", "d1", []byte(`{"deviceId":"d1","v":1}`)))
	}
	require.Eventually(t, func() bool { return sink.get("brief/o") == 256 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, 1.0, testutil.SeriesValue(t, scrape(), `millstream_stage_event_seconds_count{job_name="brief",stage="select1"}`))
	require.NoError(t, g.Remove(ctx, "brief"))
	require.NotContains(t, scrape(), `job_name="brief"`)
}
