package admin

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/millstream/millstream/actors"
	"github.com/millstream/millstream/operators/value"
)

// Bounds of a console snapshot: it goes to every open console once a
// second, so what it carries is capped whatever the gateway holds.
const (
	// snapshotDevices is how many devices (the first ones in id order)
	// a snapshot lists; the Devices page pages through /v1/devices for
	// more.
	snapshotDevices = 100
	// snapshotMaxAge: streams asking within this long of the last
	// snapshot get that one, so N consoles cost one snapshot a second.
	snapshotMaxAge = 900 * time.Millisecond
	// snapshotTimeout bounds the partitions' answers to one snapshot.
	snapshotTimeout = 2 * time.Second
)

// snapshot is what the console's live stream sends every second: the
// counters as they are (the page computes rates from two of them), not
// rates, so a lost frame loses nothing.
type snapshot struct {
	Time    int64          `json:"time"` // unix milliseconds
	Gateway gatewaySummary `json:"gateway"`
	// Cluster is GET /v1/cluster's answer; absent when standalone.
	Cluster     any                   `json:"cluster,omitempty"`
	Jobs        []jobSummary          `json:"jobs"`
	Devices     []actors.Device       `json:"devices"`
	MoreDevices bool                  `json:"moreDevices"`
	Outputs     []actors.OutputStatus `json:"outputs"`
	// DeadLetters: input and rows the jobs refused, by kind.
	DeadLetters map[string]uint64 `json:"deadLetters,omitempty"`
	// Errors: parts that could not be read this time (the partitions
	// did not answer in time, say); the rest is current.
	Errors []string `json:"errors,omitempty"`
}

// gatewaySummary is the gateway's own health and counters.
type gatewaySummary struct {
	EventsIn     uint64 `json:"eventsIn"`
	RowsOut      uint64 `json:"rowsOut"`
	DeadLettered uint64 `json:"deadLettered"`
	Backlog      int    `json:"backlog"`
	Restarts     uint64 `json:"restarts"`
	Durable      bool   `json:"durable"`
	// NotReady: why /readyz answers 503 (empty: ready).
	NotReady []string `json:"notReady,omitempty"`
}

// jobSummary is one job's row on the Jobs page.
type jobSummary struct {
	Name         string   `json:"name"`
	Inputs       []string `json:"inputs"`
	Outputs      []string `json:"outputs"`
	EventsIn     uint64   `json:"eventsIn"`
	EventsOut    uint64   `json:"eventsOut"`
	DeadLettered uint64   `json:"deadLettered"`
	// Dropped: events dropped as late, out of order or early.
	Dropped uint64 `json:"dropped"`
	// LagSeconds: arrival clock minus the job's lowest watermark, the
	// latency of its windows (absent before its first event).
	LagSeconds *float64 `json:"lagSeconds,omitempty"`
	actors.JobStatus
	// LastError: why the job is stopped, else the last delivery error of
	// one of its outputs.
	LastError string `json:"lastError,omitempty"`
}

// snapshotCache keeps the last snapshot for the streams that ask soon
// after; its lock also makes concurrent streams wait for one build
// instead of each asking the partitions.
type snapshotCache struct {
	mu   sync.Mutex
	at   time.Time
	data []byte
}

// snapshotJSON returns a current snapshot, built at most once per
// snapshotMaxAge.
func (a *API) snapshotJSON() []byte {
	c := &a.snap
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.data != nil && time.Since(c.at) < snapshotMaxAge {
		return c.data
	}
	// Not the asking client's context: the snapshot is shared, and a
	// client that goes must not empty it for the others.
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
	defer cancel()
	data, err := json.Marshal(a.buildSnapshot(ctx))
	if err != nil {
		// Every field is plain data; this cannot happen.
		data = []byte(`{"errors":["snapshot: ` + strings.ReplaceAll(err.Error(), `"`, `'`) + `"]}`)
	}
	c.data, c.at = data, time.Now()
	return data
}

func (a *API) buildSnapshot(ctx context.Context) *snapshot {
	st := a.g.Status()
	s := &snapshot{Time: time.Now().UnixMilli(), Outputs: a.outs.Status(),
		Gateway: gatewaySummary{EventsIn: st.EventsIn, RowsOut: st.RowsOut, DeadLettered: st.DeadLettered, Backlog: st.Backlog,
			Restarts: st.Restarts, Durable: st.Durable, NotReady: a.notReady(st, nil)}}
	if a.cluster != nil {
		s.Cluster = a.cluster.Status()
	}
	if a.dead != nil {
		s.DeadLetters = a.dead.Counts()
	}
	var progress actors.JobProgress
	if !st.Closing {
		var err error
		if progress, err = a.g.JobProgress(ctx); err != nil {
			s.Errors = append(s.Errors, "job counters: "+err.Error())
		}
		devs, err := a.g.DevicesPage(ctx, "", snapshotDevices+1)
		if err != nil {
			s.Errors = append(s.Errors, "devices: "+err.Error())
		}
		if len(devs) > snapshotDevices {
			devs, s.MoreDevices = devs[:snapshotDevices], true
		}
		// The list shows ids and counters; a device's payloads and twin
		// come with GET /v1/devices/{id} when it is opened. With ids of
		// at most actors.MaxDeviceIDBytes (JSON escapes '<' in 6 bytes),
		// the list stays under 200 KiB.
		for i := range devs {
			devs[i].Reported, devs[i].TwinReported, devs[i].Desired = nil, nil, nil
		}
		s.Devices = devs
	}
	s.Jobs = a.jobSummaries(progress, s.Outputs)
	return s
}

// jobSummaries is every deployed job with its counters, status and last
// error.
func (a *API) jobSummaries(progress actors.JobProgress, outs []actors.OutputStatus) []jobSummary {
	outErr := map[string]string{}
	for _, o := range outs {
		if o.LastError != "" {
			outErr[o.Output] = o.LastError
		}
	}
	statuses := a.g.JobStatuses()
	now := value.FromTime(progress.Now)
	jobs := []jobSummary{}
	for _, j := range a.g.Jobs() {
		k := progress.Counters[j.Name]
		js := jobSummary{Name: j.Name, Inputs: []string{}, Outputs: []string{}, JobStatus: statuses[j.Name],
			EventsIn: k.EventsIn, EventsOut: k.EventsOut, DeadLettered: k.DeadLettered,
			Dropped: k.LateDropped + k.OutOfOrderDropped + k.EarlyDropped}
		if wm, ok := progress.Watermarks[j.Name]; ok {
			lag := float64(now-wm) / float64(value.TicksPerSecond)
			js.LagSeconds = &lag
		}
		for _, in := range j.Inputs {
			js.Inputs = append(js.Inputs, in.Name)
		}
		js.LastError = js.Stopped
		for _, o := range j.Outputs {
			js.Outputs = append(js.Outputs, o.Name)
			if e := outErr[strings.ToLower(j.Name+"/"+o.Name)]; e != "" && js.LastError == "" {
				js.LastError = o.Name + ": " + e
			}
		}
		jobs = append(jobs, js)
	}
	return jobs
}
