package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/millstream/millstream/actors"
	"github.com/millstream/millstream/internal/console"
)

// sseEvent is one Server-Sent Event.
type sseEvent struct{ name, data string }

// openStream opens GET /v1/console/stream with an optional bearer token;
// the response is closed at cleanup.
func openStream(t *testing.T, ctx context.Context, url, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/console/stream", nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// readEvent reads the next event of a stream.
func readEvent(t *testing.T, r *bufio.Reader) sseEvent {
	t.Helper()
	var ev sseEvent
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err, "the stream ended")
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			return ev
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data += strings.TrimPrefix(line, "data: ")
		}
	}
}

// memGateway serves the API of an in-memory gateway, secured by sec
// when it is not nil.
func memGateway(t *testing.T, sec *Security) (*actors.Gateway, *API, *httptest.Server) {
	t.Helper()
	g := actors.New(actors.Config{Partitions: 2, BatchDelay: time.Millisecond}, actors.Rows(newRowCounts()), nil)
	outs := actors.NewOutputs(nil, io.Discard)
	a := New(g, outs, nil)
	if sec != nil {
		require.NoError(t, a.Secure(*sec))
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		a.CloseStreams()
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, g.Close(ctx))
		require.NoError(t, outs.Close())
	})
	return g, a, srv
}

// TestConsoleStreamSnapshots: the live stream sends a snapshot at once
// and every second, with each job's counters moving as events arrive and
// the devices it saw; when the client goes its handler ends, leaving no
// goroutine behind.
func TestConsoleStreamSnapshots(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	// Registered first, so it runs last: after the server, the gateway
	// and the client's idle connections are closed.
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		goleak.VerifyNone(t, leaks)
	})
	g, a, srv := memGateway(t, nil)
	code, body := do(t, http.MethodPut, srv.URL+"/v1/jobs", passJob("pass"))
	require.Equal(t, http.StatusOK, code, body)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := openStream(t, ctx, srv.URL, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	r := bufio.NewReader(resp.Body)

	var first snapshot
	ev := readEvent(t, r)
	require.Equal(t, "snapshot", ev.name)
	require.NoError(t, json.Unmarshal([]byte(ev.data), &first))
	require.Len(t, first.Jobs, 1)
	require.Equal(t, "pass", first.Jobs[0].Name)
	require.Equal(t, []string{"telemetry"}, first.Jobs[0].Inputs)
	require.Zero(t, first.Jobs[0].EventsIn)

	for i := range 5 {
		require.NoError(t, g.Ingest("telemetry", fmt.Sprintf("press-%d", i), []byte(fmt.Sprintf(`{"deviceId":"press-%d","v":%d}`, i, i))))
	}
	require.NoError(t, g.Drain(ctx))
	var later snapshot
	deadline := time.Now().Add(10 * time.Second)
	for later.Gateway.EventsIn < 5 || len(later.Jobs) == 0 || later.Jobs[0].EventsOut < 5 {
		require.True(t, time.Now().Before(deadline), "the stream never showed the 5 events: %+v", later)
		ev = readEvent(t, r)
		require.NoError(t, json.Unmarshal([]byte(ev.data), &later))
	}
	require.Greater(t, later.Time, first.Time)
	require.EqualValues(t, 5, later.Jobs[0].EventsIn)
	require.Len(t, later.Devices, 5)
	require.Equal(t, "press-0", later.Devices[0].ID)
	require.Nil(t, later.Devices[0].Reported, "payloads stay out of the snapshot")
	require.Empty(t, later.Gateway.NotReady)

	cancel()
	require.Eventually(t, func() bool { return a.streams.Open() == 0 }, 5*time.Second, 10*time.Millisecond,
		"the stream's handler runs on after its client went")
}

// TestConsoleStreamLimitAndClose: a gateway serves MaxConsoleStreams
// streams and refuses one more with 503 and Retry-After; CloseStreams
// (the server shutting down) ends them all and refuses new ones.
func TestConsoleStreamLimitAndClose(t *testing.T) {
	_, a, srv := memGateway(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var open []*bufio.Reader
	for range MaxConsoleStreams {
		resp := openStream(t, ctx, srv.URL, "")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		r := bufio.NewReader(resp.Body)
		require.Equal(t, "snapshot", readEvent(t, r).name)
		open = append(open, r)
	}
	resp := openStream(t, ctx, srv.URL, "")
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "5", resp.Header.Get("Retry-After"))

	a.CloseStreams()
	for _, r := range open {
		_, err := io.ReadAll(r)
		require.NoError(t, err, "a stream ends cleanly when the server closes")
	}
	require.Eventually(t, func() bool { return a.streams.Open() == 0 }, 5*time.Second, 10*time.Millisecond)
	resp = openStream(t, ctx, srv.URL, "")
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
}

// TestConsoleAuth: with tokens on, the console's own files are served
// without credentials (with their security headers), but no data is:
// neither the API nor the live stream, nor a path that only looks like a
// console file; a read token opens the stream, and taking the token out
// of the tokens file ends that stream with an "end" event.
func TestConsoleAuth(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	line := func(name, role, tok string) string { return name + " " + role + " " + HashToken(tok) + "\n" }
	require.NoError(t, os.WriteFile(tokens, []byte(line("viewer", RoleRead, "mst_read")+line("ops", RoleOperate, "mst_op")), 0o600))
	_, _, srv := memGateway(t, &Security{TokensFile: tokens})

	for _, path := range []string{"/", "/console/app.js", "/console/style.css"} {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.Equal(t, console.SecurityPolicy, resp.Header.Get("Content-Security-Policy"), path)
		require.Contains(t, resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), path)
	}
	for _, path := range []string{"/v1/jobs", "/v1/console/stream", "/console/../v1/jobs", "/console/nope.js", "/console/static/app.js", "/index.html", "/metrics"} {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s: %s", path, body)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	req.Header.Set("Host", "evil.example")
	req.Host = "evil.example"
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMisdirectedRequest, resp.StatusCode, "the Host check holds for the console's files too")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp = openStream(t, ctx, srv.URL, "mst_nope")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp = openStream(t, ctx, srv.URL, "mst_read")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	r := bufio.NewReader(resp.Body)
	require.Equal(t, "snapshot", readEvent(t, r).name)

	// The tokens file is read again at most every 2 s, when it changed.
	require.NoError(t, os.WriteFile(tokens, []byte(line("ops", RoleOperate, "mst_op")), 0o600))
	deadline := time.Now().Add(10 * time.Second)
	for {
		require.True(t, time.Now().Before(deadline), "the revoked token's stream went on")
		ev := readEvent(t, r)
		if ev.name == "end" {
			require.Contains(t, ev.data, "unknown bearer token")
			break
		}
	}
	_, err = io.ReadAll(r)
	require.NoError(t, err)
}

// TestConsoleDeployErrorHasPosition: a job refused for its query's
// syntax says where, as numbers the editor can mark, besides the message.
func TestConsoleDeployErrorHasPosition(t *testing.T) {
	_, _, srv := memGateway(t, nil)
	job := map[string]any{"name": "bad", "query": "SELECT deviceId,\n  v\nFROM telemetry WHERE v > > 1\n",
		"inputs": []any{map[string]any{"name": "telemetry"}}, "outputs": []any{map[string]any{"name": "o", "log": map[string]any{}}}}
	body, _ := json.Marshal(job)
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v1/jobs", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	var got queryError
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	require.Equal(t, 3, got.Line, got.Error)
	require.Equal(t, 26, got.Column, got.Error)
	require.Contains(t, got.Error, "line 3, column 26")

	// An error without a place (no name) has no line or column.
	code, text := do(t, http.MethodPut, srv.URL+"/v1/jobs", "query: SELECT 1 INTO o FROM i\n")
	require.Equal(t, http.StatusBadRequest, code)
	require.NotContains(t, text, `"line"`)
}
