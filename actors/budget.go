package actors

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/millstream/millstream/operators/value"
)

// DefaultJobStateBytes is a job's memory budget on one gateway when the
// job sets no max_state_bytes.
const DefaultJobStateBytes = 512 << 20

// budgetCheckEvery is how much event time passes between two measures of
// a partition's job state (exec.StateBytes walks the state).
const budgetCheckEvery = 2 * value.TicksPerSecond

// checkBudgets measures each job's state on the partition and stops, on
// every partition, a job whose state on the gateway is over its budget:
// one runaway job (a COUNT(DISTINCT) over unbounded keys, a join without
// a key) must not take the gateway and its other jobs down with it.
// Partitions measure on ticks, which durable mode logs, so a replay
// stops the job at the same point.
func (p *partition) checkBudgets(now int64) {
	if now-p.budgetAt < budgetCheckEvery || p.scratch {
		return
	}
	p.budgetAt = now
	// The jobs apply what is queued for them first: the measure is of
	// the state at this tick, as it was before job actors.
	sizes := p.syncJobs(true)
	for _, r := range append([]*jobRun(nil), p.order...) {
		d := r.d
		if d.mem == nil || sizes[r] < 0 {
			continue // no budget, or the measure failed
		}
		d.mem[p.id].Store(sizes[r])
		if total := d.stateBytes(); total > d.budget {
			p.g.stopOverBudget(d, total)
			p.dropJob(d.job.Name)
		}
	}
}

// dropJob ends a job on this partition: its state is let go.
func (p *partition) dropJob(name string) {
	if d := p.jobs[name]; d != nil && d.mem != nil {
		d.mem[p.id].Store(0)
	}
	p.stopJob(p.runs[name])
	delete(p.runs, name)
	delete(p.jobs, name)
	p.updateForwardJobs()
	p.sortJobs()
}

// stateBytes is the job's estimated state on the gateway.
func (d *deployedJob) stateBytes() int64 {
	var n int64
	for i := range d.mem {
		n += d.mem[i].Load()
	}
	return n
}

// Stopped says why a job was stopped on this gateway, or "".
func (d *deployedJob) Stopped() string {
	if r := d.stopped.Load(); r != nil {
		return *r
	}
	return ""
}

// stopJobMsg ends a stopped job on a partition.
type stopJobMsg struct{ d *deployedJob }

// stopOverBudget marks d stopped (once) and tells every partition.
func (g *Gateway) stopOverBudget(d *deployedJob, total int64) {
	why := fmt.Sprintf("stopped: its state took about %d MiB, over its budget of %d MiB (max_state_bytes); deploy it again to restart it, with a larger budget or a bounded query",
		total>>20, d.budget>>20)
	if !d.stopped.CompareAndSwap(nil, &why) {
		return
	}
	g.jobsStopped.Add(1)
	g.cfg.Logger.Error("job over its memory budget: stopped on this gateway; the other jobs run on", "job", d.job.Name, "state_bytes", total, "budget_bytes", d.budget)
	for _, pid := range g.parts {
		g.system.Root.Send(pid, &stopJobMsg{d: d})
	}
}

// JobStatus is a deployed job's state estimate and, if it was stopped,
// why; and what its job actors did: their restarts after a panic and
// the time they spent working, over all partitions.
type JobStatus struct {
	StateBytes  int64   `json:"stateBytes"`
	Budget      int64   `json:"budgetBytes"`
	Stopped     string  `json:"stopped,omitempty"`
	Restarts    uint64  `json:"restarts"`
	WorkSeconds float64 `json:"workSeconds"`
}

// JobStatuses returns each deployed job's status by name.
func (g *Gateway) JobStatuses() map[string]JobStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]JobStatus, len(g.jobs))
	for name, d := range g.jobs {
		out[name] = JobStatus{StateBytes: d.stateBytes(), Budget: d.budget, Stopped: d.Stopped(), Restarts: d.restarts.Load(),
			WorkSeconds: time.Duration(d.workNanos.Load()).Seconds()}
	}
	return out
}

var (
	descJobState         = prometheus.NewDesc("millstream_job_state_bytes", "Estimated memory of a job's state on this gateway (all partitions), against its max_state_bytes budget.", []string{"job_name"}, nil)
	descJobBudget        = prometheus.NewDesc("millstream_job_state_budget_bytes", "A job's memory budget (max_state_bytes).", []string{"job_name"}, nil)
	descJobStopped       = prometheus.NewDesc("millstream_job_stopped", "1 while a job is stopped on this gateway for going over its memory budget.", []string{"job_name"}, nil)
	descJobActorRestarts = prometheus.NewDesc("millstream_job_actor_restarts_total", "Job actors of a job restarted alone after a panic (rebuilt from the checkpoint and log when durable).", []string{"job_name"}, nil)
	descJobWork          = prometheus.NewDesc("millstream_job_work_seconds_total", "Time a job's actors spent applying events, ticks and flushes, over all partitions.", []string{"job_name"}, nil)
	descStopsTotal       = prometheus.NewDesc("millstream_jobs_stopped_over_budget_total", "Jobs stopped for going over their memory budget since start.", nil, nil)
)

// budgetCollector exports the jobs' memory figures.
type budgetCollector struct{ g *Gateway }

func (c budgetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descJobState
	ch <- descJobBudget
	ch <- descJobStopped
	ch <- descJobActorRestarts
	ch <- descJobWork
	ch <- descStopsTotal
}

func (c budgetCollector) Collect(ch chan<- prometheus.Metric) {
	for name, st := range c.g.JobStatuses() {
		stopped := 0.0
		if st.Stopped != "" {
			stopped = 1
		}
		ch <- prometheus.MustNewConstMetric(descJobState, prometheus.GaugeValue, float64(st.StateBytes), name)
		ch <- prometheus.MustNewConstMetric(descJobBudget, prometheus.GaugeValue, float64(st.Budget), name)
		ch <- prometheus.MustNewConstMetric(descJobStopped, prometheus.GaugeValue, stopped, name)
		ch <- prometheus.MustNewConstMetric(descJobActorRestarts, prometheus.CounterValue, float64(st.Restarts), name)
		ch <- prometheus.MustNewConstMetric(descJobWork, prometheus.CounterValue, st.WorkSeconds, name)
	}
	ch <- prometheus.MustNewConstMetric(descStopsTotal, prometheus.CounterValue, float64(c.g.jobsStopped.Load()))
}
