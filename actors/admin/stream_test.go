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
// streams, at most MaxConsoleStreamsPerCaller per token, and refuses one
// more with 503 and Retry-After; a HEAD (which would hold a slot and get
// no frame) and a request from another site are refused; CloseStreams
// (the server shutting down) ends them all and refuses new ones.
func TestConsoleStreamLimitAndClose(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	var lines string
	for _, n := range []string{"a", "b", "c"} {
		lines += n + " " + RoleRead + " " + HashToken("mst_"+n) + "\n"
	}
	require.NoError(t, os.WriteFile(tokens, []byte(lines), 0o600))
	_, a, srv := memGateway(t, &Security{TokensFile: tokens})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var open []*bufio.Reader
	take := func(tok string) {
		resp := openStream(t, ctx, srv.URL, tok)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		r := bufio.NewReader(resp.Body)
		require.Equal(t, "snapshot", readEvent(t, r).name)
		open = append(open, r)
	}
	refused := func(tok, why string) {
		resp := openStream(t, ctx, srv.URL, tok)
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, why)
		require.Equal(t, "5", resp.Header.Get("Retry-After"))
	}
	for range MaxConsoleStreamsPerCaller {
		take("mst_a")
	}
	refused("mst_a", "one caller holds its share")
	for len(open) < MaxConsoleStreams {
		if len(open) < 2*MaxConsoleStreamsPerCaller {
			take("mst_b")
		} else {
			take("mst_c")
		}
	}
	refused("mst_c", "every slot is taken")

	req, err := http.NewRequestWithContext(ctx, http.MethodHead, srv.URL+"/v1/console/stream", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer mst_c")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	req, err = http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/console/stream", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer mst_c")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "an iframe of another site")

	a.CloseStreams()
	for _, r := range open {
		_, err := io.ReadAll(r)
		require.NoError(t, err, "a stream ends cleanly when the server closes")
	}
	require.Eventually(t, func() bool { return a.streams.Open() == 0 }, 5*time.Second, 10*time.Millisecond)
	refused("mst_a", "closed")
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
	require.True(t, strings.HasPrefix(got.Error, "request body: "), "no made-up file name: %s", got.Error)

	// An error without a place (no name) has no line or column.
	code, text := do(t, http.MethodPut, srv.URL+"/v1/jobs", "query: SELECT 1 INTO o FROM i\n")
	require.Equal(t, http.StatusBadRequest, code)
	require.NotContains(t, text, `"line"`)
}

// TestConsoleSnapshotLeavesOutDeviceData: a snapshot lists devices by id
// and counters only; payloads, twins and desired properties (up to 256
// KiB each) come with GET /v1/devices/{id}, so a frame stays small.
func TestConsoleSnapshotLeavesOutDeviceData(t *testing.T) {
	g, a, srv := memGateway(t, nil)
	code, body := do(t, http.MethodPut, srv.URL+"/v1/jobs", passJob("pass"))
	require.Equal(t, http.StatusOK, code, body)
	require.NoError(t, g.Ingest("telemetry", "press-0", []byte(`{"deviceId":"press-0","v":1}`)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, g.Drain(ctx))
	code, body = do(t, http.MethodPut, srv.URL+"/v1/devices/press-0/desired", `{"interval":5}`)
	require.Equal(t, http.StatusOK, code, body)
	s := a.buildSnapshot(ctx)
	require.Len(t, s.Devices, 1)
	require.Equal(t, "press-0", s.Devices[0].ID)
	require.Nil(t, s.Devices[0].Reported)
	require.Nil(t, s.Devices[0].Desired)
	code, body = do(t, http.MethodGet, srv.URL+"/v1/devices/press-0", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"desired":{"interval":5}`, "the device's own answer has them")
}

// TestDeletedTokensFileRevokesEveryToken: taking the tokens file away
// refuses every token (it used to leave them all in force, silently);
// putting it back restores them.
func TestDeletedTokensFileRevokesEveryToken(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	line := "viewer " + RoleRead + " " + HashToken("mst_read") + "\n"
	require.NoError(t, os.WriteFile(tokens, []byte(line), 0o600))
	_, _, srv := memGateway(t, &Security{TokensFile: tokens})
	get := func() int {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/v1/jobs", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer mst_read")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, get())
	require.NoError(t, os.Remove(tokens))
	require.Eventually(t, func() bool { return get() == http.StatusUnauthorized }, 10*time.Second, 100*time.Millisecond)
	require.NoError(t, os.WriteFile(tokens, []byte(line), 0o600))
	require.Eventually(t, func() bool { return get() == http.StatusOK }, 10*time.Second, 100*time.Millisecond)
}
