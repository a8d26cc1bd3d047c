package exec

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Snapshot serializes the executor's whole state (X4).
func (ex *Executor) Snapshot() ([]byte, error) {
	s := &pb.ExecutorSnapshot{PlanFingerprint: ex.fingerprint}
	for _, in := range ex.inputList {
		s.Inputs = append(s.Inputs, in.snapshot())
	}
	for _, st := range ex.stages {
		if ss := st.snapshot(); ss != nil {
			s.Stages = append(s.Stages, ss)
		}
	}
	c := ex.counters
	s.Counters = &pb.Counters{
		EventsIn: c.EventsIn, EventsOut: c.EventsOut, DeadLettered: c.DeadLettered,
		LateAdjusted: c.LateAdjusted, LateDropped: c.LateDropped,
		OutOfOrderAdjusted: c.OutOfOrderAdjusted, OutOfOrderDropped: c.OutOfOrderDropped,
		EarlyDropped: c.EarlyDropped,
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("exec: marshal snapshot: %w", err)
	}
	return b, nil
}

// Restore replaces the executor's state with a snapshot taken from an
// executor of the same plan. On error the executor's state is unspecified
// and it should be discarded.
func (ex *Executor) Restore(b []byte) error {
	s := &pb.ExecutorSnapshot{}
	if err := proto.Unmarshal(b, s); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	if s.PlanFingerprint != ex.fingerprint {
		return fmt.Errorf("%w: taken from another plan (fingerprint %s, this plan %s)", ErrBadSnapshot, s.PlanFingerprint, ex.fingerprint)
	}
	for _, is := range s.Inputs {
		in, ok := ex.inputs[strings.ToLower(is.Name)]
		if !ok {
			return fmt.Errorf("%w: unknown input %q", ErrBadSnapshot, is.Name)
		}
		in.restore(is)
	}
	byName := map[string]stageNode{}
	for _, st := range ex.stages {
		byName[st.stageName()] = st
	}
	for _, ss := range s.Stages {
		st, ok := byName[ss.Name]
		if !ok {
			return fmt.Errorf("%w: unknown stage %q", ErrBadSnapshot, ss.Name)
		}
		if err := st.restore(ss); err != nil {
			return fmt.Errorf("exec: restore stage %q: %w", ss.Name, err)
		}
	}
	c := s.GetCounters()
	ex.counters = Counters{
		EventsIn: c.GetEventsIn(), EventsOut: c.GetEventsOut(), DeadLettered: c.GetDeadLettered(),
		LateAdjusted: c.GetLateAdjusted(), LateDropped: c.GetLateDropped(),
		OutOfOrderAdjusted: c.GetOutOfOrderAdjusted(), OutOfOrderDropped: c.GetOutOfOrderDropped(),
		EarlyDropped: c.GetEarlyDropped(),
	}
	return nil
}
