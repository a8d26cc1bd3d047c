package actors

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Job series are labelled job_name, not job: Prometheus sets job on every
// series it scrapes (the scrape job), and renames a series' own job label
// to exported_job.

// stageBuckets bound the stage time histogram: 1 µs to 1 ms in steps of
// 2 to 2.5 (a stage takes microseconds per row), then coarser up to 65 ms
// so that a slow stage shows without blurring the fast ones.
var stageBuckets = []float64{1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 4e-3, 16e-3, 65e-3}

// newStageSeconds is the histogram of the partitions' sampled per-row
// stage times.
func newStageSeconds() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "millstream_stage_event_seconds",
		Help:    "Time one row spends in a stage, including the stages it feeds synchronously (one row in 256 sampled).",
		Buckets: stageBuckets,
	}, []string{"job_name", "stage"})
}

// stageObserver is an executor's exec.Options.StageTime for job: it looks
// each stage's series up once (an executor runs on one goroutine, its
// partition's).
func stageObserver(h *prometheus.HistogramVec, job string) func(string, time.Duration) {
	byStage := map[string]prometheus.Observer{}
	return func(stage string, d time.Duration) {
		o := byStage[stage]
		if o == nil {
			o = h.WithLabelValues(job, stage)
			byStage[stage] = o
		}
		o.Observe(d.Seconds())
	}
}
