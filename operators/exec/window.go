package exec

import (
	"fmt"
	"sort"

	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// alignUp returns the smallest t' >= t with t' = off (mod p): the end of
// the window (t'-p, t'] that holds t.
func alignUp(t, p, off int64) int64 {
	return off + (floorDiv(t-off-1, p)+1)*p
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// paneState runs tumbling, hopping and snapshot windows. Rows are folded
// into panes of gcd(size, hop); a window is the merge of the panes it
// covers, so each row is aggregated once however many windows hold it.
// A snapshot window is a tumbling window of one tick.
type paneState struct {
	op                *aggOp
	size, hop, offset int64
	pane              int64
	panes             []*pane // ascending end
	nextEnd           int64
	hasNext           bool
	seq               uint64
	merged            groupSet
	mergeKey          []byte
}

type pane struct {
	end    int64
	groups groupSet
}

func newPaneState(op *aggOp, size, hop, offset int64) *paneState {
	return &paneState{op: op, size: size, hop: hop, offset: offset, pane: gcd(size, hop)}
}

func (s *paneState) add(ts int64, key []byte, _ []byte) error {
	pe := alignUp(ts, s.pane, s.offset)
	var p *pane
	n := len(s.panes)
	if n > 0 && s.panes[n-1].end == pe {
		p = s.panes[n-1]
	} else {
		i := sort.Search(n, func(i int) bool { return s.panes[i].end >= pe })
		if i < n && s.panes[i].end == pe {
			p = s.panes[i]
		} else {
			p = &pane{end: pe}
			s.panes = append(s.panes, nil)
			copy(s.panes[i+1:], s.panes[i:])
			s.panes[i] = p
		}
	}
	g := p.groups.get(key)
	if g == nil {
		g = s.op.newGroup(s.seq)
		s.seq++
		p.groups.put(key, g)
	}
	if we := alignUp(pe, s.hop, s.offset); !s.hasNext || we < s.nextEnd {
		s.nextEnd, s.hasNext = we, true
	}
	return s.op.fold(g)
}

func (s *paneState) close(wm int64) {
	for s.hasNext && s.nextEnd < wm {
		e := s.nextEnd
		lo := e - s.size
		i := sort.Search(len(s.panes), func(i int) bool { return s.panes[i].end > lo })
		if i == len(s.panes) {
			s.hasNext = false
			break
		}
		if s.panes[i].end > e { // nothing in this window: jump to the next one with data
			s.nextEnd = alignUp(s.panes[i].end, s.hop, s.offset)
			continue
		}
		j := i
		for j < len(s.panes) && s.panes[j].end <= e {
			j++
		}
		s.emitWindow(e, s.panes[i:j])
		s.nextEnd = e + s.hop
		keepAfter := s.nextEnd - s.size
		k := sort.Search(len(s.panes), func(i int) bool { return s.panes[i].end > keepAfter })
		for x := 0; x < k; x++ {
			s.panes[x] = nil
		}
		s.panes = s.panes[k:]
	}
	if len(s.panes) == 0 {
		s.hasNext = false
		s.panes = nil
	}
}

func (s *paneState) emitWindow(end int64, panes []*pane) {
	if len(panes) == 1 {
		for _, g := range panes[0].groups.order {
			s.op.emit(end, g.key, g.accs)
		}
		return
	}
	s.merged = groupSet{}
	for _, p := range panes {
		for _, g := range p.groups.order {
			s.mergeKey = value.AppendKeys(s.mergeKey[:0], g.key)
			m := s.merged.get(s.mergeKey)
			if m == nil {
				m = &group{key: g.key, accs: make([]acc, len(g.accs))}
				s.merged.put(s.mergeKey, m)
			}
			for a := range g.accs {
				m.accs[a].merge(&s.op.aggs[a], &g.accs[a])
			}
		}
	}
	for _, g := range s.merged.order {
		s.op.emit(end, g.key, g.accs)
	}
	s.merged = groupSet{}
}

func (s *paneState) toProto() *pb.WindowTimeline {
	wt := &pb.WindowTimeline{NextEnd: s.nextEnd, HasNextEnd: s.hasNext, NextSeq: s.seq}
	for _, p := range s.panes {
		pp := &pb.Pane{End: p.end}
		for _, g := range p.groups.order {
			pp.Groups = append(pp.Groups, g.toProto())
		}
		wt.Panes = append(wt.Panes, pp)
	}
	return wt
}

func (s *paneState) fromProto(wt *pb.WindowTimeline) error {
	s.nextEnd, s.hasNext, s.seq = wt.NextEnd, wt.HasNextEnd, wt.NextSeq
	s.panes = nil
	var key []byte
	for _, pp := range wt.Panes {
		if n := len(s.panes); n > 0 && s.panes[n-1].end >= pp.End {
			return fmt.Errorf("%w: panes out of order", ErrBadSnapshot)
		}
		p := &pane{end: pp.End}
		for _, gp := range pp.Groups {
			g, err := groupFromProto(gp, len(s.op.aggs))
			if err != nil {
				return err
			}
			key = value.AppendKeys(key[:0], g.key)
			p.groups.put(key, g)
		}
		s.panes = append(s.panes, p)
	}
	return nil
}

// sessionState runs session windows: per PARTITION BY key, a session
// starts at its first row, grows while rows come within the timeout, and
// closes at last row + timeout or at the first max-duration check point
// (multiples of maxDuration) past start + maxDuration, whichever is first.
type sessionState struct {
	op              *aggOp
	timeout, maxDur int64
	sessions        map[string]*session
	pending         timeHeap[sessionEntry]
	seq             uint64
}

type session struct {
	part    string
	anchor  int64
	last    int64
	closeAt int64
	groups  groupSet
	seq     uint64
	gseq    uint64
}

type sessionEntry struct {
	closeAt int64
	seq     uint64
	part    string
}

func (s *sessionState) closeTime(ss *session) int64 {
	checkpoint := (floorDiv(ss.anchor+s.maxDur, s.maxDur) + 1) * s.maxDur
	return min(ss.last+s.timeout, checkpoint)
}

func (s *sessionState) add(ts int64, key []byte, part []byte) error {
	ss := s.sessions[string(part)]
	if ss == nil {
		ss = &session{part: string(part), anchor: ts, last: ts, seq: s.seq}
		s.seq++
		s.sessions[ss.part] = ss
		ss.closeAt = s.closeTime(ss)
		s.pending.push(sessionEntry{closeAt: ss.closeAt, seq: ss.seq, part: ss.part})
	} else {
		ss.last = ts
		ss.closeAt = s.closeTime(ss)
	}
	g := ss.groups.get(key)
	if g == nil {
		g = s.op.newGroup(ss.gseq)
		ss.gseq++
		ss.groups.put(key, g)
	}
	return s.op.fold(g)
}

func (s *sessionState) close(wm int64) {
	for s.pending.Len() > 0 && s.pending.minTime() < wm {
		e := s.pending.pop()
		ss := s.sessions[e.part]
		if ss == nil || ss.seq != e.seq {
			continue
		}
		if ss.closeAt != e.closeAt { // extended since: wait for its new end
			s.pending.push(sessionEntry{closeAt: ss.closeAt, seq: ss.seq, part: ss.part})
			continue
		}
		delete(s.sessions, e.part)
		for _, g := range ss.groups.order {
			s.op.emit(ss.closeAt, g.key, g.accs)
		}
	}
}

func (s *sessionState) toProto() *pb.WindowTimeline {
	wt := &pb.WindowTimeline{NextSeq: s.seq}
	list := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		list = append(list, ss)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].seq < list[j].seq })
	for _, ss := range list {
		sp := &pb.Session{Partition: []byte(ss.part), Start: ss.anchor, Last: ss.last, Anchor: ss.anchor, Seq: ss.seq}
		for _, g := range ss.groups.order {
			sp.Groups = append(sp.Groups, g.toProto())
		}
		wt.Sessions = append(wt.Sessions, sp)
	}
	return wt
}

func (s *sessionState) fromProto(wt *pb.WindowTimeline) error {
	s.seq = wt.NextSeq
	s.sessions = map[string]*session{}
	s.pending = nil
	var key []byte
	for _, sp := range wt.Sessions {
		ss := &session{part: string(sp.Partition), anchor: sp.Anchor, last: sp.Last, seq: sp.Seq}
		for _, gp := range sp.Groups {
			g, err := groupFromProto(gp, len(s.op.aggs))
			if err != nil {
				return err
			}
			key = value.AppendKeys(key[:0], g.key)
			ss.groups.put(key, g)
			ss.gseq = max(ss.gseq, g.seq+1)
		}
		ss.closeAt = s.closeTime(ss)
		s.sessions[ss.part] = ss
		s.pending.push(sessionEntry{closeAt: ss.closeAt, seq: ss.seq, part: ss.part})
	}
	return nil
}

// slidingState runs sliding windows: for each group it emits at every
// instant its content changes, when a row enters (t) and when one leaves
// (t + size), over the rows in (x - size, x].
type slidingState struct {
	op      *aggOp
	size    int64
	groups  map[string]*slGroup
	pending timeHeap[slEntry]
	seq     uint64
	scratch []acc
}

type slGroup struct {
	keyStr   string
	key      []value.Value
	events   []slEvent
	seq      uint64
	lastEmit int64
	hasEmit  bool
	npending int
}

type slEvent struct {
	ts   int64
	args []value.Value
	keys [][]value.Value // ORDER BY keys per aggregate; nil when none
}

type slEntry struct {
	x   int64
	seq uint64
	key string
}

func (s *slidingState) schedule(g *slGroup, x int64) {
	s.pending.push(slEntry{x: x, seq: g.seq, key: g.keyStr})
	g.npending++
}

func (s *slidingState) add(ts int64, key []byte, _ []byte) error {
	if s.groups == nil {
		s.groups = map[string]*slGroup{}
	}
	g := s.groups[string(key)]
	if g == nil {
		ng := s.op.newGroup(s.seq)
		g = &slGroup{keyStr: string(key), key: ng.key, seq: s.seq}
		s.seq++
		s.groups[g.keyStr] = g
	}
	args := make([]value.Value, len(s.op.argVals))
	copy(args, s.op.argVals)
	var keys [][]value.Value
	for i, k := range s.op.orderVals {
		if len(k) > 0 {
			if keys == nil {
				keys = make([][]value.Value, len(s.op.orderVals))
			}
			keys[i] = append([]value.Value(nil), k...)
		}
	}
	g.events = append(g.events, slEvent{ts: ts, args: args, keys: keys})
	s.schedule(g, ts)
	s.schedule(g, ts+s.size)
	return nil
}

func (s *slidingState) close(wm int64) {
	for s.pending.Len() > 0 && s.pending.minTime() < wm {
		e := s.pending.pop()
		g := s.groups[e.key]
		if g == nil {
			continue
		}
		g.npending--
		if !(g.hasEmit && g.lastEmit == e.x) {
			g.lastEmit, g.hasEmit = e.x, true
			s.emitAt(g, e.x)
		}
		if g.npending == 0 && len(g.events) == 0 {
			delete(s.groups, e.key)
		}
	}
}

func (s *slidingState) emitAt(g *slGroup, x int64) {
	lo := x - s.size
	k := 0
	for k < len(g.events) && g.events[k].ts <= lo {
		k++
	}
	if k > 0 {
		clear(g.events[:k])
		g.events = g.events[k:] // O(1); append compacts when it grows
	}
	n := 0
	for n < len(g.events) && g.events[n].ts <= x {
		n++
	}
	if n == 0 {
		return
	}
	if cap(s.scratch) < len(s.op.aggs) {
		s.scratch = make([]acc, len(s.op.aggs))
	}
	accs := s.scratch[:len(s.op.aggs)]
	for i := range accs {
		accs[i] = acc{}
	}
	for _, ev := range g.events[:n] {
		for i := range s.op.aggs {
			// Types were checked on the way in; an incomparable MIN/MAX
			// value is skipped rather than failing the whole window.
			var keys []value.Value
			if ev.keys != nil {
				keys = ev.keys[i]
			}
			_ = accs[i].add(&s.op.aggs[i], ev.args[i], keys, &s.op.distBuf)
		}
	}
	s.op.emit(x, g.key, accs)
}

func (s *slidingState) toProto() *pb.WindowTimeline {
	wt := &pb.WindowTimeline{NextSeq: s.seq}
	list := make([]*slGroup, 0, len(s.groups))
	for _, g := range s.groups {
		list = append(list, g)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].seq < list[j].seq })
	byKey := map[string]*pb.SlidingGroup{}
	for _, g := range list {
		sg := &pb.SlidingGroup{Key: value.ValuesToProto(g.key), Seq: g.seq}
		for _, ev := range g.events {
			se := &pb.SlidingEvent{Ts: ev.ts, Args: value.ValuesToProto(ev.args)}
			for _, k := range ev.keys {
				se.Keys = append(se.Keys, &pb.ValueList{Values: value.ValuesToProto(k)})
			}
			sg.Events = append(sg.Events, se)
		}
		byKey[g.keyStr] = sg
		wt.Sliding = append(wt.Sliding, sg)
	}
	for _, e := range s.pending {
		if sg := byKey[e.key]; sg != nil {
			sg.Pending = append(sg.Pending, e.x)
		}
	}
	for _, sg := range wt.Sliding {
		sort.Slice(sg.Pending, func(i, j int) bool { return sg.Pending[i] < sg.Pending[j] })
	}
	return wt
}

func (s *slidingState) fromProto(wt *pb.WindowTimeline) error {
	s.seq = wt.NextSeq
	s.groups = map[string]*slGroup{}
	s.pending = nil
	for _, sg := range wt.Sliding {
		g := &slGroup{key: value.ValuesFromProto(sg.Key), seq: sg.Seq}
		g.keyStr = string(value.AppendKeys(nil, g.key))
		for _, ev := range sg.Events {
			args := value.ValuesFromProto(ev.Args)
			if len(args) != len(s.op.aggs) {
				return fmt.Errorf("%w: sliding event has %d arguments, plan has %d aggregates", ErrBadSnapshot, len(args), len(s.op.aggs))
			}
			e := slEvent{ts: ev.Ts, args: args}
			for _, k := range ev.Keys {
				e.keys = append(e.keys, value.ValuesFromProto(k.Values))
			}
			g.events = append(g.events, e)
		}
		s.groups[g.keyStr] = g
		for _, x := range sg.Pending {
			s.schedule(g, x)
		}
	}
	return nil
}
