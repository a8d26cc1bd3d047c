package actors

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/millstream/millstream/operators/exec"
)

// This file is the gateway's read API for the admin HTTP API
// (actors/admin) and anything else that reports on a running gateway: one
// cheap snapshot (Status), the jobs' progress (JobProgress, one round-trip
// to each partition), the runtime's own Prometheus collectors
// (Collectors), and the outputs' dead letters. Every method is safe to
// call from any goroutine, before and after Close.

// GatewayStatus is what a gateway says about itself at one moment. Taking
// it asks no partition: atomics and the router's locks only, so a scrape
// or a readiness probe may take one at any time, even while closing.
type GatewayStatus struct {
	// Stats: events in, rows out, dead lettered since start.
	Stats
	// Backlog: events waiting in the router's batches (Backlog).
	Backlog int
	// Restarts: partition actors restarted by their supervisor.
	Restarts uint64
	// JobRestarts: job actors restarted alone after a panic.
	JobRestarts uint64
	// MailboxDepths: batches waiting for each partition.
	MailboxDepths []int64
	// Closing: Close has begun; no input is taken.
	Closing bool
	// Recovering: a durable gateway that has not recovered its state
	// yet (Recover), so it refuses input.
	Recovering bool
	// DiskRefusal says why input is refused for lack of disk, or "".
	DiskRefusal string
	// Durable: the gateway has a store (Config.Store).
	Durable bool
	// DurableStats: the durable-mode counters (zero when not durable).
	DurableStats DurableStats
}

// Status takes a GatewayStatus.
func (g *Gateway) Status() GatewayStatus {
	return GatewayStatus{Stats: g.Stats(), Backlog: g.Backlog(), Restarts: g.Restarts(), JobRestarts: g.JobRestarts(), MailboxDepths: g.MailboxDepths(),
		Closing: g.closed.Load(), Recovering: !g.ready.Load(), DiskRefusal: g.DiskRefusal(), Durable: g.store != nil,
		DurableStats: g.DurableStats()}
}

// JobProgress is every deployed job's counters and lowest watermark,
// merged over the partitions.
type JobProgress struct {
	// Counters per job, summed over the partitions.
	Counters map[string]exec.Counters
	// Watermarks per job: the lowest over the partitions, in
	// value ticks (jobs that have seen no event are absent).
	Watermarks map[string]int64
	// Now is the gateway's clock (Config.Now) when the partitions had
	// answered: the arrival time a watermark lags behind.
	Now time.Time
}

// JobProgress asks every partition once; it fails when one does not
// answer before ctx ends.
func (g *Gateway) JobProgress(ctx context.Context) (JobProgress, error) {
	st, err := g.jobStatus(ctx)
	if err != nil {
		return JobProgress{}, err
	}
	return JobProgress{Counters: st.counters, Watermarks: st.watermarks, Now: g.cfg.Now()}, nil
}

// Collectors are the runtime's own Prometheus collectors, for a registry
// to serve: partition batch and per-stage times, ingest log commits,
// checkpoints, back-pressure waits, the disk guard and the jobs' memory
// budgets, the device actors. The per-job counters, outputs and broker figures are the
// admin API's (actors/admin).
func (g *Gateway) Collectors() []prometheus.Collector {
	return []prometheus.Collector{diskCollector{g: g}, budgetCollector{g: g}, deviceCollector{g: g}, batchSeconds, jobWorkSeconds, logSyncSeconds, checkpointSeconds,
		ingestWaitSeconds, g.stageSeconds}
}

// Logger is the gateway's logger (Config.Logger, slog.Default when unset).
func (g *Gateway) Logger() *slog.Logger { return g.cfg.Logger }

// DeadLetters returns the payloads of at most limit rows that output
// ("job/output", lower case) refused for good, oldest first (the
// in-memory outbox keeps the newest 1,000).
func (o *Outputs) DeadLetters(output string, limit int) ([][]byte, error) {
	o.mu.RLock()
	box := o.box
	o.mu.RUnlock()
	items, err := box.DeadLetters(output, limit)
	if err != nil {
		return nil, err
	}
	payloads := make([][]byte, 0, len(items))
	for _, it := range items {
		payloads = append(payloads, it.Entry.Payload)
	}
	return payloads, nil
}
