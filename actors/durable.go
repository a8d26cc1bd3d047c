package actors

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Durable mode (Config.Store set). Invariants, on top of A1-A5 and the
// store's S1-S4 and O1-O2:
//
//	D1: an event is in its partition's ingest log, synced, before Ingest
//	    returns (and so before the MQTT acknowledgement); the partition
//	    applies log entries in log order, ticks included.
//	D2: a partition is deterministic: the same checkpoint and the same
//	    log entries give the same output rows in the same order, so the
//	    n-th row of a partition has the same id in every replay. Jobs run
//	    in name order; forwarded events are logged by partition 0 before
//	    it applies them.
//	D3: partition 0 applies a forwarded event once: it remembers the last
//	    (source partition, source seq, index) it applied, and a source
//	    keeps its log entries until partition 0 has logged what they
//	    forwarded. The index numbers an entry's events in job-name order,
//	    so every replay numbers them alike. A recovery forwards again the
//	    entries between what partition 0 logged and its checkpoint, except
//	    those the first run dropped as resends (the checkpoint lists
//	    them): a resend forwarded at its own position would count twice.
//	    This holds while one gateway at a time serves the source (C8): two
//	    would number different entries alike.
//	D4: a checkpoint is written after the rows it covers are in the
//	    outbox; recovery loads it, replays the log after it and skips the
//	    rows the outbox already holds (exactly once into the outbox).
//	D5: a partition's checkpoint never moves back (the store refuses one
//	    at an earlier log position), and only the gateway serving the
//	    partition writes it; a take-over restores the newer of its
//	    checkpoint and its safe checkpoint.
//	D6: with Config.SequenceField, an event is dropped as a duplicate only
//	    if its device's input had that number (seqwindow.go); numbers too
//	    old to check are taken and counted, never dropped.

// ErrNotReady is returned by Ingest while a durable gateway recovers.
var ErrNotReady = errors.New("actors: gateway is recovering its state")

// ErrFenced refuses events while a clustered gateway does not hear from a
// majority of the cluster.
var ErrFenced = errors.New("actors: cut off from the cluster's majority; events refused")

// ErrOverQuota is returned by Ingest while an output whose policy is
// "reject" is over its disk quota.
var ErrOverQuota = errors.New("actors: an output's outbox is over its quota; input is refused until it drains")

// DefaultMaxQueuedBytes is the default of Config.MaxQueuedBytes.
const DefaultMaxQueuedBytes = 64 << 20

// DurableStats are the counters of durable mode.
type DurableStats struct {
	Checkpoints, ReplayedEntries, ReplayedRows, Duplicates, RestoreFailures, LogErrors, OutboxErrors, RefusedOverQuota, SkippedPoison, DamagedReset uint64
	// ForwardResends: events another gateway forwarded again (after a
	// lost answer or a fail-over) that the partition had applied (C7).
	ForwardResends uint64
	// SequenceUnverified: events taken although their sequence number was
	// too far below their device's highest to check (maybe resends).
	SequenceUnverified uint64
	// StaleCheckpoints: take-overs that found the partition's checkpoint
	// older than its safe checkpoint and restored the safe one.
	StaleCheckpoints uint64
	// ReplayDeaths: replays of a partition that the previous process
	// ended in (replayguard.go).
	ReplayDeaths uint64
	// ForwardRedos: failed commits that lost a partition's forwards to
	// partition 0, which it then forwarded again (fwdredo.go).
	ForwardRedos uint64
	// IngestWaits: device messages that waited for the log writer's
	// back-pressure (Config.MaxQueuedBytes).
	IngestWaits uint64
	// LogWriterRestarts: the ingest log writer actor restarted after a
	// panic (its commit settled by settleAfterPanic).
	LogWriterRestarts uint64
}

// DurableStats returns the durable-mode counters.
func (g *Gateway) DurableStats() DurableStats {
	return DurableStats{Checkpoints: g.checkpoints.Load(), ReplayedEntries: g.replayedEntries.Load(), ReplayedRows: g.replayedRows.Load(),
		Duplicates: g.duplicates.Load(), RestoreFailures: g.restoreFailures.Load(), LogErrors: g.logErrors.Load(),
		OutboxErrors: g.outboxErrors.Load(), RefusedOverQuota: g.refused.Load(), SkippedPoison: g.skippedPoison.Load(), DamagedReset: g.damagedReset.Load(),
		ForwardResends: g.forwardResends.Load(), SequenceUnverified: g.seqUnverified.Load(),
		StaleCheckpoints: g.staleCheckpoints.Load(), ReplayDeaths: g.replayDeaths.Load(), IngestWaits: g.ingestWaits.Load(),
		ForwardRedos: g.forwardRedos.Load(), LogWriterRestarts: g.logWriterRestarts()}
}

func (g *Gateway) logWriterRestarts() uint64 {
	if g.log == nil {
		return 0
	}
	return g.log.restarts.Load()
}

var (
	logSyncSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "millstream_ingest_log_commit_seconds",
		Help:    "Time one group commit of the ingest log takes (write and fsync).",
		Buckets: prometheus.ExponentialBuckets(1e-5, 4, 10),
	})
	checkpointSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "millstream_checkpoint_seconds",
		Help:    "Time a partition spends writing one checkpoint (it processes no events meanwhile).",
		Buckets: prometheus.ExponentialBuckets(1e-5, 4, 10),
	})
	ingestWaitSeconds = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "millstream_ingest_backpressure_seconds_total",
		Help: "Time device input spent waiting because the input taken and not yet applied was over max_queued_bytes (the broker stops reading the connection meanwhile).",
	})
)
