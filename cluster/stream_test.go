package cluster

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/require"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// The sending side of a stream: cumulative acks run callbacks in order,
// a restart renumbers what is unacknowledged in a new session, and a
// closed stream fails what is left.
func TestStreamAckRestartClose(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	s := &streams{from: "a#1", post: sys.Root.Send, out: map[string]*outStream{}}
	var acked []int
	var failed []int
	cb := func(i int) func(bool) {
		return func(ok bool) {
			if ok {
				acked = append(acked, i)
			} else {
				failed = append(failed, i)
			}
		}
	}
	o := s.open("b#1", "127.0.0.1:1")
	for i := 1; i <= 4; i++ {
		s.send(o, &pb.StreamMsg{Body: &pb.StreamMsg_CaughtUp{CaughtUp: &pb.CaughtUp{Partition: uint32(i)}}}, cb(i))
	}
	require.Equal(t, uint64(4), o.unacked[3].msg.Seq)
	runAll(s.ack("b#1", o.session+1, 4, false), true) // another session: ignored
	require.Empty(t, acked)
	runAll(s.ack("b#1", o.session, 2, false), true)
	require.Equal(t, []int{1, 2}, acked)

	old := o.session
	s.restart("b#1", old)
	require.NotEqual(t, old, o.session)
	require.Len(t, o.unacked, 2)
	require.Equal(t, uint64(1), o.unacked[0].msg.Seq, "renumbered from 1")
	require.Equal(t, uint32(3), o.unacked[0].msg.GetCaughtUp().Partition, "in the same order")
	require.Equal(t, uint64(3), o.next)
	runAll(s.ack("b#1", old, 9, false), true) // an ack of the old session: ignored
	require.Equal(t, []int{1, 2}, acked)

	runAll(s.closeStream("b#1"), false)
	require.Equal(t, []int{3, 4}, failed)
	require.Nil(t, s.out["b#1"])
}
