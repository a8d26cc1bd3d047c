package admin

import (
	"context"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/millstream/millstream/operators/value"
)

// Job series are labelled job_name, not job: Prometheus sets job on every
// series it scrapes (the scrape job), and renames a series' own job label
// to exported_job.

// gatewayCollector reports gateway and per-job counters at scrape time.
type gatewayCollector struct{ a *API }

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
	descDurable    = prometheus.NewDesc("millstream_state_events_total", "Durable state counters by kind: checkpoints, replayed log entries, rows already in the outbox at replay, duplicates dropped, events taken with a sequence number too old to check, take-overs that found a checkpoint older than the safe one, restore failures, log write errors, outbox write errors, input refused over quota, poison entries skipped, damaged partitions reset, replays the previous process ended in (replay_deaths), device messages that waited for back-pressure (ingest_waits), ingest log writer actor restarts after a panic (log_writer_restarts).", []string{"kind"}, nil)
)

func (c *gatewayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEventsIn, descBacklog, descRejected, descUnrouted, descJobCounter, descLag, descMailbox, descRestarts,
		descRefused, descRefusedCon, descOutbox, descOutboxB, descOutboxAge, descOutboxFull, descOutRows, descRetries, descDrainerRestarts, descDurable} {
		ch <- d
	}
}

func (c *gatewayCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.a.g
	st := g.Status()
	ch <- prometheus.MustNewConstMetric(descEventsIn, prometheus.CounterValue, float64(st.EventsIn))
	ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(st.Backlog))
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
		ch <- prometheus.MustNewConstMetric(descDrainerRestarts, prometheus.CounterValue, float64(o.Restarts), o.Output)
	}
	if st.Durable {
		ds := st.DurableStats
		for kind, v := range map[string]uint64{"checkpoints": ds.Checkpoints, "replayed_entries": ds.ReplayedEntries, "replayed_rows": ds.ReplayedRows,
			"duplicates": ds.Duplicates, "sequence_unverified": ds.SequenceUnverified, "stale_checkpoints": ds.StaleCheckpoints, "restore_failures": ds.RestoreFailures, "log_errors": ds.LogErrors, "outbox_errors": ds.OutboxErrors,
			"refused_over_quota": ds.RefusedOverQuota, "skipped_poison": ds.SkippedPoison, "damaged_reset": ds.DamagedReset, "replay_deaths": ds.ReplayDeaths, "ingest_waits": ds.IngestWaits, "forward_redos": ds.ForwardRedos, "log_writer_restarts": ds.LogWriterRestarts} {
			ch <- prometheus.MustNewConstMetric(descDurable, prometheus.CounterValue, float64(v), kind)
		}
	}
	ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(st.Restarts))
	for i, d := range st.MailboxDepths {
		ch <- prometheus.MustNewConstMetric(descMailbox, prometheus.GaugeValue, float64(d), strconv.Itoa(i))
	}
	if st.Closing {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	progress, err := g.JobProgress(ctx)
	if err != nil {
		return
	}
	now := value.FromTime(progress.Now)
	for job, wm := range progress.Watermarks {
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(now-wm)/float64(value.TicksPerSecond), job)
	}
	for job, k := range progress.Counters {
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

// descRetries counts delivery attempts that failed and were retried, apart
// from millstream_output_rows_total: a retry is no row's fate, and one row
// may be retried many times.
var descRetries = prometheus.NewDesc("millstream_output_delivery_retries_total",
	"Output deliveries that failed and were retried later (a row may be retried many times).", []string{"output"}, nil)

var descDrainerRestarts = prometheus.NewDesc("millstream_output_drainer_restarts_total",
	"Output drainer actors restarted by their supervisor after a delivery panicked (a row whose delivery panics alone is dead-lettered).", []string{"output"}, nil)

// buildInfo is millstream_build_info{version,revision,goversion} 1, from
// the binary's build information: which build a gateway runs.
func buildInfo() prometheus.Collector {
	version, revision, goversion := "unknown", "unknown", runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		goversion = bi.GoVersion
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && revision != "unknown" {
			revision += "-dirty"
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "millstream_build_info",
		Help:        "Always 1; its labels name the build: module version, VCS revision (-dirty: uncommitted changes) and Go version.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": goversion}})
	g.Set(1)
	return g
}
