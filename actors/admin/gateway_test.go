package admin

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/actors"
)

// fakeGateway serves the routes under test without a runtime: the methods
// it does not override panic (the embedded nil Gateway), so a route that
// reaches further than it should fails the test.
type fakeGateway struct {
	Gateway
	status  actors.GatewayStatus
	desired map[string]string
}

func (f *fakeGateway) Status() actors.GatewayStatus       { return f.status }
func (f *fakeGateway) Collectors() []prometheus.Collector { return nil }
func (f *fakeGateway) Logger() *slog.Logger               { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (f *fakeGateway) SetDesired(_ context.Context, id string, desired []byte) error {
	if string(desired) == "[1]" {
		return actors.ErrBadRequest
	}
	f.desired[id] = string(desired)
	return nil
}

// InvokeMethod answers by the method's name: ok, or one of the errors.
func (f *fakeGateway) InvokeMethod(_ context.Context, id, method string, payload []byte, timeout time.Duration) (actors.MethodResult, error) {
	switch method {
	case "offline":
		return actors.MethodResult{}, actors.ErrDeviceNotOnline
	case "slow":
		return actors.MethodResult{}, actors.ErrMethodTimeout
	case "busy":
		return actors.MethodResult{}, actors.ErrMethodsBusy
	case "bad":
		return actors.MethodResult{}, actors.ErrBadRequest
	}
	return actors.MethodResult{Status: 200, Payload: []byte(fmt.Sprintf(`{"id":%q,"got":%s,"timeout":%q}`, id, payload, timeout))}, nil
}

func (f *fakeGateway) Device(_ context.Context, id string) (actors.Device, error) {
	return actors.Device{}, actors.ErrUnknownDevice
}

// TestAdminRoutesOnAFakeGateway: the API's answers come from the Gateway
// interface alone: readiness and its reasons, the device routes' status
// codes, and the 404s of a gateway without a store or a cluster.
func TestAdminRoutesOnAFakeGateway(t *testing.T) {
	f := &fakeGateway{desired: map[string]string{}, status: actors.GatewayStatus{Recovering: true, DiskRefusal: "store over max_store_bytes"}}
	a := New(f, actors.NewOutputs(nil, io.Discard), nil)
	a.AddReadiness("input", func() string { return "input broker unreachable: tcp://b:1883" })
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()

	code, body := do(t, http.MethodGet, srv.URL+"/readyz", "")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not ready: recovering state (replaying the ingest log); disk: refusing input: store over max_store_bytes; input: input broker unreachable: tcp://b:1883\n", body)
	code, body = do(t, http.MethodGet, srv.URL+"/readyz?exclude=disk&exclude=input", "")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not ready: recovering state (replaying the ingest log)\n", body)
	f.status = actors.GatewayStatus{Closing: true, Recovering: true}
	_, body = do(t, http.MethodGet, srv.URL+"/readyz?exclude=input", "")
	require.Equal(t, "not ready: closing\n", body)
	f.status = actors.GatewayStatus{}
	code, body = do(t, http.MethodGet, srv.URL+"/readyz?exclude=input", "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ready\n", body)

	code, _ = do(t, http.MethodPut, srv.URL+"/v1/devices/d2/desired", `{"fan":"high"}`)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, `{"fan":"high"}`, f.desired["d2"])
	code, _ = do(t, http.MethodPut, srv.URL+"/v1/devices/d2/desired", `[1]`)
	require.Equal(t, http.StatusBadRequest, code)
	code, _ = do(t, http.MethodPut, srv.URL+"/v1/devices/a+b/desired", `{}`)
	require.Equal(t, http.StatusBadRequest, code, "a wildcard in the id")
	code, _ = do(t, http.MethodGet, srv.URL+"/v1/devices/nope", "")
	require.Equal(t, http.StatusNotFound, code)

	code, body = do(t, http.MethodPost, srv.URL+"/v1/devices/d2/methods/reboot?timeout=5s", `{"delay":1}`)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"status":200,"payload":{"id":"d2","got":{"delay":1},"timeout":"5s"}}`, body)
	for method, want := range map[string]int{"offline": http.StatusNotFound, "slow": http.StatusGatewayTimeout, "busy": http.StatusTooManyRequests,
		"bad": http.StatusBadRequest} {
		code, body = do(t, http.MethodPost, srv.URL+"/v1/devices/d2/methods/"+method, `{}`)
		require.Equal(t, want, code, "%s: %s", method, body)
	}
	for _, q := range []string{"?timeout=soon", "?timeout=-1s", "?timeout=0s"} {
		code, _ = do(t, http.MethodPost, srv.URL+"/v1/devices/d2/methods/reboot"+q, `{}`)
		require.Equal(t, http.StatusBadRequest, code, q)
	}
	code, _ = do(t, http.MethodPost, srv.URL+"/v1/devices/a+b/methods/reboot", `{}`)
	require.Equal(t, http.StatusBadRequest, code, "a wildcard in the id")

	code, body = do(t, http.MethodGet, srv.URL+"/v1/state", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"durable":false`)
	for _, path := range []string{"/v1/deadletters", "/v1/cluster"} {
		code, _ = do(t, http.MethodGet, srv.URL+path, "")
		require.Equal(t, http.StatusNotFound, code, path)
	}
	// An output's refused rows are kept in memory too (the in-memory outbox).
	code, body = do(t, http.MethodGet, srv.URL+"/v1/outputs/j/o/deadletters", "")
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"output":"j/o","rows":[]}`, body)
}
