package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/millstream/millstream/actors"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

const (
	forwardBatchMax = 2048
	forwardRetry    = 50 * time.Millisecond
	forwardTimeout  = 5 * time.Second
)

// Forward sends entries of a partition served by another gateway to it
// (actors.ClusterLink). Each entry gets this gateway's name and the next
// origin seq of the partition; batches go one at a time and are resent,
// to whichever gateway serves the partition by then, until one logs
// them (C7). done runs once the last of entries is logged, or, while
// this gateway is cut off from the majority, once they are parked in its
// store (C11).
func (n *Node) Forward(p int, entries []*pb.LogEntry, done func(error)) {
	f := n.fwd[p]
	f.order.Lock()
	n.mu.Lock()
	if n.fwdClosed {
		n.mu.Unlock()
		f.order.Unlock()
		done(ErrStopped)
		return
	}
	for _, e := range entries {
		f.oseq++
		e.Origin, e.OriginSeq = n.name, f.oseq
	}
	n.mu.Unlock()
	parked := n.parking() && n.park(p, entries)
	n.mu.Lock()
	if n.fwdClosed {
		// Stopped meanwhile: parked events go at the next start.
		n.mu.Unlock()
		f.order.Unlock()
		if parked {
			done(actors.ErrParked)
		} else {
			done(ErrStopped)
		}
		return
	}
	for _, e := range entries {
		f.queue = append(f.queue, e)
		f.dones = append(f.dones, nil)
		f.parked = append(f.parked, parked)
	}
	if !parked {
		f.dones[len(f.dones)-1] = done
	}
	f.noteBusy()
	n.mu.Unlock()
	f.order.Unlock()
	if parked {
		done(actors.ErrParked)
	}
	n.forwarded.Add(uint64(len(entries)))
	n.pumpForward(p)
}

// Forwarding reports whether events of p wait to be forwarded
// (actors.ClusterLink).
func (n *Node) Forwarding(p int) bool { return n.fwd[p].busy.Load() }

// pumpForward sends the next batch of p when none is in flight.
func (n *Node) pumpForward(p int) {
	n.mu.Lock()
	f := n.fwd[p]
	if f.inflight != nil || len(f.queue) == 0 {
		n.mu.Unlock()
		return
	}
	// At most forwardBatchMax events and about msgTargetBytes (one larger
	// event goes alone): the receivers refuse messages over their limit.
	k, size := 0, 0
	for k < len(f.queue) && k < forwardBatchMax {
		s := entryBytes(f.queue[k])
		if k > 0 && size+s > msgTargetBytes {
			break
		}
		size += s
		k++
	}
	b := &fwdBatch{entries: slices.Clone(f.queue[:k]), dones: slices.Clone(f.dones[:k]), parked: slices.Clone(f.parked[:k])}
	f.queue, f.dones, f.parked = f.queue[k:], f.dones[k:], f.parked[k:]
	f.inflight = b
	f.noteBusy()
	n.mu.Unlock()
	n.sendForward(p, b)
}

// entryBytes is about the encoded size of a log entry.
func entryBytes(e *pb.LogEntry) int {
	n := len(e.Payload) + len(e.Job) + len(e.Input) + len(e.Device) + len(e.Origin) + 48
	for _, t := range e.Targets {
		n += len(t.GetJob()) + len(t.GetInput()) + 8
	}
	return n
}

// sendForward sends (or resends) the batch in flight to p's server.
func (n *Node) sendForward(p int, b *fwdBatch) {
	to := n.serverOf(p)
	n.mu.Lock()
	n.reqID++
	id := n.reqID
	b.id, b.to, b.sentAt = id, to, time.Now()
	n.mu.Unlock()
	if to == "" {
		// This gateway owns p: log here once it serves p.
		c, ok := n.gw.IngestForwarded(p, b.entries)
		if !ok {
			n.finishForward(p, id, true)
			return
		}
		go func() { n.finishForward(p, id, c.Wait() != nil) }()
		return
	}
	msg := &pb.StreamMsg{Body: &pb.StreamMsg_Forward{Forward: &pb.ForwardBatch{Partition: uint32(p), Id: id, Entries: b.entries}}}
	if !n.sendTo(to, msg, nil) {
		n.finishForward(p, id, true)
	}
}

// finishForward ends the batch in flight: done, or refused (resent after
// forwardRetry by retryForwards).
func (n *Node) finishForward(p int, id uint64, refused bool) {
	n.mu.Lock()
	f := n.fwd[p]
	b := f.inflight
	if b == nil || b.id != id {
		n.mu.Unlock()
		return // an answer to an earlier send of a batch resent since
	}
	if refused {
		f.retryAt = time.Now().Add(forwardRetry)
		b.id = 0
		n.mu.Unlock()
		return
	}
	f.inflight = nil
	f.noteBusy()
	dones := b.dones
	b.dones = nil
	n.mu.Unlock()
	n.unpark(p, b)
	for _, d := range dones {
		if d != nil {
			d(nil)
		}
	}
	n.pumpForward(p)
}

// ErrStopped: the node stopped before a forwarded event was taken.
var ErrStopped = errors.New("cluster: the gateway is stopping; event not forwarded")

// AbortForwards fails every event waiting to be forwarded, and all later
// ones (the gateway is stopping: their publishers are not acknowledged
// and send them again to another gateway).
func (n *Node) AbortForwards() {
	n.mu.Lock()
	n.fwdClosed = true
	var dones []func(error)
	for _, f := range n.fwd {
		dones = append(dones, f.dones...)
		if f.inflight != nil {
			dones = append(dones, f.inflight.dones...)
		}
		f.queue, f.dones, f.parked, f.inflight = nil, nil, nil, nil
		f.noteBusy()
	}
	n.mu.Unlock()
	for _, d := range dones {
		if d != nil {
			d(ErrStopped)
		}
	}
}

// forwardDone is a server's answer to a forwarded batch.
func (n *Node) forwardDone(from string, d *pb.ForwardDone) {
	if d.Refused {
		n.refusedFwd.Add(1)
	}
	n.mu.Lock()
	p := -1
	for i, f := range n.fwd {
		if f.inflight != nil && f.inflight.id == d.Id {
			p = i
			break
		}
	}
	n.mu.Unlock()
	if p >= 0 {
		n.finishForward(p, d.Id, d.Refused)
	}
}

// retryForwards resends refused batches after their pause and batches
// unanswered for forwardTimeout, and starts queues nothing started (input
// parked before a restart).
func (n *Node) retryForwards() {
	now := time.Now()
	for p := range n.fwd {
		n.mu.Lock()
		f := n.fwd[p]
		b := f.inflight
		due := b != nil && (b.id == 0 && now.After(f.retryAt) || b.id != 0 && now.Sub(b.sentAt) > forwardTimeout)
		idle := b == nil && len(f.queue) > 0
		n.mu.Unlock()
		switch {
		case due:
			n.sendForward(p, b)
		case idle:
			n.pumpForward(p)
		}
	}
}

// retryForwardsTo resends at once the batches in flight to a member that
// left.
func (n *Node) retryForwardsTo(member string) {
	for p := range n.fwd {
		n.mu.Lock()
		b := n.fwd[p].inflight
		due := b != nil && b.to == member
		n.mu.Unlock()
		if due {
			n.sendForward(p, b)
		}
	}
}

// acceptForward logs a batch another gateway forwarded, if this gateway
// serves its partition, and answers once it is logged and replicated.
func (n *Node) acceptForward(from string, fb *pb.ForwardBatch) {
	p := int(fb.Partition)
	if p < 0 || p >= n.parts {
		n.sendTo(from, &pb.StreamMsg{Body: &pb.StreamMsg_ForwardDone{ForwardDone: &pb.ForwardDone{Id: fb.Id, Refused: true, Error: "no such partition"}}}, nil)
		return
	}
	c, ok := n.gw.IngestForwarded(p, fb.Entries)
	if !ok {
		n.sendTo(from, &pb.StreamMsg{Body: &pb.StreamMsg_ForwardDone{ForwardDone: &pb.ForwardDone{Id: fb.Id, Refused: true, Error: "not served here"}}}, nil)
		return
	}
	n.goSafe("forwarded batch", func() {
		d := &pb.ForwardDone{Id: fb.Id}
		if err := c.Wait(); err != nil {
			d.Refused, d.Error = true, truncate(err.Error(), 1024)
		}
		n.sendTo(from, &pb.StreamMsg{Body: &pb.StreamMsg_ForwardDone{ForwardDone: d}}, nil)
	})
}

// DeployJob deploys a job here and on every other gateway (the newest
// deploy of a name wins everywhere).
func (n *Node) DeployJob(ctx context.Context, job *pb.Job) error {
	if err := n.gw.Deploy(ctx, job); err != nil {
		return err
	}
	return n.spreadJob(&pb.JobUpdate{Job: job, Version: n.localJobVersion(job.Name), Origin: n.name})
}

// RemoveJob removes a job here and on every other gateway.
func (n *Node) RemoveJob(ctx context.Context, name string) error {
	if err := n.gw.Remove(ctx, name); err != nil {
		return err
	}
	return n.spreadJob(&pb.JobUpdate{Removed: name, Version: n.localJobVersion(name), Origin: n.name})
}

// localJobVersion is the version of a deploy or removal of a job name
// through this gateway's admin API.
func (n *Node) localJobVersion(name string) int64 {
	n.mu.Lock()
	cur, seen := n.jobVer[name]
	n.mu.Unlock()
	return nextJobVersion(cur.version, seen)
}

// Job versions are counters, one per job name, ordered with the origin
// gateway's name (a Lamport clock): an operator's change takes one more
// than the version its gateway knows, and the highest (version, origin)
// wins on every gateway. So the order of changes does not depend on the
// gateways' clocks: a change made where an earlier one was known is newer
// than it; of two made concurrently on two gateways, each knowing the same
// version, the one of the greater gateway name wins everywhere.
//
// A received version more than maxJobVersionStep above every version this
// gateway knows is refused (applyJob): one peer cannot make a job newer
// than every later change. Versions stored by releases before the
// counters were deploy times (Unix ns, at or above clockVersionFloor);
// counting on from them keeps the order they had.

// nextJobVersion is the version of an operator's change of a name whose
// current version is cur (seen false: none).
func nextJobVersion(cur int64, seen bool) int64 {
	if !seen || cur >= maxJobVersion {
		return 1
	}
	return cur + 1
}

// jobNewer reports whether an update of version v from origin replaces
// the current one (cur; seen false: none). A stored version out of range
// (from before versions were checked) is older than any.
func jobNewer(cur jobVersion, seen bool, v int64, origin string) bool {
	switch {
	case !seen, cur.version >= maxJobVersion:
		return true
	case v != cur.version:
		return v > cur.version
	}
	return origin > cur.origin
}

// jobVersionPlausible reports whether a received version is at most
// maxJobVersionStep above every version known here (n.mu held), or a
// deploy time from a release before the counters (checkJobUpdate bounded
// it by this clock).
func (n *Node) jobVersionPlausible(v int64) bool {
	if v >= clockVersionFloor {
		return true
	}
	var top int64
	for _, jv := range n.jobVer {
		if jv.version < maxJobVersion {
			top = max(top, jv.version)
		}
	}
	return v <= top+maxJobVersionStep
}

func jobName(u *pb.JobUpdate) string { return state.JobUpdateName(u) }

// spreadJob records an update this gateway took and sends it to the
// others. It is stored first: a gateway down now gets it when it comes
// back, from any gateway that stored it (C12).
func (n *Node) spreadJob(u *pb.JobUpdate) error {
	if err := n.store.SaveJobUpdate(u); err != nil {
		return fmt.Errorf("cluster: job %q changed here but not recorded for the other gateways: %w", jobName(u), err)
	}
	n.mu.Lock()
	n.jobVer[jobName(u)] = jobVersion{u.Version, u.Origin}
	n.jobLog[jobName(u)] = u
	peers := n.peersLocked()
	n.mu.Unlock()
	for _, m := range peers {
		n.sendTo(m, &pb.StreamMsg{Body: &pb.StreamMsg_Job{Job: u}}, nil)
	}
	return nil
}

// loadJobUpdates reads the stored updates (C12).
func (n *Node) loadJobUpdates() error {
	us, err := n.store.JobUpdates()
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	for _, u := range us {
		n.jobVer[jobName(u)] = jobVersion{u.Version, u.Origin}
		n.jobLog[jobName(u)] = u
	}
	return nil
}

// SyncJobs makes the gateway's jobs match the newest update of each job
// name it knows (C12): stored before a restart, or received since. Run it
// once the configuration file's and the catalog's jobs are deployed, so a
// job removed or changed through the admin API while this gateway was
// down stays removed or changed here too.
func (n *Node) SyncJobs(ctx context.Context) {
	n.jobMu.Lock()
	defer n.jobMu.Unlock()
	n.mu.Lock()
	us := make([]*pb.JobUpdate, 0, len(n.jobLog))
	for _, u := range n.jobLog {
		us = append(us, u)
	}
	n.mu.Unlock()
	sort.Slice(us, func(i, j int) bool { return jobName(us[i]) < jobName(us[j]) })
	for _, u := range us {
		n.install(ctx, u)
	}
}

// sendJobs gives a member that joined every job update this gateway knows:
// its own, and those of gateways not live (C12). A live gateway sends its
// own: the receiver refuses an update relayed for a live origin
// (applyJob).
func (n *Node) sendJobs(member string) {
	n.mu.Lock()
	var us []*pb.JobUpdate
	for _, u := range n.jobLog {
		if o := baseOf(u.Origin); o == n.cfg.Gateway || n.bases[o] == "" {
			us = append(us, u)
		}
	}
	n.mu.Unlock()
	for _, u := range us {
		n.sendTo(member, &pb.StreamMsg{Body: &pb.StreamMsg_Job{Job: u}}, nil)
	}
}

// applyJob applies a job update from another gateway (from, checked by
// checkJobUpdate) if it is the newest of its name; an update that changes
// nothing keeps the job's state. Its origin must be the sender's gateway,
// unless it relays the update of a gateway not live now (C12): a live one
// sends its own, and a member must not speak for it.
func (n *Node) applyJob(from string, u *pb.JobUpdate) {
	n.jobMu.Lock()
	defer n.jobMu.Unlock()
	name := jobName(u)
	n.mu.Lock()
	if o := baseOf(u.Origin); o != baseOf(from) && (n.bases[o] != "" || o == n.cfg.Gateway) {
		n.mu.Unlock()
		n.rej.refuse(reject(rejectIdentity, "job update %q from %s names live gateway %s as its origin", name, from, u.Origin), "from", from)
		return
	}
	if !n.jobVersionPlausible(u.Version) {
		n.mu.Unlock()
		n.rej.refuse(reject(rejectFuture, "job update %q from %s: version %d is more than %d above every version known here",
			name, from, u.Version, maxJobVersionStep), "from", from)
		return
	}
	cur, seen := n.jobVer[name]
	newer := jobNewer(cur, seen, u.Version, u.Origin)
	if newer {
		n.jobVer[name] = jobVersion{u.Version, u.Origin}
		n.jobLog[name] = u
	}
	n.mu.Unlock()
	if !newer {
		return
	}
	if err := n.store.SaveJobUpdate(u); err != nil {
		// Applied all the same: the others keep it and send it again
		// when this gateway restarts.
		n.log.Error("job update from another gateway not stored", "job", name, "error", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n.install(ctx, u)
}

// install makes the gateway's job of u's name what u says (n.jobMu held).
func (n *Node) install(ctx context.Context, u *pb.JobUpdate) {
	name := jobName(u)
	if u.Job == nil {
		if err := n.gw.Remove(ctx, name); err != nil && !errors.Is(err, actors.ErrUnknownJob) {
			n.log.Error("job removal from the cluster failed here", "job", name, "origin", u.Origin, "error", err)
		}
		return
	}
	if j, _, ok := n.gw.Job(name); ok && proto.Equal(j, u.Job) {
		return
	}
	if n.cfg.OnJob != nil {
		if err := n.cfg.OnJob(u.Job); err != nil {
			n.log.Error("job from the cluster does not configure here", "job", name, "origin", u.Origin, "error", err)
			return
		}
	}
	if err := n.gw.Deploy(ctx, u.Job); err != nil {
		n.log.Error("job from the cluster does not deploy here", "job", name, "origin", u.Origin, "error", err)
		return
	}
	n.log.Info("job deployed from the cluster", "job", name, "origin", u.Origin)
}
