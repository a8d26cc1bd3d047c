package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

const job = "../../deployments/jobs/temperature-filtering"

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCLIQueryRunWritesEveryOutput(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := runCLI(t, "query", "run", "--query", job+"/query.sql", "--input", "EdgeInput="+job+"/input.jsonl", "--out", dir)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stderr, "480 events in")
	for _, out := range []string{"LocalOutput", "CloudOutput"} {
		got, err := os.ReadFile(filepath.Join(dir, out+".jsonl"))
		require.NoError(t, err)
		want, err := os.ReadFile(filepath.Join(job, "expected-"+out+".jsonl"))
		require.NoError(t, err)
		require.Equal(t, strings.Count(string(want), "\n"), strings.Count(string(got), "\n"), out)
	}
}

func TestCLIExplainThenRunThePlan(t *testing.T) {
	code, plan, stderr := runCLI(t, "query", "explain", job+"/query.sql")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, plan, "TUMBLING")
	path := filepath.Join(t.TempDir(), "plan.textproto")
	require.NoError(t, os.WriteFile(path, []byte(plan), 0o644))
	dirSQL, dirPlan := t.TempDir(), t.TempDir()
	code, _, stderr = runCLI(t, "query", "run", "--query", job+"/query.sql", "--input", "EdgeInput="+job+"/input.jsonl", "--out", dirSQL)
	require.Equal(t, 0, code, stderr)
	code, _, stderr = runCLI(t, "query", "run", "--query", path, "--input", "EdgeInput="+job+"/input.jsonl", "--out", dirPlan)
	require.Equal(t, 0, code, stderr)
	for _, out := range []string{"LocalOutput.jsonl", "CloudOutput.jsonl"} {
		a, _ := os.ReadFile(filepath.Join(dirSQL, out))
		b, _ := os.ReadFile(filepath.Join(dirPlan, out))
		require.NotEmpty(t, a)
		require.Equal(t, string(a), string(b), out)
	}
}

func TestCLIQueryTestReportsPassAndFail(t *testing.T) {
	code, out, _ := runCLI(t, "query", "test", job)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "PASS temperature-filtering")

	// A broken expectation fails with a readable row diff.
	dir := t.TempDir()
	for _, f := range []string{"query.sql", "input.jsonl", "case.json", "expected-LocalOutput.jsonl"} {
		b, err := os.ReadFile(filepath.Join(job, f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "expected-CloudOutput.jsonl"), []byte(`{"deviceId":"nope","avgTemp":1,"maxTemp":1,"windowEnd":"2026-11-01T08:00:00Z"}`+"\n"), 0o644))
	code, out, _ = runCLI(t, "query", "test", dir)
	require.Equal(t, 1, code)
	require.Contains(t, out, "FAIL")
	require.Contains(t, out, `- missing:    {"deviceId":"nope"`)
	require.Contains(t, out, "+ unexpected:")
	require.Contains(t, out, "0 passed, 1 failed")
}

func TestCLIErrorsAreClear(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.sql")
	require.NoError(t, os.WriteFile(bad, []byte("SELECT a\nFROM i\nWHERE b >"), 0o644))
	code, _, stderr := runCLI(t, "query", "run", "--query", bad, "--input", job+"/input.jsonl")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "line 3, column 10")

	code, _, stderr = runCLI(t, "query", "run", "--input", "x.jsonl")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "--query is required")

	code, _, stderr = runCLI(t, "query", "run", "--query", job+"/query.sql", "--input", "EdgeInput="+job+"/input.jsonl")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "give --out DIR")

	code, _, stderr = runCLI(t, "frobnicate")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, `unknown command "frobnicate"`)
}

func TestCLIRunSingleOutputToStdoutWithDeadLetters(t *testing.T) {
	dir := t.TempDir()
	q := filepath.Join(dir, "q.sql")
	in := filepath.Join(dir, "in.jsonl")
	require.NoError(t, os.WriteFile(q, []byte("SELECT v FROM i TIMESTAMP BY t WHERE v > 1"), 0o644))
	require.NoError(t, os.WriteFile(in, []byte(`{"t":"2026-01-01T00:00:02Z","v":2}
not json
{"t":"2026-01-01T00:00:01Z","v":5}
`), 0o644))
	code, stdout, stderr := runCLI(t, "query", "run", "--query", q, "--input", in)
	require.Equal(t, 0, code, stderr)
	require.Equal(t, "{\"v\":5}\n{\"v\":2}\n", stdout, "events are fed in event-time order")
	require.Contains(t, stderr, `"reason":"value: invalid JSON`)
	require.Contains(t, stderr, "1 dead-lettered")
}

func TestCLIRunWithReferenceData(t *testing.T) {
	dir := t.TempDir()
	q := filepath.Join(dir, "q.sql")
	in := filepath.Join(dir, "in.jsonl")
	ref := filepath.Join(dir, "limits.json")
	require.NoError(t, os.WriteFile(q, []byte("SELECT i.machine, i.temp FROM i TIMESTAMP BY t JOIN limits l ON i.machine = l.machine WHERE i.temp > l.max"), 0o644))
	require.NoError(t, os.WriteFile(in, []byte(`{"t":"2026-01-01T00:00:01Z","machine":"a","temp":50}
{"t":"2026-01-01T00:00:02Z","machine":"b","temp":50}
`), 0o644))
	require.NoError(t, os.WriteFile(ref, []byte(`[{"machine":"a","max":60},{"machine":"b","max":40}]`), 0o644))
	code, stdout, stderr := runCLI(t, "query", "run", "--query", q, "--input", "i="+in, "--reference", "limits="+ref)
	require.Equal(t, 0, code, stderr)
	require.Equal(t, "{\"machine\":\"b\",\"temp\":50}\n", stdout)
}

// TestCLIDemoRunsEndToEnd runs the one-command demo for a few seconds: the
// embedded broker, simulated devices over MQTT, alerts, aggregates and the
// raw-data file, with nothing dead-lettered.
func TestCLIDemoRunsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := runCLI(t, "demo", "--duration", "3s", "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0", "--devices", "4", "--rate", "25", "--spike-every", "10", "--data", dir)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "embedded MQTT broker on tcp://127.0.0.1:")
	require.Contains(t, stdout, `"severity":"CRITICAL"`)
	require.Contains(t, stdout, `AGG {"_id":"`)
	require.Regexp(t, `stopped: \d+ events in, \d+ rows out, 0 dead-lettered`, stdout)
	raw, err := os.ReadFile(filepath.Join(dir, "raw.jsonl"))
	require.NoError(t, err)
	require.Greater(t, strings.Count(string(raw), "\n"), 50)
}

// TestCLIGatewayJobAndDeviceCommands runs a gateway from a configuration
// file and drives it with the job and device commands over its admin API.
func TestCLIGatewayJobAndDeviceCommands(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gw.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("name: gw\nmqtt_listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\npartitions: 4\n"), 0o644))
	code, stdout, stderr := runCLI(t, "gateway", "--config", cfg, "-t")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "configuration is valid")

	jobFile, err := filepath.Abs("../../deployments/jobs/temperature-filtering/job.yaml")
	require.NoError(t, err)
	t.Chdir(dir) // the job's file output is relative to the working directory
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rg, err := startGateway(ctx, mustLoadGateway(t, cfg), io.Discard, nil)
	require.NoError(t, err)
	defer rg.Close(context.Background())
	admin := "http://" + rg.AdminAddr()

	code, stdout, stderr = runCLI(t, "job", "deploy", "--admin", admin, jobFile)
	require.Equal(t, 0, code, stderr)
	require.Equal(t, "job temperature-filtering deployed\n", stdout)
	code, stdout, _ = runCLI(t, "job", "list", "--admin", admin)
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "temperature-filtering")
	code, stdout, _ = runCLI(t, "job", "explain", "--admin", admin, "temperature-filtering")
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "TUMBLING")

	require.NoError(t, rg.Runtime().Ingest("EdgeInput", "press-9", []byte(`{"deviceId":"press-9","temperature":75,"eventTime":"2026-11-23T00:00:00Z"}`)))
	require.NoError(t, rg.Runtime().Drain(ctx))
	code, stdout, _ = runCLI(t, "device", "get", "-o", "json", "--admin", admin, "press-9")
	require.Equal(t, 0, code)
	require.Contains(t, stdout, `"online":true`)
	code, stdout, stderr = runCLI(t, "device", "set-desired", "--admin", admin, "press-9", `{"interval":5}`)
	require.Equal(t, 0, code, stderr)
	code, _, stderr = runCLI(t, "device", "set-desired", "--admin", admin, "press-9", `not json`)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "400")
	code, _, _ = runCLI(t, "job", "rm", "--admin", admin, "temperature-filtering")
	require.Equal(t, 0, code)
	code, _, stderr = runCLI(t, "job", "rm", "--admin", admin, "temperature-filtering")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "404")
}

func mustLoadGateway(t *testing.T, path string) *pb.GatewayConfig {
	t.Helper()
	cfg, err := config.LoadGateway(path)
	require.NoError(t, err)
	return cfg
}
