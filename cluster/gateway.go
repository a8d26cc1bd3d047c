package cluster

import (
	"context"

	"github.com/millstream/millstream/actors"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// Gateway is all the cluster asks of the gateway it drives: a durable
// actors.Gateway made with Config.Clustered. The other direction, what
// the gateway asks of the cluster, is actors.ClusterLink, which Node
// implements.
//
// Every method is safe for concurrent use. Those that take a context
// block until the gateway's partition actor has done the work (or ctx
// ends); the others do not block. Partition numbers are in
// [0, Partitions()).
type Gateway interface {
	// Partitions is the number of partitions; it must be the number the
	// store was opened with, and that of every gateway of the cluster.
	Partitions() int
	// Store is the gateway's durable store (never nil for a clustered
	// gateway). The cluster keeps its own keys there (gateways known, job
	// updates, parked input) and writes a partition's epoch, log and safe
	// checkpoint while it holds the partition as a replica, never while
	// the gateway serves it (C5).
	Store() *state.Store
	// SetCluster attaches the cluster to the gateway, before its Recover:
	// from then on the gateway serves no partition until Serve, and calls
	// link to forward, replicate and ship safe checkpoints.
	SetCluster(link actors.ClusterLink) error
	// Ready reports that the gateway has deployed its jobs and recovered,
	// and is not closing: before that the cluster serves nothing.
	Ready() bool

	// Serving reports whether this gateway serves partition p now: it
	// takes p's events and applies them.
	Serving(p int) bool
	// Epoch is partition p's ownership epoch as the gateway serves it
	// (0 before the first Serve of p in this process).
	Epoch(p int) uint64
	// Serve makes the gateway serve p from epoch on: p recovers from the
	// store (its safe checkpoint and the log after it, which the previous
	// server replicated here) and then takes events (C3, C8).
	Serve(ctx context.Context, p int, epoch uint64) error
	// CommitFailed reports that a group commit of p failed while this
	// gateway serves it: p applies nothing more (a later commit applied
	// past the failed one's entries would leave a hole that a replay
	// fills, with forwards partition 0 then drops), so the cluster gives p
	// up and it is taken over from the best copy.
	CommitFailed(p int) bool
	// StopIntake stops taking events for p at once, before the partition
	// itself stops (Release, Abandon): a gateway that lost its quorum
	// takes nothing more (C9).
	StopIntake(p int)
	// Release stops serving p at a barrier: the events queued for p are
	// applied, then p writes a checkpoint and drops its state. It returns
	// that checkpoint (nil when p had nothing) and the outbox positions
	// its rows reach, for MakeSafe.
	Release(ctx context.Context, p int) (*pb.SafeCheckpoint, map[string]uint64, error)
	// MakeSafe waits until the outbox rows up to hw have left the outbox,
	// then stores sc as p's safe checkpoint and ships it to the replicas
	// (C6). When ctx ends first it stores nothing and returns an error
	// that is actors.ErrNotDrained: the next server re-emits the rows
	// after the last safe checkpoint.
	MakeSafe(ctx context.Context, p int, sc *pb.SafeCheckpoint, hw map[string]uint64) error
	// Abandon stops serving p without a hand-off (Release), and unless
	// keep gives up what the gateway holds of p: its log, checkpoints and
	// undelivered rows (C9).
	Abandon(ctx context.Context, p int, keep bool) error
	// IngestForwarded logs entries another gateway forwarded for p; false
	// when the gateway does not serve p. The Commit's Wait returns once
	// they are logged and replicated (C4, C5, C7).
	IngestForwarded(p int, entries []*pb.LogEntry) (actors.Commit, bool)

	// Job returns a deployed job (and its plan).
	Job(name string) (*pb.Job, *pb.Plan, bool)
	// Deploy deploys a job on every partition, replacing the job of its
	// name (C12).
	Deploy(ctx context.Context, job *pb.Job) error
	// Remove removes a job; actors.ErrUnknownJob when none has the name.
	Remove(ctx context.Context, name string) error
}

var _ Gateway = (*actors.Gateway)(nil)
