package actors

import (
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// TestForwardNumbersJobsInNameOrder: a partition numbers the events one
// log entry forwards to partition 0 (srcIdx), one per job that runs there
// only, and partition 0 applies them once by (source, seq, index) (D3). A
// replay of the entry (after a restart or a take-over) must number them as
// the first run did: in map order, partition 0, having applied the first
// run's index 0 (job A) only, dropped the replay's index 0 (job B) as
// applied and applied its index 1 (job A) again. Each fresh partition here
// lists the jobs anew, as a replay does.
func TestForwardNumbersJobsInNameOrder(t *testing.T) {
	names := []string{"totals", "rises", "alerts", "zeta", "mid", "b", "a"}
	inputs := []*pb.Input{{Name: "readings"}}
	for run := 0; run < 20; run++ {
		p := &partition{g: &Gateway{log: &logWriter{}}, id: 3, jobs: map[string]*deployedJob{}}
		for _, name := range names {
			p.jobs[name] = &deployedJob{job: &pb.Job{Name: name}, plan: &pb.Plan{Inputs: inputs}}
		}
		p.jobs["per-device"] = &deployedJob{job: &pb.Job{Name: "per-device"}, plan: &pb.Plan{Inputs: inputs}, partitioned: true}
		p.updateForwardJobs()
		p.setApplied(7)
		p.forward(event{input: "readings", device: "press-01", payload: []byte(`{}`)})

		require.Len(t, p.forwardBuf, len(names), "one event per job on partition 0 only")
		for i, e := range p.forwardBuf {
			require.Equal(t, uint64(7), e.srcSeq)
			require.Equal(t, uint32(i), e.srcIdx)
			if i > 0 {
				require.Less(t, p.forwardBuf[i-1].job, e.job, "run %d: index %d is job %q, after %q", run, i, e.job, p.forwardBuf[i-1].job)
			}
		}
	}
}
