package actors

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/value"
)

// Messages to partition actors.
type (
	event struct {
		job     string // empty: every job that reads input
		input   string
		device  string
		payload []byte
		rec     *value.Record // instead of payload: a decoded Devices event
		arrival int64
		// forwarded: sent on by the device's partition to partition 0 for
		// a job that runs there only (A4); the device was seen already.
		forwarded bool
	}
	eventBatch struct{ events []event }
	deployMsg  struct{ job *deployedJob }
	removeMsg  struct{ name string }
	tickMsg    struct{ now int64 }
	drainMsg   struct{}
	flushMsg   struct{}
	doneReply  struct{ err error }
)

// partition hosts the executors of one partition (A1).
type partition struct {
	g       *Gateway
	id      int
	execs   map[string]*exec.Executor
	jobs    map[string]*deployedJob
	devices map[string]*deviceState
	desired map[string][]byte
	// forwardJobs are the jobs that run on partition 0 only (A4); a
	// partition other than 0 sends them the events it receives, in order.
	forwardJobs []*deployedJob
	forwardBuf  []event
}

func (p *partition) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if !p.g.started[p.id].CompareAndSwap(false, true) {
			p.g.restarts.Add(1)
			p.g.cfg.Logger.Error("partition restarted after a failure; its window state was lost", "partition", p.id)
		}
		p.execs = map[string]*exec.Executor{}
		p.jobs = map[string]*deployedJob{}
		p.devices = map[string]*deviceState{}
		p.desired = map[string][]byte{}
		// After a restart (A5): take the jobs from the gateway's table.
		p.g.mu.Lock()
		jobs := make([]*deployedJob, 0, len(p.g.jobs))
		for _, d := range p.g.jobs {
			jobs = append(jobs, d)
		}
		p.g.mu.Unlock()
		for _, d := range jobs {
			p.deploy(d)
		}
	case *eventBatch:
		start := time.Now()
		defer func() {
			batchSeconds.Observe(time.Since(start).Seconds())
			p.g.queued[p.id].Add(-1)
		}()
		for _, e := range m.events {
			if !e.forwarded {
				p.seen(e.device, e.payload, e.arrival)
			}
			if e.job != "" {
				if ex := p.execs[e.job]; ex != nil && ex.Reads(e.input) {
					ingest(ex, e)
				}
			} else {
				for _, ex := range p.execs {
					if ex.Reads(e.input) {
						ingest(ex, e)
					}
				}
			}
			p.forward(e)
		}
		p.flushForward()
	case *deployMsg:
		ctx.Respond(&doneReply{err: p.deploy(m.job)})
	case *removeMsg:
		delete(p.execs, m.name)
		delete(p.jobs, m.name)
		p.updateForwardJobs()
		ctx.Respond(&doneReply{})
	case *tickMsg:
		p.sweep(m.now)
		p.flushForward()
		for _, ex := range p.execs {
			ex.AdvanceTime(m.now)
		}
	case *devicesMsg:
		r := &devicesReply{}
		if m.id != "" {
			_, seen := p.devices[m.id]
			_, twin := p.desired[m.id]
			if seen || twin {
				r.devices = append(r.devices, p.device(m.id))
			}
		} else {
			ids := map[string]bool{}
			for id := range p.devices {
				ids[id] = true
			}
			for id := range p.desired {
				ids[id] = true
			}
			for id := range ids {
				r.devices = append(r.devices, p.device(id))
			}
		}
		ctx.Respond(r)
	case *desiredMsg:
		p.desired[m.id] = append([]byte(nil), m.desired...)
		ctx.Respond(&doneReply{})
	case *drainMsg:
		ctx.Respond(&doneReply{})
	case *countersMsg:
		r := &countersReply{byJob: map[string]exec.Counters{}, watermark: map[string]int64{}, stages: map[string]map[string]time.Duration{}}
		for name, ex := range p.execs {
			r.byJob[name] = ex.Counters()
			r.stages[name] = ex.StageTimes()
			if wm, ok := ex.Watermark(); ok {
				r.watermark[name] = wm
			}
		}
		ctx.Respond(r)
	case *flushMsg:
		for _, ex := range p.execs {
			ex.Flush()
		}
		ctx.Respond(&doneReply{})
	}
}

func (p *partition) deploy(d *deployedJob) error {
	delete(p.execs, d.job.Name)
	p.jobs[d.job.Name] = d
	p.updateForwardJobs()
	if !d.partitioned && p.id != 0 {
		return nil // runs on partition 0 only (A4)
	}
	ex, err := d.newExecutor(p.g, p.id)
	if err != nil {
		return err
	}
	p.execs[d.job.Name] = ex
	return nil
}

func ingest(ex *exec.Executor, e event) {
	if e.rec != nil {
		_ = ex.IngestRecord(e.input, e.rec, e.arrival)
		return
	}
	_ = ex.Ingest(e.input, e.payload, e.arrival)
}

func (p *partition) updateForwardJobs() {
	p.forwardJobs = p.forwardJobs[:0]
	if p.id == 0 {
		return
	}
	for _, d := range p.jobs {
		if !d.partitioned {
			p.forwardJobs = append(p.forwardJobs, d)
		}
	}
}

// forward queues e for every job that runs on partition 0 only and reads
// its input. A partition keeps a device's order, and so does one send.
func (p *partition) forward(e event) {
	for _, d := range p.forwardJobs {
		if (e.job == "" || e.job == d.job.Name) && d.reads(e.input) {
			f := e
			f.job, f.forwarded = d.job.Name, true
			p.forwardBuf = append(p.forwardBuf, f)
		}
	}
}

func (p *partition) flushForward() {
	if len(p.forwardBuf) == 0 {
		return
	}
	p.g.send(0, &eventBatch{events: p.forwardBuf})
	p.forwardBuf = nil
}

func (d *deployedJob) reads(input string) bool {
	for _, in := range d.plan.Inputs {
		if strings.EqualFold(in.Name, input) {
			return true
		}
	}
	return false
}

func (d *deployedJob) newExecutor(g *Gateway, part int) (*exec.Executor, error) {
	opts := d.opts
	name := d.job.Name
	opts.Emit = func(output string, ts int64, rec *value.Record) {
		g.rowsOut.Add(1)
		if g.sink != nil {
			g.sink.Write(name, output, ts, rec)
		}
	}
	opts.DeadLetter = func(dl exec.DeadLetter) {
		g.dead1.Add(1)
		if g.dead != nil {
			g.dead.DeadLetter(name, dl)
		}
	}
	ex, err := exec.New(d.plan, opts)
	if err != nil {
		return nil, err
	}
	for name, rows := range d.refs {
		if err := ex.SetReference(name, rows); err != nil {
			return nil, fmt.Errorf("partition %d: %w", part, err)
		}
	}
	return ex, nil
}

func readReference(path string) ([]*value.Record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return value.ReadTable(data)
}

// countersMsg asks a partition for its executors' counters.
type countersMsg struct{}

type countersReply struct {
	byJob     map[string]exec.Counters
	stages    map[string]map[string]time.Duration
	watermark map[string]int64 // lowest per job; absent before any event
}

// batchSeconds is the time partitions spend on one batch of events.
var batchSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
	Name:    "millstream_partition_batch_seconds",
	Help:    "Time a partition actor spends processing one batch of events (all jobs).",
	Buckets: prometheus.ExponentialBuckets(1e-5, 4, 10),
})
