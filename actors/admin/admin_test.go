package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/actors"
	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/internal/testutil"
	"github.com/millstream/millstream/operators/value"
	"github.com/millstream/millstream/state"
)

// rowCounts is an actors.Sink that counts rows per job/output.
type rowCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func newRowCounts() *rowCounts { return &rowCounts{n: map[string]int{}} }

func (c *rowCounts) Write(job, output string, _ int64, _ *value.Record) {
	c.mu.Lock()
	c.n[job+"/"+output]++
	c.mu.Unlock()
}

func (c *rowCounts) get(k string) int {
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
	sink := newRowCounts()
	g := actors.New(actors.Config{Partitions: 4, BatchDelay: time.Millisecond}, actors.Rows(sink), nil)
	outs := actors.NewOutputs(nil, io.Discard)
	srv := httptest.NewServer(New(g, outs, nil).Handler())
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

// TestDevicesListedByPage: GET /v1/devices pages through every device in
// id order without their payloads, each once, and refuses a bad limit.
func TestDevicesListedByPage(t *testing.T) {
	g := actors.New(actors.Config{Partitions: 4}, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer g.Close(ctx)
	job, err := config.ParseJob("j.yaml", []byte("name: j\nquery: SELECT * INTO o FROM telemetry\ninputs: [{name: telemetry}]\noutputs: [{name: o, log: {}}]\n"))
	require.NoError(t, err)
	require.NoError(t, g.Deploy(ctx, job))
	var want []string
	for i := 0; i < 237; i++ {
		dev := fmt.Sprintf("dev-%03d", i)
		want = append(want, dev)
		require.NoError(t, g.Ingest("telemetry", dev, []byte(`{"big":"`+strings.Repeat("x", 1000)+`"}`)))
	}
	require.NoError(t, g.Drain(ctx))
	srv := httptest.NewServer(New(g, actors.NewOutputs(nil, io.Discard), nil).Handler())
	defer srv.Close()
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		resp, err := http.Get(srv.URL + "/v1/devices?limit=50&after=" + after)
		require.NoError(t, err)
		var page struct {
			Devices []actors.Device `json:"devices"`
			Next    string          `json:"next"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&page))
		resp.Body.Close()
		for _, d := range page.Devices {
			require.Empty(t, d.Reported, "listings leave the payload out")
			got = append(got, d.ID)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	require.Equal(t, want, got)
	resp, err := http.Get(srv.URL + "/v1/devices?limit=0")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

// upstream is an HTTP receiver of output rows that refuses them (503)
// until it is set online.
type upstream struct {
	srv    *httptest.Server
	online atomic.Bool
	rows   atomic.Int64
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !u.online.Load() {
			http.Error(w, "offline", http.StatusServiceUnavailable)
			return
		}
		u.rows.Add(int64(strings.Count(string(body), `"deviceId"`)))
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// durableForward is a durable gateway (a store, an outbox) with job pass
// forwarding every reading to url, served by an admin API.
func durableForward(t *testing.T, url string) (*actors.Gateway, string) {
	t.Helper()
	job, err := config.ParseJob("job.yaml", []byte(fmt.Sprintf(`name: pass
query: SELECT deviceId, n INTO out FROM readings
inputs: [{name: readings}]
outputs:
  - name: out
    http: {url: %q}
    delivery: {retry_min: 0.01s, retry_max: 0.05s}
`, url)))
	require.NoError(t, err)
	st, err := state.Open(filepath.Join(t.TempDir(), "state"), state.Config{Partitions: 2})
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	outs := actors.NewOutputs(nil, io.Discard)
	outs.EnableOutbox(st, logger)
	g := actors.New(actors.Config{Partitions: 2, Tick: time.Hour, SyncInterval: time.Microsecond, Store: st, Logger: logger}, outs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, outs.Configure(job))
	require.NoError(t, g.Deploy(ctx, job))
	require.NoError(t, g.Recover(ctx))
	srv := httptest.NewServer(New(g, outs, nil).Handler())
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, g.Close(ctx))
		require.NoError(t, outs.Close())
		require.NoError(t, st.Close())
	})
	return g, srv.URL
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	code, body := do(t, http.MethodGet, url+"/metrics", "")
	require.Equal(t, http.StatusOK, code, body)
	return body
}

// TestMetricsNamesAndKinds: job series are labelled job_name (Prometheus
// renames a job label to exported_job), delivery retries have their own
// counter apart from the rows' fates, the runtime's own collectors are
// served (actors tests their series), and the build is named.
func TestMetricsNamesAndKinds(t *testing.T) {
	up := newUpstream(t)
	g, url := durableForward(t, up.srv.URL)
	const rows = 20
	for i := 0; i < rows; i++ {
		require.NoError(t, g.Ingest("readings", "dev-1", []byte(fmt.Sprintf(`{"deviceId":"dev-1","n":%d}`, i))))
	}
	const retriesSeries = `millstream_output_delivery_retries_total{output="pass/out"}`
	require.Eventually(t, func() bool { return testutil.SeriesValue(t, scrape(t, url), retriesSeries) >= 3 }, 10*time.Second, 5*time.Millisecond)
	body := scrape(t, url)
	retries := testutil.SeriesValue(t, body, retriesSeries)
	require.NotContains(t, body, `kind="retries"`, "retries are no fate of a row")
	require.Equal(t, 0.0, testutil.SeriesValue(t, body, `millstream_output_rows_total{kind="delivered",output="pass/out"}`))

	up.online.Store(true)
	require.Eventually(t, func() bool {
		return testutil.SeriesValue(t, scrape(t, url), `millstream_output_rows_total{kind="delivered",output="pass/out"}`) == rows
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, int64(rows), up.rows.Load())
	body = scrape(t, url)
	require.GreaterOrEqual(t, testutil.SeriesValue(t, body, retriesSeries), retries, "a counter")

	// job_name, never job.
	require.Equal(t, float64(rows), testutil.SeriesValue(t, body, `millstream_job_events_total{job_name="pass",kind="in"}`), body)
	require.Contains(t, body, `millstream_job_watermark_lag_seconds{job_name="pass"}`)
	require.Contains(t, body, `millstream_job_state_bytes{job_name="pass"}`)
	require.NotRegexp(t, `[{,]job="`, body)
	require.Contains(t, body, `millstream_state_events_total{kind="checkpoints"}`)
	require.Contains(t, body, "millstream_ingest_log_commit_seconds_count", "the runtime's own collectors")
	require.Contains(t, body, "millstream_disk_guard_refusing 0")

	// build_info: 1, with the Go version the test runs on.
	m := regexp.MustCompile(`(?m)^millstream_build_info\{goversion="([^"]+)",revision="[^"]+",version="[^"]+"\} 1$`).FindStringSubmatch(body)
	require.NotNil(t, m, "no build info in:\n%s", grepLines(body, "build_info"))
	require.Equal(t, runtime.Version(), m[1])

	code, body := do(t, http.MethodGet, url+"/v1/state", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"durable":true`)
	code, body = do(t, http.MethodGet, url+"/v1/outputs/pass/out/deadletters", "")
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"output":"pass/out","rows":[]}`, body)
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
