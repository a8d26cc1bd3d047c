package actors

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

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Admin serves the gateway's HTTP API:
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
//	GET    /debug/pprof/...      Go profiles (only with AdminSecurity.Pprof)
//
// Deploying applies the job without restarting the gateway; other jobs are
// undisturbed. Who may call what is AdminSecurity's (Secure); job
// definitions come back with their HTTP output header values redacted.
type Admin struct {
	g       *Gateway
	outs    *Outputs
	broker  *Broker
	reg     *prometheus.Registry
	cluster ClusterAdmin
	dead    *DeadLetters
	checks  []readinessCheck
	guard   *adminGuard
	refused *prometheus.CounterVec
}

// ClusterAdmin is the cluster layer's share of the admin API: a job
// deployed or removed through any gateway is deployed or removed on all.
type ClusterAdmin interface {
	DeployJob(ctx context.Context, job *pb.Job) error
	RemoveJob(ctx context.Context, name string) error
	// Status is the cluster as this gateway sees it (JSON-encodable).
	Status() any
	// Forget stops counting a gateway gone for good for the majority, on
	// every gateway; known: this gateway counted it. ErrBadRequest for a
	// live one.
	Forget(gateway string) (known bool, err error)
}

// SetCluster routes job changes through the cluster (before Handler).
func (a *Admin) SetCluster(c ClusterAdmin) { a.cluster = c }

// NewAdmin builds the API for a gateway, its outputs and (optional) broker.
func NewAdmin(g *Gateway, outs *Outputs, broker *Broker) *Admin {
	a := &Admin{g: g, outs: outs, broker: broker, reg: prometheus.NewRegistry(),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "millstream_admin_refused_total",
			Help: "Admin API requests and connections refused, by reason: host (unknown Host, DNS rebinding), origin (cross-origin), unauthenticated, forbidden (role), content_type (a body type browsers send cross-origin), tls_handshake (no client certificate of the CA, plain HTTP, old TLS)."},
			[]string{"reason"})}
	a.reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}), &gatewayCollector{a: a}, diskCollector{g: g}, budgetCollector{g: g}, batchSeconds, logSyncSeconds, checkpointSeconds, ingestWaitSeconds, a.refused, g.stageSeconds, buildInfo())
	// Without Secure: no authentication, but the Host, Origin and body
	// type checks hold, and no profiles.
	a.guard, _ = newAdminGuard(AdminSecurity{}, g.cfg.Logger, a.refused)
	if broker != nil {
		a.reg.MustRegister(broker)
	}
	return a
}

// Secure sets who may call the API (before Handler). It reads the tokens
// file.
func (a *Admin) Secure(sec AdminSecurity) error {
	guard, err := newAdminGuard(sec, a.g.cfg.Logger, a.refused)
	if err != nil {
		return err
	}
	a.guard = guard
	return nil
}

// Handler returns the HTTP handler.
func (a *Admin) Handler() http.Handler {
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
	mux.HandleFunc("GET /v1/outputs", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"outputs": a.outs.Status()})
	})
	mux.HandleFunc("GET /v1/outputs/{job}/{output}/deadletters", a.deadLetters)
	mux.HandleFunc("GET /v1/deadletters", a.listDeadLetters)
	mux.HandleFunc("GET /v1/state", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"durable": a.g.store != nil, "stats": a.g.DurableStats()})
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
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", a.readyz)
	return a.guard.wrap(mux)
}

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *Admin) listJobs(w http.ResponseWriter, r *http.Request) {
	type item struct {
		Name    string   `json:"name"`
		Inputs  []string `json:"inputs"`
		Outputs []string `json:"outputs"`
		JobStatus
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

func (a *Admin) deployJob(w http.ResponseWriter, r *http.Request) {
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
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
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

func (a *Admin) getJob(w http.ResponseWriter, r *http.Request) {
	job, _, ok := a.g.Job(r.PathValue("name"))
	if !ok {
		writeJSON(w, http.StatusNotFound, apiError{fmt.Sprintf("no job %q", r.PathValue("name"))})
		return
	}
	counters, err := a.g.JobCounters(r.Context())
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{err.Error()})
		return
	}
	raw, _ := protojson.Marshal(redactJob(job))
	writeJSON(w, http.StatusOK, map[string]any{"job": json.RawMessage(raw), "counters": counters[job.Name], "status": a.g.JobStatuses()[job.Name]})
}

func (a *Admin) getPlan(w http.ResponseWriter, r *http.Request) {
	_, p, ok := a.g.Job(r.PathValue("name"))
	if !ok {
		writeJSON(w, http.StatusNotFound, apiError{fmt.Sprintf("no job %q", r.PathValue("name"))})
		return
	}
	out, _ := prototext.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(p)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(out)
}

func (a *Admin) deadLetters(w http.ResponseWriter, r *http.Request) {
	key := strings.ToLower(r.PathValue("job") + "/" + r.PathValue("output"))
	items, err := a.outs.box.DeadLetters(key, 1000)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{err.Error()})
		return
	}
	rows := make([]json.RawMessage, 0, len(items))
	for _, it := range items {
		if json.Valid(it.Entry.Payload) {
			rows = append(rows, it.Entry.Payload)
		} else {
			q, _ := json.Marshal(string(it.Entry.Payload))
			rows = append(rows, q)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"output": key, "rows": rows})
}

func (a *Admin) forgetGateway(w http.ResponseWriter, r *http.Request) {
	if a.cluster == nil {
		writeJSON(w, http.StatusNotFound, apiError{"this gateway is not clustered"})
		return
	}
	name := r.PathValue("gateway")
	known, err := a.cluster.Forget(name)
	switch {
	case errors.Is(err, ErrBadRequest):
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, apiError{err.Error()})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"forgotten": name, "wasCounted": known})
	}
}

func (a *Admin) removeJob(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	remove := a.g.Remove
	if a.cluster != nil {
		remove = a.cluster.RemoveJob
	}
	err := remove(ctx, r.PathValue("name"))
	switch {
	case errors.Is(err, ErrUnknownJob):
		writeJSON(w, http.StatusNotFound, apiError{err.Error()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, apiError{err.Error()})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"removed": r.PathValue("name")})
	}
}

// gatewayCollector reports gateway and per-job counters at scrape time.
type gatewayCollector struct{ a *Admin }

var (
	descEventsIn   = prometheus.NewDesc("millstream_events_in_total", "Events received by the gateway.", nil, nil)
	descBacklog    = prometheus.NewDesc("millstream_router_backlog_events", "Events waiting in the router's batches.", nil, nil)
	descRejected   = prometheus.NewDesc("millstream_mqtt_rejected_total", "MQTT messages rejected (payload too large).", nil, nil)
	descUnrouted   = prometheus.NewDesc("millstream_mqtt_unrouted_total", "MQTT messages on topics no job reads.", nil, nil)
	descJobCounter = prometheus.NewDesc("millstream_job_events_total", "Per-job event counts by kind.", []string{"job_name", "kind"}, nil)
	descRestarts   = prometheus.NewDesc("millstream_partition_restarts_total", "Partition actors restarted by their supervisor after a failure.", nil, nil)
	descMailbox    = prometheus.NewDesc("millstream_partition_mailbox_batches", "Batches waiting in a partition's mailbox.", []string{"partition"}, nil)
	descLag        = prometheus.NewDesc("millstream_job_watermark_lag_seconds", "Arrival clock minus the job's lowest watermark.", []string{"job_name"}, nil)
	descRefused    = prometheus.NewDesc("millstream_mqtt_refused_total", "MQTT messages not acknowledged because the gateway could not take them (outbox full, log write failed, closing); an MQTT 3.1.1 client is disconnected so it resends them.", nil, nil)
	descRefusedCon = prometheus.NewDesc("millstream_mqtt_refused_connections_total", "MQTT connections refused with 'server unavailable' while the gateway was recovering its state or closing.", nil, nil)
	descOutbox     = prometheus.NewDesc("millstream_outbox_rows", "Rows waiting in an output's outbox (the store-and-forward backlog).", []string{"output"}, nil)
	descOutboxB    = prometheus.NewDesc("millstream_outbox_bytes", "Bytes an output's outbox takes.", []string{"output"}, nil)
	descOutboxAge  = prometheus.NewDesc("millstream_outbox_oldest_age_seconds", "Age of the oldest row waiting in an output's outbox.", []string{"output"}, nil)
	descOutboxFull = prometheus.NewDesc("millstream_outbox_full", "1 while an output's outbox is at its quota.", []string{"output"}, nil)
	descOutRows    = prometheus.NewDesc("millstream_output_rows_total", "Output rows by fate: delivered, expired (past TTL), dropped (quota), dead_lettered.", []string{"output", "kind"}, nil)
	descDurable    = prometheus.NewDesc("millstream_state_events_total", "Durable state counters by kind: checkpoints, replayed log entries, rows already in the outbox at replay, duplicates dropped, events taken with a sequence number too old to check, take-overs that found a checkpoint older than the safe one, restore failures, log write errors, outbox write errors, input refused over quota, poison entries skipped, damaged partitions reset, replays the previous process ended in (replay_deaths), device messages that waited for back-pressure (ingest_waits).", []string{"kind"}, nil)
)

func (c *gatewayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEventsIn, descBacklog, descRejected, descUnrouted, descJobCounter, descLag, descMailbox, descRestarts,
		descRefused, descRefusedCon, descOutbox, descOutboxB, descOutboxAge, descOutboxFull, descOutRows, descRetries, descDurable} {
		ch <- d
	}
}

func (c *gatewayCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.a.g
	ch <- prometheus.MustNewConstMetric(descEventsIn, prometheus.CounterValue, float64(g.eventsIn.Load()))
	ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(g.Backlog()))
	if b := c.a.broker; b != nil {
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(b.Rejected()))
		ch <- prometheus.MustNewConstMetric(descUnrouted, prometheus.CounterValue, float64(b.Unrouted()))
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(b.Refused()))
		ch <- prometheus.MustNewConstMetric(descRefusedCon, prometheus.CounterValue, float64(b.RefusedConnections()))
	}
	for _, o := range c.a.outs.Status() {
		ch <- prometheus.MustNewConstMetric(descOutbox, prometheus.GaugeValue, float64(o.Backlog), o.Output)
		ch <- prometheus.MustNewConstMetric(descOutboxB, prometheus.GaugeValue, float64(o.BacklogBytes), o.Output)
		ch <- prometheus.MustNewConstMetric(descOutboxAge, prometheus.GaugeValue, o.OldestAge, o.Output)
		full := 0.0
		if o.Full {
			full = 1
		}
		ch <- prometheus.MustNewConstMetric(descOutboxFull, prometheus.GaugeValue, full, o.Output)
		for kind, v := range map[string]uint64{"delivered": o.Delivered, "expired": o.Expired, "dropped": o.Dropped,
			"dead_lettered": uint64(o.DeadLettered)} {
			ch <- prometheus.MustNewConstMetric(descOutRows, prometheus.CounterValue, float64(v), o.Output, kind)
		}
		ch <- prometheus.MustNewConstMetric(descRetries, prometheus.CounterValue, float64(o.Retries), o.Output)
	}
	if g.store != nil {
		ds := g.DurableStats()
		for kind, v := range map[string]uint64{"checkpoints": ds.Checkpoints, "replayed_entries": ds.ReplayedEntries, "replayed_rows": ds.ReplayedRows,
			"duplicates": ds.Duplicates, "sequence_unverified": ds.SequenceUnverified, "stale_checkpoints": ds.StaleCheckpoints, "restore_failures": ds.RestoreFailures, "log_errors": ds.LogErrors, "outbox_errors": ds.OutboxErrors,
			"refused_over_quota": ds.RefusedOverQuota, "skipped_poison": ds.SkippedPoison, "damaged_reset": ds.DamagedReset, "replay_deaths": ds.ReplayDeaths, "ingest_waits": ds.IngestWaits} {
			ch <- prometheus.MustNewConstMetric(descDurable, prometheus.CounterValue, float64(v), kind)
		}
	}
	ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(g.Restarts()))
	for i, d := range g.MailboxDepths() {
		ch <- prometheus.MustNewConstMetric(descMailbox, prometheus.GaugeValue, float64(d), strconv.Itoa(i))
	}
	if g.closed.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := g.jobStatus(ctx)
	if err != nil {
		return
	}
	now := value.FromTime(g.cfg.Now())
	for job, wm := range st.watermarks {
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(now-wm)/float64(value.TicksPerSecond), job)
	}
	for job, k := range st.counters {
		for kind, v := range map[string]uint64{
			"in": k.EventsIn, "out": k.EventsOut, "dead_lettered": k.DeadLettered,
			"late_adjusted": k.LateAdjusted, "late_dropped": k.LateDropped,
			"out_of_order_adjusted": k.OutOfOrderAdjusted, "out_of_order_dropped": k.OutOfOrderDropped,
			"early_dropped": k.EarlyDropped,
		} {
			ch <- prometheus.MustNewConstMetric(descJobCounter, prometheus.CounterValue, float64(v), job, kind)
		}
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
func (a *Admin) listDevices(w http.ResponseWriter, r *http.Request) {
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

func (a *Admin) getDevice(w http.ResponseWriter, r *http.Request) {
	d, err := a.g.Device(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, ErrUnknownDevice):
		writeJSON(w, http.StatusNotFound, apiError{err.Error()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, apiError{err.Error()})
	default:
		writeJSON(w, http.StatusOK, d)
	}
}

// redactJob is a copy of job with its secrets hidden (RedactHeaders).
func redactJob(job *pb.Job) *pb.Job {
	c := proto.Clone(job).(*pb.Job)
	for _, o := range c.Outputs {
		if h := o.GetHttp(); h != nil {
			h.Headers = RedactHeaders(h.Headers)
		}
	}
	return c
}

// validDeviceID refuses a device id (URL-decoded already) that would
// leave devices/{id}/twin/desired: a topic level separator or wildcard
// would publish to other devices' topics.
func validDeviceID(id string) error {
	if id == "" || strings.ContainsAny(id, "/+#\x00") {
		return fmt.Errorf("%w: device id %q: it must be non-empty and hold no '/', '+', '#' or NUL", ErrBadRequest, id)
	}
	return nil
}

func (a *Admin) setDesired(w http.ResponseWriter, r *http.Request) {
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
	case errors.Is(err, ErrBadRequest):
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, apiError{err.Error()})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"desired": r.PathValue("id")})
	}
}
