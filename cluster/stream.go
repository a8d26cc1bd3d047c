package cluster

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// A stream carries every message from this gateway to one peer member.
// protoactor remote delivers at most once, so each message has a sequence
// number; the receiver applies them strictly in order and acknowledges
// cumulatively, and the sender resends whatever is unacknowledged after
// resendAfter (go-back-N). A member that restarts is a new member (its
// name carries its incarnation), so a stream never outlives its receiver.

const (
	resendAfter = time.Second
	resendMax   = 256 // messages per resend round
)

// sender sends one message to an actor of another gateway, at most once,
// without blocking: protoactor's root context (Start), or an in-memory
// switch in the tests (memnet_test.go). Node.post is its only caller.
type sender interface {
	Send(pid *actor.PID, message any)
}

var _ sender = (*actor.RootContext)(nil)

// outStream is the sending side of a stream to one member.
type outStream struct {
	to      string
	pid     *actor.PID
	session uint64
	next    uint64
	unacked []*outMsg
	closed  bool
}

type outMsg struct {
	msg    *pb.StreamMsg
	sentAt time.Time
	onAck  func(ok bool) // ok false: the stream closed first (the member left)
	// onRefused runs (before onAck) when the member applied the message
	// but did not store the replication in it (StreamAck.refused).
	onRefused func()
}

// streams are this gateway's outgoing streams (guarded by mu).
type streams struct {
	mu      sync.Mutex
	from    string
	addr    string                // this gateway's remote address
	post    func(*actor.PID, any) // sends one message (Node.post)
	session uint64
	out     map[string]*outStream
}

// open returns the stream to member, opening it at addr.
func (s *streams) open(member, addr string) *outStream {
	o := s.out[member]
	if o == nil {
		s.session++
		o = &outStream{to: member, pid: actor.NewPID(addr, nodeActor), session: uint64(time.Now().UnixNano()) + s.session, next: 1}
		s.out[member] = o
	}
	return o
}

// send queues msg on the stream to member (s.mu held); onAck, if set,
// runs (outside any lock of the stream) once the member has applied it.
func (s *streams) send(o *outStream, body *pb.StreamMsg, onAck func(ok bool)) {
	body.From, body.Session, body.Seq, body.Addr = s.from, o.session, o.next, s.addr
	o.next++
	o.unacked = append(o.unacked, &outMsg{msg: body, sentAt: time.Now(), onAck: onAck})
	s.post(o.pid, body)
}

// sendReplication is send with onRefused: the member may not store the
// replication the message carries.
func (s *streams) sendReplication(o *outStream, body *pb.StreamMsg, onAck func(ok bool), onRefused func()) {
	s.send(o, body, onAck)
	o.unacked[len(o.unacked)-1].onRefused = onRefused
}

// ack drops the messages up to seq and returns their callbacks, in order;
// with refused, each message's onRefused comes before its onAck (acks are
// cumulative: one lost ack makes the next cover more, and calling refused
// a commit that was stored only fails it, which its publishers survive).
func (s *streams) ack(member string, session, seq uint64, refused bool) []func(bool) {
	o := s.out[member]
	if o == nil || o.session != session {
		return nil
	}
	var fns []func(bool)
	i := 0
	for ; i < len(o.unacked) && o.unacked[i].msg.Seq <= seq; i++ {
		if f := o.unacked[i].onRefused; refused && f != nil {
			fns = append(fns, func(bool) { f() })
		}
		if f := o.unacked[i].onAck; f != nil {
			fns = append(fns, f)
		}
	}
	o.unacked = o.unacked[i:]
	return fns
}

// restart starts a new session on the stream to member when the receiver
// does not know session: the unacknowledged messages are numbered afresh,
// in the same order, and sent again. (A first message that merely was
// lost also lands here; the new session costs one resend.)
func (s *streams) restart(member string, session uint64) {
	o := s.out[member]
	if o == nil || o.session != session {
		return
	}
	s.session++
	o.session = uint64(time.Now().UnixNano()) + s.session
	o.next = 1
	now := time.Now()
	for _, m := range o.unacked {
		// A new message, not the old one: protoactor may still be
		// encoding the old one for an earlier send.
		msg := proto.Clone(m.msg).(*pb.StreamMsg)
		msg.Session, msg.Seq = o.session, o.next
		o.next++
		m.msg, m.sentAt = msg, now
		s.post(o.pid, msg)
	}
}

// closeStream drops the stream to a member that left; the callbacks of its
// unacknowledged messages run with ok false.
func (s *streams) closeStream(member string) []func(bool) {
	o := s.out[member]
	if o == nil {
		return nil
	}
	delete(s.out, member)
	o.closed = true
	var fns []func(bool)
	for _, m := range o.unacked {
		if m.onAck != nil {
			fns = append(fns, m.onAck)
		}
	}
	return fns
}

// resend sends again what has waited too long for its ack.
func (s *streams) resend(now time.Time) (n int) {
	for _, o := range s.out {
		if len(o.unacked) == 0 || now.Sub(o.unacked[0].sentAt) < resendAfter {
			continue
		}
		for i, m := range o.unacked {
			if i == resendMax {
				break
			}
			m.sentAt = now
			s.post(o.pid, m.msg)
			n++
		}
	}
	return n
}

// inStream is the receiving side of a stream from one member.
type inStream struct {
	session  uint64
	expected uint64
}

func runAll(fns []func(bool), ok bool) {
	for _, f := range fns {
		f(ok)
	}
}
