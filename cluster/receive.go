package cluster

import (
	"math"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// receive is the cluster actor: it applies every peer's stream in order.
// Work that waits on the gateway (serving a partition, deploying a job,
// waiting for a forwarded batch's commit) runs on its own goroutine: a
// commit may be waiting for an ack that this actor has yet to process.
//
// Every message is checked before use (validate.go): one whose header is
// bad is dropped; one whose body is bad takes its place in the stream
// (acknowledged, so a broken peer's stream does not stall) but is not
// applied. Both are counted and logged (reject.go).
func (n *Node) receive(ctx actor.Context) {
	if n.iso.isolated() {
		return // fault injection: nothing arrives
	}
	// A panic would restart the actor, and a few in a row stop it: the
	// gateway would take no more messages from the others.
	defer n.recoverPanic("cluster actor")
	n.onStream(ctx.Message())
}

// onStream handles one message of the cluster actor.
func (n *Node) onStream(msg any) {
	switch m := msg.(type) {
	case *pb.StreamMsg:
		if m.Seq == 0 {
			return // heartbeats go to the heartbeat actor
		}
		if err := checkHeader(m); err != nil {
			n.rej.refuse(err, "from", m.From)
			return
		}
		n.mu.Lock()
		in := n.in[m.From]
		if in == nil || in.session != m.Session {
			if m.Seq != 1 {
				n.mu.Unlock()
				// The first messages of a new session were lost (the
				// resend brings them), or this gateway dropped the sender
				// as dead and forgot the session: either way the sender
				// starts over.
				n.post(actorPID(m.Addr), &pb.StreamAck{From: n.name, Session: m.Session, Unknown: true})
				return
			}
			in = &inStream{session: m.Session, expected: 1}
			n.in[m.From] = in
		}
		switch {
		case m.Seq < in.expected:
			n.mu.Unlock()
			n.ackTo(m.Addr, m.Session, in.expected-1, false) // a resend: our ack was lost
			return
		case m.Seq > in.expected:
			n.mu.Unlock()
			return // a gap: the sender resends from the first unacked
		}
		in.expected++
		n.mu.Unlock()
		notStored := false
		if err := checkBody(m, n.parts, time.Now().UnixNano()); err != nil {
			n.rej.refuse(err, "from", m.From, "seq", m.Seq)
			n.refused(m, err)
		} else {
			notStored = n.apply(m)
		}
		n.ackTo(m.Addr, m.Session, m.Seq, notStored)
	case *pb.StreamAck:
		if err := checkAck(m); err != nil {
			n.rej.refuse(err, "from", m.From)
			return
		}
		n.st.mu.Lock()
		var fns []func(bool)
		if m.Unknown {
			n.st.restart(m.From, m.Session)
		} else {
			fns = n.st.ack(m.From, m.Session, m.Seq, m.Refused)
		}
		n.st.mu.Unlock()
		runAll(fns, true)
	}
}

// heartbeat is the heartbeat actor. A ping (StreamMsg, seq 0) carries its
// sender's clock in session and is answered at once; the answer (a
// StreamAck) proves the peer was alive after the ping was sent, so the
// lease counts from the ping's time, not from when the answer arrived: a
// gateway that was paused gets answers to old pings, which prove nothing.
func (n *Node) heartbeat(ctx actor.Context) {
	if n.iso.isolated() {
		return // fault injection: nothing arrives
	}
	defer n.recoverPanic("heartbeat actor")
	n.onHeartbeat(ctx.Message())
}

// onHeartbeat handles one message of the heartbeat actor.
func (n *Node) onHeartbeat(msg any) {
	switch m := msg.(type) {
	case *pb.StreamMsg:
		if err := checkHeader(m); err != nil {
			n.rej.refuse(err, "from", m.From)
			return
		}
		if m.Addr != "" {
			n.post(actor.NewPID(m.Addr, heartbeatActor), &pb.StreamAck{From: n.name, Session: m.Session})
		}
	case *pb.StreamAck:
		if err := checkAck(m); err != nil {
			n.rej.refuse(err, "from", m.From)
			return
		}
		// The session is the ping's send time, echoed: never later than
		// now, whatever the peer sent back.
		sent := time.Unix(0, int64(min(m.Session, math.MaxInt64)))
		if now := time.Now(); sent.After(now) {
			sent = now
		}
		n.mu.Lock()
		if sent.After(n.contact[m.From]) {
			n.contact[m.From] = sent
		}
		n.mu.Unlock()
	}
}

// ackTo acknowledges a stream (sent directly: acks are idempotent);
// refused: the message's replication was not stored.
func (n *Node) ackTo(addr string, session, seq uint64, refused bool) {
	if addr == "" {
		return
	}
	n.post(actor.NewPID(addr, nodeActor), &pb.StreamAck{From: n.name, Session: session, Seq: seq, Refused: refused})
}

// post sends one message to another gateway's actor (at most once).
func (n *Node) post(pid *actor.PID, msg any) {
	if n.iso.isolated() {
		return // fault injection: lost on the way
	}
	n.out.Send(pid, msg)
}

// addrOf is a member's remote address ("" when unknown).
func (n *Node) addrOf(member string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if m, ok := n.view[member]; ok && m.Meta != nil {
		return m.Meta.RemoteAddr
	}
	return ""
}

// apply handles one stream message, in stream order; notStored: it
// carried replication this gateway did not store (its ack says so).
func (n *Node) apply(m *pb.StreamMsg) (notStored bool) {
	switch b := m.Body.(type) {
	case *pb.StreamMsg_Log:
		for _, g := range b.Log.Groups {
			if !n.applyLog(m.From, g) {
				notStored = true
			}
		}
	case *pb.StreamMsg_Checkpoint:
		p := int(b.Checkpoint.Partition)
		if !n.acceptReplication(m.From, p, b.Checkpoint.Epoch) {
			return true
		}
		if err := n.store.ApplySafeCheckpoint(p, b.Checkpoint.Safe); err != nil {
			n.log.Error("replicated checkpoint not stored", "partition", p, "from", m.From, "error", err)
			return true
		}
	case *pb.StreamMsg_Reset_:
		p := int(b.Reset_.Partition)
		n.mu.Lock()
		arriving := n.arriving[p]
		n.mu.Unlock()
		if n.gw.Serving(p) || arriving {
			// Arriving: handed here and being served from this copy; a
			// reset now (a second hand-off, asked for meanwhile) would
			// empty the copy under the serve, which would then number
			// the partition's log from 1 again (the churn nemesis lost
			// every row of the jobs on partition 0 so).
			n.log.Warn("catch-up for a partition this gateway serves or is starting to serve; ignored", "partition", p, "from", m.From)
			return
		}
		if cur, err := n.epoch(p); err == nil && b.Reset_.Epoch < cur {
			// A copy older than this one must not replace it, and the
			// epoch never moves back (C3).
			n.log.Warn("catch-up from a stale epoch; ignored", "partition", p, "from", m.From, "epoch", b.Reset_.Epoch, "current", cur)
			return
		}
		if n.olderThanPromised(p, b.Reset_.Epoch, m.From) {
			n.log.Warn("catch-up from before a promised take-over; ignored", "partition", p, "from", m.From, "epoch", b.Reset_.Epoch,
				"promised", n.promisedTo(p).epoch)
			return
		}
		if err := n.store.ResetPartition(p); err != nil {
			n.log.Error("replica reset failed", "partition", p, "error", err)
			return
		}
		if err := n.setEpoch(p, b.Reset_.Epoch); err != nil {
			n.log.Error("replica epoch not stored", "partition", p, "error", err)
		}
		n.mu.Lock()
		n.holding[p], n.caughtUp[p] = m.From, false
		n.mu.Unlock()
	case *pb.StreamMsg_CaughtUp:
		p := int(b.CaughtUp.Partition)
		n.mu.Lock()
		if n.holding[p] == m.From {
			n.caughtUp[p] = true
		}
		n.mu.Unlock()
	case *pb.StreamMsg_Handoff:
		p := int(b.Handoff.Partition)
		// Summarised by "serving partitions" (why=hand-off) once served.
		n.log.Debug("partition handed to this gateway", "partition", p, "from", m.From, "epoch", b.Handoff.Epoch,
			"sender_last_seq", b.Handoff.LastSeq, "last_seq", n.store.LastSeq(p))
		if last := n.store.LastSeq(p); last < b.Handoff.LastSeq {
			// The sender's copy was not all shipped here: served from
			// this one, the positions after its last would be numbered
			// again with other entries (partition 0 then drops the
			// forwards it finds at positions it applied). Not served; the
			// partition is taken over from the best holder.
			n.log.Warn("hand-off of a copy this gateway does not hold; not served", "partition", p, "from", m.From,
				"sender_last_seq", b.Handoff.LastSeq, "last_seq", last)
			return
		}
		if n.olderThanPromised(p, b.Handoff.Epoch, m.From) {
			// Served at the next epoch, it would serve p beside the
			// take-over this gateway promised that epoch to (C16).
			n.log.Warn("hand-off from before a promised take-over; not served", "partition", p, "from", m.From,
				"epoch", b.Handoff.Epoch, "promised", n.promisedTo(p).epoch)
			return
		}
		n.markTaking(p, takeOverMark, "") // from now: serve claims p later
		n.mu.Lock()
		n.arriving[p] = true
		n.mu.Unlock()
		n.goSafe("hand-off", func() {
			defer func() {
				n.mu.Lock()
				n.arriving[p] = false
				n.mu.Unlock()
			}()
			n.serve(p, b.Handoff.Epoch, "hand-off")
		})
	case *pb.StreamMsg_HandoffRequest:
		req := b.HandoffRequest
		n.goSafe("hand-off request", func() { n.handOffRequested(m.From, req) })
	case *pb.StreamMsg_Forward:
		n.acceptForward(m.From, b.Forward)
	case *pb.StreamMsg_ForwardDone:
		n.forwardDone(m.From, b.ForwardDone)
	case *pb.StreamMsg_Job:
		n.goSafe("job update", func() { n.applyJob(m.From, b.Job) })
	case *pb.StreamMsg_OutputRelay:
		n.acceptRelay(m.From, b.OutputRelay)
	case *pb.StreamMsg_Forget:
		if _, err := n.forget(b.Forget.Gateway); err != nil {
			n.log.Warn("another gateway forgot a gateway this one still sees; kept", "gateway", b.Forget.Gateway, "from", m.From, "error", err)
		}
	case *pb.StreamMsg_StatusRequest:
		n.sendTo(m.From, &pb.StreamMsg{Body: &pb.StreamMsg_StatusReply{StatusReply: n.holdings(b.StatusRequest.Id, m.From)}}, nil)
	case *pb.StreamMsg_StatusReply:
		n.answer(b.StatusReply.Id, statusAnswer{from: m.From, reply: b.StatusReply})
	case *pb.StreamMsg_Promise:
		n.promiseAsked(m.From, b.Promise)
	case *pb.StreamMsg_Promised:
		n.answer(b.Promised.Id, statusAnswer{from: m.From, promised: b.Promised})
	}
	return notStored
}

// answer hands a reply to the take-over waiting for it, if any.
func (n *Node) answer(id uint64, a statusAnswer) {
	n.mu.Lock()
	ch := n.requests[id]
	n.mu.Unlock()
	if ch != nil {
		select {
		case ch <- a:
		default:
		}
	}
}

// refused answers a message refused for its body where the sender waits
// for an answer: a forwarded batch is refused, so the sender retries
// (elsewhere, once the placement changes) instead of waiting.
func (n *Node) refused(m *pb.StreamMsg, err error) {
	if fb := m.GetForward(); fb != nil {
		n.sendTo(m.From, &pb.StreamMsg{Body: &pb.StreamMsg_ForwardDone{ForwardDone: &pb.ForwardDone{Id: fb.Id, Refused: true,
			Error: "refused: " + truncate(err.Error(), 200)}}}, nil)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// sendTo queues a message on the stream to a member; false when the
// member is not in the view.
func (n *Node) sendTo(member string, msg *pb.StreamMsg, onAck func(bool)) bool {
	addr := n.addrOf(member)
	if addr == "" {
		return false
	}
	n.st.mu.Lock()
	n.st.send(n.st.open(member, addr), msg, onAck)
	n.st.mu.Unlock()
	return true
}

// epoch is the partition's epoch in this gateway's store, cached: every
// replicated group checks it.
func (n *Node) epoch(p int) (uint64, error) {
	if e := n.epochs[p].Load(); e != 0 {
		return e, nil
	}
	e, err := n.store.Epoch(p)
	if err == nil {
		n.epochs[p].CompareAndSwap(0, e)
	}
	return e, err
}

func (n *Node) setEpoch(p int, e uint64) error {
	if err := n.store.SetEpoch(p, e); err != nil {
		return err
	}
	n.epochs[p].Store(e)
	return nil
}

func actorPID(addr string) *actor.PID { return actor.NewPID(addr, nodeActor) }
