package exec

import (
	"fmt"
	"math"

	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// unionOp merges the rows of several stages (UNION, which keeps
// duplicates) in event-time order. Each source is in order on its own (X1)
// but sources run on different clocks, so a row waits until every source's
// watermark has passed its time. Output rows are on timeline 0: substreams
// of the sources are merged.
type unionOp struct {
	ex   *Executor
	name string
	wm   []int64
	bufs []timeHeap[bufferedRow]
	seq  uint64
	out  []node
	r    row
}

// unionInput is the node one source of a union pushes into.
type unionInput struct {
	u   *unionOp
	idx int
}

func newUnionOp(ex *Executor, st *pb.Stage) *unionOp {
	u := &unionOp{ex: ex, name: st.Name, wm: make([]int64, len(st.Union)), bufs: make([]timeHeap[bufferedRow], len(st.Union))}
	for i := range u.wm {
		u.wm[i] = math.MinInt64
	}
	return u
}

func (u *unionOp) stageName() string { return u.name }
func (u *unionOp) addOut(n node)     { u.out = append(u.out, n) }

// A union has no upstream of its own: its sources push through unionInput.
func (u *unionOp) push(*row)            {}
func (u *unionOp) advance(int32, int64) {}

func (in unionInput) push(r *row) {
	u := in.u
	c := r.rec.Copy()
	u.bufs[in.idx].push(bufferedRow{row: row{ts: r.ts, rec: c}, seq: u.seq})
	u.seq++
	if r.ts > u.wm[in.idx] {
		u.wm[in.idx] = r.ts
	}
	u.release()
}

func (in unionInput) advance(_ int32, wm int64) {
	u := in.u
	if wm > u.wm[in.idx] {
		u.wm[in.idx] = wm
	}
	u.release()
	low := u.low()
	for _, n := range u.out {
		n.advance(-1, low)
	}
}

func (u *unionOp) low() int64 {
	low := int64(math.MaxInt64)
	for _, w := range u.wm {
		low = min(low, w)
	}
	return low
}

// release emits buffered rows up to the lowest source watermark, oldest
// first across all sources.
func (u *unionOp) release() {
	low := u.low()
	for {
		best := -1
		var bt int64
		var bs uint64
		for i := range u.bufs {
			if u.bufs[i].Len() == 0 {
				continue
			}
			t, s := u.bufs[i][0].order()
			if t <= low && (best < 0 || t < bt || (t == bt && s < bs)) {
				best, bt, bs = i, t, s
			}
		}
		if best < 0 {
			return
		}
		br := u.bufs[best].pop()
		u.r = br.row
		for _, n := range u.out {
			n.push(&u.r)
		}
	}
}

func (u *unionOp) snapshot() *pb.StageState {
	st := &pb.StageState{Name: u.name, NextSeq: u.seq}
	for i := range u.bufs {
		us := &pb.UnionSource{Watermark: u.wm[i]}
		for _, br := range u.bufs[i] {
			us.Rows = append(us.Rows, &pb.RowState{Ts: br.ts, Record: value.RecordToProto(br.rec), Seq: br.seq})
		}
		st.Union = append(st.Union, us)
	}
	return st
}

func (u *unionOp) restore(st *pb.StageState) error {
	if len(st.Union) != len(u.bufs) {
		return fmt.Errorf("%w: union %q has %d sources, snapshot %d", ErrBadSnapshot, u.name, len(u.bufs), len(st.Union))
	}
	u.seq = st.NextSeq
	for i, us := range st.Union {
		u.wm[i] = us.Watermark
		u.bufs[i] = nil
		for _, r := range us.Rows {
			u.bufs[i].push(bufferedRow{row: row{ts: r.Ts, rec: value.RecordFromProto(r.Record)}, seq: r.Seq})
		}
	}
	return nil
}
