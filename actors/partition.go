package actors

import (
	"fmt"
	"os"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/querytest"
	"github.com/millstream/millstream/operators/value"
)

// Messages to partition actors.
type (
	event struct {
		job     string // empty: every job that reads input
		input   string
		device  string
		payload []byte
		arrival int64
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
			p.seen(e.device, e.payload, e.arrival)
			if e.job != "" {
				if ex := p.execs[e.job]; ex != nil && ex.Reads(e.input) {
					_ = ex.Ingest(e.input, e.payload, e.arrival)
				}
				continue
			}
			for _, ex := range p.execs {
				if ex.Reads(e.input) {
					_ = ex.Ingest(e.input, e.payload, e.arrival)
				}
			}
		}
	case *deployMsg:
		ctx.Respond(&doneReply{err: p.deploy(m.job)})
	case *removeMsg:
		delete(p.execs, m.name)
		delete(p.jobs, m.name)
		ctx.Respond(&doneReply{})
	case *tickMsg:
		p.sweep(m.now)
		for _, ex := range p.execs {
			ex.AdvanceTime(m.now)
		}
	case *devicesMsg:
		r := &devicesReply{}
		if m.id != "" {
			r.devices = append(r.devices, p.device(m.id))
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
	if err := querytest.LoadReferences(ex, d.refs); err != nil {
		return nil, fmt.Errorf("partition %d: %w", part, err)
	}
	return ex, nil
}

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }

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
