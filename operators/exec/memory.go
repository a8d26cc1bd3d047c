package exec

import "github.com/millstream/millstream/operators/value"

// StateBytes estimates the heap the executor's state takes: window groups
// and their accumulators (DISTINCT sets, collected items), sliding and
// session windows, join buffers, reorder buffers, analytic histories,
// MATCH_RECOGNIZE partitions and reference tables. It walks the state, so
// its cost grows with the state (about 12 ms per 100,000 groups, see
// BenchmarkStateBytes);
// the gateway calls it every few seconds per job to enforce the job's
// memory budget, not per event. The figures per entry are Go's sizes of
// the structures plus map overhead, checked against the heap in
// TestStateBytesTracksHeap.
func (ex *Executor) StateBytes() int64 {
	var n int64
	for _, in := range ex.inputList {
		n += in.stateBytes()
	}
	for _, st := range ex.stages {
		if s, ok := st.(interface{ stateBytes() int64 }); ok {
			n += s.stateBytes()
		}
	}
	for _, t := range ex.refs {
		for _, r := range t.rows {
			n += recordBytes(r)
		}
	}
	return n
}

// Sizes of the pieces of state, in bytes (amd64).
const (
	mapEntryBytes  = 56 // key header, value pointer, bucket share and load factor
	valueBytes     = 48 // value.Value
	rowBytes       = 64 // a buffered row: row, sequence number, heap slot
	groupBytes     = 96 // group header and its slice headers
	accBytes       = 160
	pointerBytes   = 8
	recordOverhead = 64 // Record header and its two slice headers
)

func valueSize(v value.Value) int64 {
	n := int64(valueBytes) + int64(len(v.Str()))
	switch v.Kind() {
	case value.RecordKind:
		n += recordBytes(v.Record())
	case value.ArrayKind:
		for _, it := range v.Array().Items {
			n += valueSize(it)
		}
	}
	return n
}

func valuesSize(vs []value.Value) int64 {
	var n int64
	for _, v := range vs {
		n += valueSize(v)
	}
	return n
}

func recordBytes(r *value.Record) int64 {
	if r == nil {
		return 0
	}
	n := int64(recordOverhead)
	for i, name := range r.Names {
		n += 16 + int64(len(name)) + valueSize(r.Vals[i])
	}
	return n
}

func (in *inputOp) stateBytes() int64 {
	n := int64(len(in.tlIndex)) * mapEntryBytes
	for _, tl := range in.tls {
		if tl == nil {
			continue
		}
		n += 128 + int64(len(tl.key)) + int64(len(tl.srcs))*32
		n += bufferedBytes(tl.buf)
	}
	return n
}

func bufferedBytes(h timeHeap[bufferedRow]) int64 {
	n := int64(cap(h)) * rowBytes
	for _, b := range h {
		n += recordBytes(b.rec)
	}
	return n
}

func (s *groupSet) stateBytes() int64 {
	// The order slice, not the map: walking a slice is several times
	// faster, and it holds the same groups.
	n := int64(len(s.byKey))*mapEntryBytes + int64(cap(s.order))*pointerBytes + s.keyBytes
	for _, g := range s.order {
		n += g.stateBytes()
	}
	return n
}

func (g *group) stateBytes() int64 {
	n := int64(groupBytes) + valuesSize(g.key)
	for i := range g.accs {
		n += g.accs[i].stateBytes()
	}
	return n
}

func (a *acc) stateBytes() int64 {
	n := int64(accBytes) + valueSize(a.v) - valueBytes
	for k := range a.set {
		n += mapEntryBytes + int64(len(k))
	}
	for _, it := range a.items {
		n += 64 + valueSize(it.v) + valuesSize(it.keys)
	}
	return n
}

func (op *aggOp) stateBytes() int64 {
	var n int64
	for _, st := range op.tls {
		if s, ok := st.(interface{ stateBytes() int64 }); ok {
			n += s.stateBytes()
		}
	}
	return n + op.an.stateBytes()
}

func (s *paneState) stateBytes() int64 {
	n := s.merged.stateBytes()
	for _, p := range s.panes {
		n += 32 + p.groups.stateBytes()
	}
	return n
}

func (s *sessionState) stateBytes() int64 {
	n := int64(cap(s.pending)) * 40
	for k, ss := range s.sessions {
		n += mapEntryBytes + int64(len(k)) + 96 + int64(len(ss.part)) + ss.groups.stateBytes()
	}
	return n
}

func (s *slidingState) stateBytes() int64 {
	n := int64(cap(s.pending)) * 40
	for _, g := range s.groups {
		n += mapEntryBytes + 96 + 2*int64(len(g.keyStr)) + valuesSize(g.key) + int64(cap(g.events))*56
		for _, e := range g.events {
			n += valuesSize(e.args)
			for _, k := range e.keys {
				n += 24 + valuesSize(k)
			}
		}
	}
	return n
}

func (j *streamJoin) stateBytes() int64 {
	n := bufferedBytes(j.pending)
	for i := range j.sides {
		s := &j.sides[i]
		n += int64(cap(s.rows)) * pointerBytes
		for _, r := range s.rows {
			n += 64 + int64(len(r.key)) + recordBytes(r.rec)
		}
		for k, rows := range s.index {
			n += mapEntryBytes + int64(len(k)) + 24 + int64(cap(rows))*pointerBytes
		}
	}
	return n
}

func (s *analyticSet) stateBytes() int64 {
	if s == nil {
		return 0
	}
	var n int64
	for _, op := range s.ops {
		for _, byKey := range op.hist {
			for k, h := range byKey {
				n += mapEntryBytes + int64(len(k)) + 48 + int64(cap(h.entries))*(8+valueBytes)
				for _, e := range h.entries {
					n += int64(len(e.v.Str()))
				}
			}
		}
	}
	return n
}

func (s *selectOp) stateBytes() int64 { return s.an.stateBytes() }

func (u *unionOp) stateBytes() int64 {
	var n int64
	for _, b := range u.bufs {
		n += bufferedBytes(b)
	}
	return n
}

func (m *matchNode) stateBytes() int64 {
	var n int64
	for _, t := range m.tls {
		n += bufferedBytes(t.pending)
		for k, p := range t.parts {
			n += mapEntryBytes + int64(len(k)) + int64(cap(p.events))*rowBytes
			for _, e := range p.events {
				n += recordBytes(e.rec)
			}
		}
	}
	return n
}
