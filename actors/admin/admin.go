package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/millstream/millstream/actors"
	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/internal/console"
	"github.com/millstream/millstream/operators/sql"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// API serves the gateway's HTTP API:
//
//	GET    /v1/jobs              list jobs (JSON)
//	PUT    /v1/jobs              deploy a job (YAML, JSON or text proto body)
//	GET    /v1/jobs/{name}       the job and its counters
//	GET    /v1/jobs/{name}/plan  the plan as text proto
//	DELETE /v1/jobs/{name}       remove the job
//	GET    /v1/devices           devices and their twins
//	GET    /v1/devices/{id}      one device
//	PUT    /v1/devices/{id}/desired  set desired properties (JSON object)
//	GET    /v1/outputs           each output's outbox: backlog, delivered, expired, dropped, dead letters
//	GET    /v1/outputs/{job}/{output}/deadletters  rows the sink refused for good
//	GET    /v1/deadletters       input and rows the jobs refused, newest first (?limit=&before=)
//	GET    /v1/state             durable state counters (checkpoints, replay, duplicates)
//	GET    /v1/cluster           members, each partition's owner, replicas, server, epoch, replication lag
//	GET    /metrics              Prometheus metrics
//	GET    /healthz, /readyz     liveness and readiness
//	GET    /debug/pprof/...      Go profiles (only with Security.Pprof)
//	GET    /, /console/{file}    the web console's page and files (internal/console)
//	GET    /v1/console/stream    the console's live snapshots (Server-Sent Events, stream.go)
//
// Deploying applies the job without restarting the gateway; other jobs are
// undisturbed. Who may call what is Security's (Secure); job definitions
// come back with their HTTP output header values redacted.
//
// Configure an API (SetCluster, SetDeadLetters, AddReadiness, Register,
// Secure) before Handler, from one goroutine; the handler is then safe for
// concurrent use.
type API struct {
	g       Gateway
	outs    Outputs
	broker  *actors.Broker // nil: no embedded broker
	reg     *prometheus.Registry
	cluster Cluster
	dead    *actors.DeadLetters
	checks  []readinessCheck
	guard   *guard
	refused *prometheus.CounterVec
	snap    snapshotCache // the console's last snapshot (snapshot.go)
	streams *streamSet    // the console's live streams (stream.go)
}

// Cluster is the cluster layer's share of the admin API: a job
// deployed or removed through any gateway is deployed or removed on all.
type Cluster interface {
	DeployJob(ctx context.Context, job *pb.Job) error
	RemoveJob(ctx context.Context, name string) error
	// Status is the cluster as this gateway sees it (JSON-encodable).
	Status() any
	// Forget stops counting a gateway gone for good for the majority, on
	// every gateway; known: this gateway counted it. actors.ErrBadRequest
	// for a live one.
	Forget(gateway string) (known bool, err error)
}

// SetCluster routes job changes through the cluster (before Handler).
func (a *API) SetCluster(c Cluster) { a.cluster = c }

// New builds the API for a gateway, its outputs and (optional, nil for
// none) embedded broker.
func New(g Gateway, outs Outputs, broker *actors.Broker) *API {
	a := &API{g: g, outs: outs, broker: broker, reg: prometheus.NewRegistry(), streams: newStreamSet(),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "millstream_admin_refused_total",
			Help: "Admin API requests and connections refused, by reason: host (unknown Host, DNS rebinding), origin (cross-origin), unauthenticated, forbidden (role), content_type (a body type browsers send cross-origin), tls_handshake (no client certificate of the CA, plain HTTP, old TLS)."},
			[]string{"reason"})}
	a.reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}), &gatewayCollector{a: a}, a.refused, buildInfo())
	a.reg.MustRegister(g.Collectors()...)
	// Without Secure: no authentication, but the Host, Origin and body
	// type checks hold, and no profiles.
	a.guard, _ = newGuard(Security{}, g.Logger(), a.refused)
	if broker != nil {
		a.reg.MustRegister(broker)
	}
	return a
}

// Secure sets who may call the API (before Handler). It reads the tokens
// file.
func (a *API) Secure(sec Security) error {
	gd, err := newGuard(sec, a.g.Logger(), a.refused)
	if err != nil {
		return err
	}
	a.guard = gd
	return nil
}

// Handler returns the HTTP handler.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/jobs", a.listJobs)
	mux.HandleFunc("PUT /v1/jobs", a.deployJob)
	mux.HandleFunc("POST /v1/jobs", a.deployJob)
	mux.HandleFunc("GET /v1/jobs/{name}", a.getJob)
	mux.HandleFunc("GET /v1/jobs/{name}/plan", a.getPlan)
	mux.HandleFunc("DELETE /v1/jobs/{name}", a.removeJob)
	mux.HandleFunc("GET /v1/devices", a.listDevices)
	mux.HandleFunc("GET /v1/devices/{id}", a.getDevice)
	mux.HandleFunc("PUT /v1/devices/{id}/desired", a.setDesired)
	mux.HandleFunc("POST /v1/devices/{id}/methods/{method}", a.invokeMethod)
	mux.HandleFunc("GET /v1/outputs", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"outputs": a.outs.Status()})
	})
	mux.HandleFunc("GET /v1/outputs/{job}/{output}/deadletters", a.deadLetters)
	mux.HandleFunc("GET /v1/deadletters", a.listDeadLetters)
	mux.HandleFunc("GET /v1/state", func(w http.ResponseWriter, _ *http.Request) {
		st := a.g.Status()
		writeJSON(w, http.StatusOK, map[string]any{"durable": st.Durable, "stats": st.DurableStats})
	})
	mux.HandleFunc("POST /v1/cluster/forget/{gateway}", a.forgetGateway)
	mux.HandleFunc("GET /v1/cluster", func(w http.ResponseWriter, _ *http.Request) {
		if a.cluster == nil {
			writeJSON(w, http.StatusNotFound, apiError{"this gateway is not in a cluster (no cluster section in its configuration)"})
			return
		}
		writeJSON(w, http.StatusOK, a.cluster.Status())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	if a.guard.sec.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/heap", pprof.Index)
	}
	mux.Handle("GET /{$}", console.Handler())
	mux.Handle("GET /console/", console.Handler())
	mux.HandleFunc("GET /v1/console/stream", a.consoleStream)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", a.readyz)
	return a.guard.wrap(mux)
}

type apiError struct {
	Error string `json:"error"`
}

// queryError is a refused deploy whose query has an error at a place:
// the console's editor marks that line and column.
type queryError struct {
	Error  string `json:"error"`
	Line   int    `json:"line"`   // 1-based line of the query text
	Column int    `json:"column"` // 1-based column on that line
}

// deployError is the answer to a job that does not parse or check: with
// the position of the query's first error when it has one.
// deployError is the answer to a job that does not parse; name is the
// made-up file name that chose its format, which the message does not
// show (there is no such file: it is the request's body). A query error
// keeps its line and column, within the query.
func deployError(err error, name string) any {
	msg := strings.Replace(err.Error(), name+": ", "request body: ", 1)
	var qe *sql.Error
	if errors.As(err, &qe) && qe.Pos.Line > 0 {
		return queryError{Error: msg, Line: qe.Pos.Line, Column: qe.Pos.Col}
	}
	return apiError{msg}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *API) listJobs(w http.ResponseWriter, r *http.Request) {
	type item struct {
		Name    string   `json:"name"`
		Inputs  []string `json:"inputs"`
		Outputs []string `json:"outputs"`
		actors.JobStatus
	}
	var items []item
	statuses := a.g.JobStatuses()
	for _, j := range a.g.Jobs() {
		it := item{Name: j.Name, JobStatus: statuses[j.Name]}
		for _, in := range j.Inputs {
			it.Inputs = append(it.Inputs, in.Name)
		}
		for _, o := range j.Outputs {
			it.Outputs = append(it.Outputs, o.Name)
		}
		items = append(items, it)
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": items})
}

func (a *API) deployJob(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
		return
	}
	name := "job.yaml"
	switch ct := r.Header.Get("Content-Type"); {
	case strings.Contains(ct, "json"):
		name = "job.json"
	case strings.Contains(ct, "textproto"), strings.Contains(ct, "protobuf-text"):
		name = "job.textproto"
	}
	job, err := config.ParseJob(name, body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, deployError(err, name))
		return
	}
	// Configure checks files and secrets before it changes anything, so
	// a refused job leaves the running one, its outputs and files as
	// they were.
	if err := a.outs.Configure(job); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	deploy := a.g.Deploy
	if a.cluster != nil {
		deploy = a.cluster.DeployJob
	}
	if err := deploy(ctx, job); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"deployed": job.Name})
}

func (a *API) getJob(w http.ResponseWriter, r *http.Request) {
	job, _, ok := a.g.Job(r.PathValue("name"))
	if !ok {
		writeJSON(w, http.StatusNotFound, apiError{fmt.Sprintf("no job %q", r.PathValue("name"))})
		return
	}
	progress, err := a.g.JobProgress(r.Context())
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{err.Error()})
		return
	}
	raw, _ := protojson.Marshal(redactJob(job))
	writeJSON(w, http.StatusOK, map[string]any{"job": json.RawMessage(raw), "counters": progress.Counters[job.Name], "status": a.g.JobStatuses()[job.Name]})
}

func (a *API) getPlan(w http.ResponseWriter, r *http.Request) {
	_, p, ok := a.g.Job(r.PathValue("name"))
	if !ok {
		writeJSON(w, http.StatusNotFound, apiError{fmt.Sprintf("no job %q", r.PathValue("name"))})
		return
	}
	out, _ := prototext.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(p)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(out)
}

func (a *API) deadLetters(w http.ResponseWriter, r *http.Request) {
	key := strings.ToLower(r.PathValue("job") + "/" + r.PathValue("output"))
	payloads, err := a.outs.DeadLetters(key, 1000)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{err.Error()})
		return
	}
	rows := make([]json.RawMessage, 0, len(payloads))
	for _, p := range payloads {
		if json.Valid(p) {
			rows = append(rows, p)
		} else {
			q, _ := json.Marshal(string(p))
			rows = append(rows, q)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"output": key, "rows": rows})
}

func (a *API) forgetGateway(w http.ResponseWriter, r *http.Request) {
	if a.cluster == nil {
		writeJSON(w, http.StatusNotFound, apiError{"this gateway is not clustered"})
		return
	}
	name := r.PathValue("gateway")
	known, err := a.cluster.Forget(name)
	switch {
	case errors.Is(err, actors.ErrBadRequest):
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, apiError{err.Error()})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"forgotten": name, "wasCounted": known})
	}
}

func (a *API) removeJob(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	remove := a.g.Remove
	if a.cluster != nil {
		remove = a.cluster.RemoveJob
	}
	err := remove(ctx, r.PathValue("name"))
	switch {
	case errors.Is(err, actors.ErrUnknownJob):
		writeJSON(w, http.StatusNotFound, apiError{err.Error()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, apiError{err.Error()})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"removed": r.PathValue("name")})
	}
}

// Bounds of a page of GET /v1/devices: a gateway may know a million
// devices, and each carries its last payload.
const (
	defaultDevicePage = 500
	maxDevicePage     = 5000
)

// listDevices answers GET /v1/devices?limit=N&after=ID: devices in id
// order, a page at a time, without their last payload (GET
// /v1/devices/{id} has it); "next" is the after= of the following page.
func (a *API) listDevices(w http.ResponseWriter, r *http.Request) {
	limit := defaultDevicePage
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxDevicePage {
			writeJSON(w, http.StatusBadRequest, apiError{fmt.Sprintf("limit must be a number from 1 to %d", maxDevicePage)})
			return
		}
		limit = n
	}
	devs, err := a.g.DevicesPage(r.Context(), r.URL.Query().Get("after"), limit+1)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{err.Error()})
		return
	}
	out := map[string]any{}
	if len(devs) > limit {
		devs = devs[:limit]
		out["next"] = devs[limit-1].ID
	}
	for i := range devs {
		devs[i].Reported = nil
	}
	out["devices"] = devs
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getDevice(w http.ResponseWriter, r *http.Request) {
	d, err := a.g.Device(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, actors.ErrUnknownDevice):
		writeJSON(w, http.StatusNotFound, apiError{err.Error()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, apiError{err.Error()})
	default:
		writeJSON(w, http.StatusOK, d)
	}
}

// redactJob is a copy of job with its secrets hidden (actors.RedactHeaders).
func redactJob(job *pb.Job) *pb.Job {
	c := proto.Clone(job).(*pb.Job)
	for _, o := range c.Outputs {
		if h := o.GetHttp(); h != nil {
			h.Headers = actors.RedactHeaders(h.Headers)
		}
	}
	return c
}

// validDeviceID refuses a device id (URL-decoded already) that would
// leave devices/{id}/twin/desired: a topic level separator or wildcard
// would publish to other devices' topics.
func validDeviceID(id string) error {
	if id == "" || strings.ContainsAny(id, "/+#\x00") {
		return fmt.Errorf("%w: device id %q: it must be non-empty and hold no '/', '+', '#' or NUL", actors.ErrBadRequest, id)
	}
	return nil
}

func (a *API) setDesired(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := validDeviceID(id)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(io.LimitReader(r.Body, 256<<10))
	}
	if err == nil {
		err = a.g.SetDesired(r.Context(), id, body)
	}
	switch {
	case errors.Is(err, actors.ErrBadRequest):
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
	case errors.Is(err, actors.ErrNotReady), errors.Is(err, actors.ErrClosed):
		writeJSON(w, http.StatusServiceUnavailable, apiError{err.Error()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, apiError{err.Error()})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"desired": r.PathValue("id")})
	}
}

// invokeMethod calls a direct method on a device and answers with the
// device's status and payload: POST /v1/devices/{id}/methods/{method}
// ?timeout=30s, the request body the method's JSON payload.
func (a *API) invokeMethod(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := validDeviceID(id)
	var timeout time.Duration
	if v := r.URL.Query().Get("timeout"); err == nil && v != "" {
		if timeout, err = time.ParseDuration(v); err != nil || timeout <= 0 {
			err = fmt.Errorf("%w: timeout %q: want a duration such as 30s, up to %v", actors.ErrBadRequest, v, actors.MaxMethodTimeout)
		}
	}
	var body []byte
	if err == nil {
		body, err = io.ReadAll(io.LimitReader(r.Body, actors.MaxMethodPayload+1))
	}
	var res actors.MethodResult
	if err == nil {
		res, err = a.g.InvokeMethod(r.Context(), id, r.PathValue("method"), body, timeout)
	}
	switch {
	case errors.Is(err, actors.ErrBadRequest):
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
	case errors.Is(err, actors.ErrDeviceNotOnline):
		writeJSON(w, http.StatusNotFound, apiError{err.Error()})
	case errors.Is(err, actors.ErrMethodTimeout):
		writeJSON(w, http.StatusGatewayTimeout, apiError{err.Error()})
	case errors.Is(err, actors.ErrMethodsBusy):
		writeJSON(w, http.StatusTooManyRequests, apiError{err.Error()})
	case errors.Is(err, actors.ErrClosed), errors.Is(err, actors.ErrNotReady):
		writeJSON(w, http.StatusServiceUnavailable, apiError{err.Error()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, apiError{err.Error()})
	default:
		writeJSON(w, http.StatusOK, res)
	}
}
