package admin

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/millstream/millstream/actors"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Gateway is the gateway runtime as the admin API sees it: its jobs, its
// devices and what it reports about itself. *actors.Gateway implements
// it; a console or a test may serve a fake.
//
// The API calls every method from the HTTP server's goroutines, several
// at once, and from Prometheus scrapes: each must be safe for concurrent
// use, and Status must not block (readiness probes and scrapes call it
// while the gateway closes). The API keeps nothing a method returns
// beyond the request that asked.
type Gateway interface {
	// Jobs are the deployed jobs, in name order.
	Jobs() []*pb.Job
	// Job is a deployed job and its plan; false when there is none.
	Job(name string) (*pb.Job, *pb.Plan, bool)
	// JobStatuses are each deployed job's memory figures by name.
	JobStatuses() map[string]actors.JobStatus
	// JobProgress is each job's counters and watermark (it asks the
	// partitions; it fails when they do not answer before ctx ends).
	JobProgress(ctx context.Context) (actors.JobProgress, error)
	// Deploy starts job, replacing one of the same name.
	Deploy(ctx context.Context, job *pb.Job) error
	// Remove stops a job: actors.ErrUnknownJob when there is none.
	Remove(ctx context.Context, name string) error

	// DevicesPage is at most limit devices in id order after the id
	// after ("" for the first page).
	DevicesPage(ctx context.Context, after string, limit int) ([]actors.Device, error)
	// Device is one device: actors.ErrUnknownDevice when unknown.
	Device(ctx context.Context, id string) (actors.Device, error)
	// SetDesired sets a device's desired properties (a JSON object):
	// actors.ErrBadRequest when desired is not one.
	SetDesired(ctx context.Context, id string, desired []byte) error
	// InvokeMethod calls a direct method on a device and waits for its
	// answer (actors.ErrDeviceNotOnline, ErrMethodTimeout, ErrMethodsBusy).
	InvokeMethod(ctx context.Context, id, method string, payload []byte, timeout time.Duration) (actors.MethodResult, error)

	// Status is a snapshot of the runtime (readiness, counters, /v1/state).
	Status() actors.GatewayStatus
	// Collectors are the runtime's own metrics, registered once by New.
	Collectors() []prometheus.Collector
	// Logger is where the API logs changes and refusals (New, Secure).
	Logger() *slog.Logger
}

// Outputs are the gateway's outputs as the admin API sees them.
// *actors.Outputs implements it; the same rules as Gateway's hold.
type Outputs interface {
	// Status is each output's store-and-forward state.
	Status() []actors.OutputStatus
	// Configure checks a job's outputs and opens them before it is
	// deployed; a refused job changes nothing.
	Configure(job *pb.Job) error
	// DeadLetters are the payloads output ("job/output", lower case)
	// refused for good; durable is false when none are kept.
	DeadLetters(output string, limit int) (payloads [][]byte, err error)
}

var (
	_ Gateway = (*actors.Gateway)(nil)
	_ Outputs = (*actors.Outputs)(nil)
)
