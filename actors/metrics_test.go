package actors

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	return string(body)
}

// seriesValue is the value of the series written exactly as series (-1: none).
func seriesValue(t *testing.T, body, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

// TestMetricsNamesAndKinds: job series are labelled job_name (Prometheus
// renames a job label to exported_job), delivery retries have their own
// counter apart from the rows' fates, the stage time is a histogram of the
// sampled rows, and the build is named.
func TestMetricsNamesAndKinds(t *testing.T) {
	up := newUpstreamHTTP(t, false)
	d := forwardJob(t, false, up.srv.URL, "{retry_min: 0.01s, retry_max: 0.05s}")
	srv := httptest.NewServer(NewAdmin(d.g, d.outs, nil).Handler())
	defer srv.Close()

	// One device: every row goes through one partition's executor, which
	// samples one row in 256.
	const rows = 3 * 256
	for i := 0; i < rows; i++ {
		require.NoError(t, d.send(i, "ok"))
	}
	require.Eventually(t, func() bool { return d.status(t).Retries >= 3 }, 10*time.Second, 5*time.Millisecond)
	body := scrape(t, srv.URL)
	retries := seriesValue(t, body, `millstream_output_delivery_retries_total{output="pass/out"}`)
	require.GreaterOrEqual(t, retries, 3.0, body)
	require.NotContains(t, body, `kind="retries"`, "retries are no fate of a row")
	require.Equal(t, 0.0, seriesValue(t, body, `millstream_output_rows_total{kind="delivered",output="pass/out"}`))

	up.setOnline(true)
	require.Eventually(t, func() bool { return len(up.received()) == rows }, 10*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool {
		return seriesValue(t, scrape(t, srv.URL), `millstream_output_rows_total{kind="delivered",output="pass/out"}`) == rows
	}, 5*time.Second, 10*time.Millisecond)
	body = scrape(t, srv.URL)
	require.GreaterOrEqual(t, seriesValue(t, body, `millstream_output_delivery_retries_total{output="pass/out"}`), retries, "a counter")

	// job_name, never job.
	require.Equal(t, float64(rows), seriesValue(t, body, `millstream_job_events_total{job_name="pass",kind="in"}`), body)
	require.Contains(t, body, `millstream_job_watermark_lag_seconds{job_name="pass"}`)
	require.Contains(t, body, `millstream_job_state_bytes{job_name="pass"}`)
	require.NotRegexp(t, `[{,]job="`, body)

	// The histogram: a bucket per bound and +Inf, cumulative, counting
	// the sampled rows.
	const stage = `job_name="pass",stage="select1"`
	require.Equal(t, 3.0, seriesValue(t, body, `millstream_stage_event_seconds_count{`+stage+`}`), body)
	require.Equal(t, 3.0, seriesValue(t, body, `millstream_stage_event_seconds_bucket{`+stage+`,le="+Inf"}`))
	buckets := regexp.MustCompile(`(?m)^millstream_stage_event_seconds_bucket\{`+regexp.QuoteMeta(stage)+`,le="[^"]+"\} (\S+)$`).FindAllStringSubmatch(body, -1)
	require.Len(t, buckets, len(stageBuckets)+1)
	prev := 0.0
	for _, b := range buckets {
		v, err := strconv.ParseFloat(b[1], 64)
		require.NoError(t, err)
		require.GreaterOrEqual(t, v, prev, "buckets are cumulative")
		prev = v
	}
	require.Greater(t, seriesValue(t, body, `millstream_stage_event_seconds_sum{`+stage+`}`), 0.0)
	require.Contains(t, body, "# TYPE millstream_stage_event_seconds histogram")

	// build_info: 1, with the Go version the test runs on.
	m := regexp.MustCompile(`(?m)^millstream_build_info\{goversion="([^"]+)",revision="[^"]+",version="[^"]+"\} 1$`).FindStringSubmatch(body)
	require.NotNil(t, m, "no build info in:\n%s", grepLines(body, "build_info"))
	require.Equal(t, runtime.Version(), m[1])
}

// TestStageSeriesGoWithTheirJob: a removed job's histogram series are
// deleted (a histogram keeps series until then).
func TestStageSeriesGoWithTheirJob(t *testing.T) {
	sink := &countingSink{}
	g := New(Config{Partitions: 1, BatchDelay: time.Millisecond}, Rows(sink), nil)
	srv := httptest.NewServer(NewAdmin(g, NewOutputs(nil, io.Discard), nil).Handler())
	defer srv.Close()
	code, body := do(t, http.MethodPut, srv.URL+"/v1/jobs", passJob("brief"))
	require.Equal(t, http.StatusOK, code, body)
	for i := 0; i < 256; i++ {
		require.NoError(t, g.Ingest("telemetry", "d1", []byte(`{"deviceId":"d1","v":1}`)))
	}
	require.Eventually(t, func() bool { return sink.get("brief/o") == 256 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, 1.0, seriesValue(t, scrape(t, srv.URL), `millstream_stage_event_seconds_count{job_name="brief",stage="select1"}`))
	code, body = do(t, http.MethodDelete, srv.URL+"/v1/jobs/brief", "")
	require.Equal(t, http.StatusOK, code, body)
	require.NotContains(t, scrape(t, srv.URL), `job_name="brief"`)
}

func grepLines(body, word string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
