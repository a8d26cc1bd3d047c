package exec

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/millstream/millstream/operators/expr"
	"github.com/millstream/millstream/operators/udf"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// aggSpec is one compiled aggregate of a stage.
type aggSpec struct {
	fn         pb.Aggregate_Func
	arg        expr.Eval // nil: COUNT(*)
	distinct   bool
	orderBy    []expr.Eval
	desc       []bool
	topN       int
	percentile float64
	uda        *udf.Func // UDA: the JavaScript aggregate
}

// ordered reports whether the aggregate keeps items (values with sort keys).
func (s *aggSpec) keepsItems() bool {
	switch s.fn {
	case pb.Aggregate_COLLECT, pb.Aggregate_COLLECT_TOP, pb.Aggregate_TOP_ONE, pb.Aggregate_PERCENTILE_CONT, pb.Aggregate_PERCENTILE_DISC,
		pb.Aggregate_UDA:
		return true
	}
	return false
}

// acc is the running state of one aggregate in one group. One struct for
// all functions keeps a group to a single allocation of []acc.
type acc struct {
	n       int64   // rows counted (COUNT, AVG, STDEV...)
	i       int64   // integer sum
	f       float64 // float sum (once isFloat)
	isFloat bool
	mean    float64 // Welford
	m2      float64
	v       value.Value // MIN/MAX
	set     map[string]struct{}
	any     bool      // saw a non-NULL value
	items   []accItem // COLLECT, CollectTop, TopOne, percentiles
}

type accItem struct {
	keys []value.Value
	v    value.Value
}

// numeric reads a value an arithmetic aggregate can use. Numeric strings
// are accepted, as Stream Analytics casts implicitly to float.
func numeric(v value.Value) (i int64, f float64, isInt bool, err error) {
	switch v.Kind() {
	case value.BigInt, value.Bit:
		return v.Int(), 0, true, nil
	case value.Float:
		return 0, v.Float(), false, nil
	case value.String:
		if x, perr := strconv.ParseFloat(strings.TrimSpace(v.Str()), 64); perr == nil && !math.IsNaN(x) && !math.IsInf(x, 0) {
			return 0, x, false, nil
		}
	}
	return 0, 0, false, fmt.Errorf("%w: %s %s is not a number", expr.ErrType, v.Kind(), v)
}

// add folds one argument value (and, for ordered aggregates, its sort
// keys) into the accumulator.
func (a *acc) add(s *aggSpec, v value.Value, keys []value.Value, keyBuf *[]byte) error {
	if s.arg == nil { // COUNT(*)
		a.n++
		return nil
	}
	if v.IsNull() && s.fn != pb.Aggregate_UDA {
		return nil
	}
	if s.keepsItems() {
		if s.fn == pb.Aggregate_PERCENTILE_CONT {
			if _, _, _, err := numeric(v); err != nil {
				return err
			}
		}
		a.items = append(a.items, accItem{keys: append([]value.Value(nil), keys...), v: v})
		a.trim(s)
		return nil
	}
	switch s.fn {
	case pb.Aggregate_COUNT:
		if s.distinct {
			*keyBuf = value.AppendKey((*keyBuf)[:0], v)
			if a.set == nil {
				a.set = map[string]struct{}{}
			}
			if _, ok := a.set[string(*keyBuf)]; !ok {
				a.set[string(*keyBuf)] = struct{}{}
			}
			return nil
		}
		a.n++
	case pb.Aggregate_SUM, pb.Aggregate_AVG:
		i, f, isInt, err := numeric(v)
		if err != nil {
			return err
		}
		a.any = true
		a.n++
		if isInt && !a.isFloat {
			if r := a.i + i; (r > a.i) == (i > 0) || i == 0 {
				a.i = r
				return nil
			}
			f, isInt = float64(i), false
		}
		if !a.isFloat {
			a.isFloat = true
			a.f = float64(a.i)
			a.i = 0
		}
		if isInt {
			f = float64(i)
		}
		a.f += f
	case pb.Aggregate_MIN, pb.Aggregate_MAX:
		if !a.any {
			a.v, a.any = v, true
			return nil
		}
		c, err := value.Compare(v, a.v)
		if err != nil {
			return fmt.Errorf("%w: %w", expr.ErrType, err)
		}
		if (s.fn == pb.Aggregate_MIN && c < 0) || (s.fn == pb.Aggregate_MAX && c > 0) {
			a.v = v
		}
	default: // STDEV, STDEVP, VAR, VARP
		i, f, isInt, err := numeric(v)
		if err != nil {
			return err
		}
		if isInt {
			f = float64(i)
		}
		a.any = true
		a.n++
		d := f - a.mean
		a.mean += d / float64(a.n)
		a.m2 += d * (f - a.mean)
	}
	return nil
}

// merge folds another accumulator of the same aggregate (hopping windows
// combine panes).
func (a *acc) merge(s *aggSpec, b *acc) {
	if s.arg == nil {
		a.n += b.n
		return
	}
	if s.keepsItems() {
		a.items = append(append([]accItem(nil), a.items...), b.items...)
		a.trim(s)
		return
	}
	switch s.fn {
	case pb.Aggregate_COUNT:
		if s.distinct {
			if len(b.set) > 0 && a.set == nil {
				a.set = make(map[string]struct{}, len(b.set))
			}
			for k := range b.set {
				a.set[k] = struct{}{}
			}
			return
		}
		a.n += b.n
	case pb.Aggregate_SUM, pb.Aggregate_AVG:
		if !b.any {
			return
		}
		a.any = true
		a.n += b.n
		if !a.isFloat && !b.isFloat {
			if r := a.i + b.i; (r > a.i) == (b.i > 0) || b.i == 0 {
				a.i = r
				return
			}
		}
		af, bf := a.f, b.f
		if !a.isFloat {
			af = float64(a.i)
		}
		if !b.isFloat {
			bf = float64(b.i)
		}
		a.isFloat, a.f, a.i = true, af+bf, 0
	case pb.Aggregate_MIN, pb.Aggregate_MAX:
		if !b.any {
			return
		}
		if !a.any {
			a.v, a.any = b.v, true
			return
		}
		if c, err := value.Compare(b.v, a.v); err == nil && ((s.fn == pb.Aggregate_MIN && c < 0) || (s.fn == pb.Aggregate_MAX && c > 0)) {
			a.v = b.v
		}
	default:
		if !b.any {
			return
		}
		if !a.any {
			*a = *b
			return
		}
		n := a.n + b.n
		d := b.mean - a.mean
		a.mean += d * float64(b.n) / float64(n)
		a.m2 += b.m2 + d*d*float64(a.n)*float64(b.n)/float64(n)
		a.n = n
	}
}

func (a *acc) result(s *aggSpec) value.Value {
	if s.keepsItems() {
		return a.itemsResult(s)
	}
	switch s.fn {
	case pb.Aggregate_COUNT:
		if s.distinct {
			return value.Int(int64(len(a.set)))
		}
		return value.Int(a.n)
	case pb.Aggregate_SUM:
		if !a.any {
			return value.Value{}
		}
		if a.isFloat {
			return value.FloatValue(a.f)
		}
		return value.Int(a.i)
	case pb.Aggregate_AVG:
		if !a.any {
			return value.Value{}
		}
		total := a.f
		if !a.isFloat {
			total = float64(a.i)
		}
		return value.FloatValue(total / float64(a.n))
	case pb.Aggregate_MIN, pb.Aggregate_MAX:
		return a.v
	case pb.Aggregate_STDEV, pb.Aggregate_VAR:
		if a.n < 2 {
			return value.Value{}
		}
		v := a.m2 / float64(a.n-1)
		if s.fn == pb.Aggregate_STDEV {
			v = math.Sqrt(v)
		}
		return value.FloatValue(v)
	case pb.Aggregate_STDEVP, pb.Aggregate_VARP:
		if a.n < 1 {
			return value.Value{}
		}
		v := a.m2 / float64(a.n)
		if s.fn == pb.Aggregate_STDEVP {
			v = math.Sqrt(v)
		}
		return value.FloatValue(v)
	}
	return value.Value{}
}

func (a *acc) toProto() *pb.AggState {
	p := &pb.AggState{N: a.n, I: a.i, F: a.f, IsFloat: a.isFloat, Mean: a.mean, M2: a.m2, Any: a.any}
	for _, it := range a.items {
		p.Items = append(p.Items, &pb.AggItem{Keys: value.ValuesToProto(it.keys), Value: value.ToProto(it.v)})
	}
	if a.any && !a.v.IsNull() {
		p.V = value.ToProto(a.v)
	}
	if len(a.set) > 0 {
		keys := make([]string, 0, len(a.set))
		for k := range a.set {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p.Distinct = append(p.Distinct, []byte(k))
		}
	}
	return p
}

func accFromProto(p *pb.AggState) acc {
	a := acc{n: p.N, i: p.I, f: p.F, isFloat: p.IsFloat, mean: p.Mean, m2: p.M2, any: p.Any}
	for _, it := range p.Items {
		a.items = append(a.items, accItem{keys: value.ValuesFromProto(it.Keys), v: value.FromProto(it.Value)})
	}
	if p.V != nil {
		a.v = value.FromProto(p.V)
	}
	if len(p.Distinct) > 0 {
		a.set = make(map[string]struct{}, len(p.Distinct))
		for _, k := range p.Distinct {
			a.set[string(k)] = struct{}{}
		}
	}
	return a
}

// group is one group of a window: its key values and accumulators.
type group struct {
	key  []value.Value
	accs []acc
	seq  uint64
}

func (g *group) toProto() *pb.GroupState {
	p := &pb.GroupState{Key: value.ValuesToProto(g.key), Seq: g.seq}
	for i := range g.accs {
		p.Aggs = append(p.Aggs, g.accs[i].toProto())
	}
	return p
}

func groupFromProto(p *pb.GroupState, nAggs int) (*group, error) {
	if len(p.Aggs) != nAggs {
		return nil, fmt.Errorf("%w: group has %d aggregates, plan has %d", ErrBadSnapshot, len(p.Aggs), nAggs)
	}
	g := &group{key: value.ValuesFromProto(p.Key), accs: make([]acc, nAggs), seq: p.Seq}
	for i, a := range p.Aggs {
		g.accs[i] = accFromProto(a)
	}
	return g, nil
}

// groupSet is an insertion-ordered map of groups (emission order is the
// order groups were first seen, which makes output deterministic).
type groupSet struct {
	byKey    map[string]*group
	order    []*group
	keyBytes int64 // of the map's keys, for StateBytes
}

func (s *groupSet) get(key []byte) *group {
	if s.byKey == nil {
		return nil
	}
	return s.byKey[string(key)]
}

func (s *groupSet) put(key []byte, g *group) {
	if s.byKey == nil {
		s.byKey = map[string]*group{}
	}
	s.byKey[string(key)] = g
	s.order = append(s.order, g)
	s.keyBytes += int64(len(key))
}

func (s *groupSet) len() int { return len(s.order) }

// compareKeys orders items by OVER (ORDER BY ...): NULL is the smallest
// value; values that cannot be compared count as equal.
func compareKeys(s *aggSpec, x, y []value.Value) int {
	for i := range x {
		if i >= len(y) {
			break
		}
		var c int
		switch {
		case x[i].IsNull() && y[i].IsNull():
		case x[i].IsNull():
			c = -1
		case y[i].IsNull():
			c = 1
		default:
			c, _ = value.Compare(x[i], y[i])
		}
		if i < len(s.desc) && s.desc[i] {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

func (a *acc) sortItems(s *aggSpec) {
	sort.SliceStable(a.items, func(i, j int) bool { return compareKeys(s, a.items[i].keys, a.items[j].keys) < 0 })
}

// trim keeps CollectTop and TopOne state to what they can return.
func (a *acc) trim(s *aggSpec) {
	limit := s.topN
	if s.fn == pb.Aggregate_TOP_ONE {
		limit = 1
	}
	if limit <= 0 || len(a.items) <= 2*limit {
		return
	}
	a.sortItems(s)
	a.items = append([]accItem(nil), a.items[:limit]...)
}

// udaResult runs a JavaScript aggregate over the window's values: they
// are kept as items, in arrival order, with the event time as their one
// key (udaTime), so a hopping window's panes merge like COLLECT's and a
// snapshot holds them like any other items.
func (a *acc) udaResult(s *aggSpec) (value.Value, error) {
	vals := make([]value.Value, len(a.items))
	times := make([]int64, len(a.items))
	for i, it := range a.items {
		vals[i] = it.v
		if len(it.keys) > 0 {
			times[i] = it.keys[0].Ticks()
		}
	}
	return s.uda.Reduce(vals, times)
}

// udaTime is a UDA's one order key: the row's time, which accumulate
// receives as its timestamp.
func udaTime(c *expr.Ctx) value.Value { return value.Time(c.TS) }

func (a *acc) itemsResult(s *aggSpec) value.Value {
	switch s.fn {
	case pb.Aggregate_COLLECT:
		arr := &value.Array{Items: make([]value.Value, len(a.items))}
		for i, it := range a.items {
			arr.Items[i] = it.v
		}
		return value.ArrayValue(arr)
	case pb.Aggregate_TOP_ONE:
		if len(a.items) == 0 {
			return value.Value{}
		}
		a.sortItems(s)
		return a.items[0].v
	case pb.Aggregate_COLLECT_TOP:
		a.sortItems(s)
		n := min(s.topN, len(a.items))
		arr := &value.Array{Items: make([]value.Value, n)}
		rank := 1
		for i := 0; i < n; i++ {
			if i > 0 && compareKeys(s, a.items[i-1].keys, a.items[i].keys) != 0 {
				rank = i + 1
			}
			arr.Items[i] = value.RecordValue(&value.Record{Names: []string{"rank", "value"}, Vals: []value.Value{value.Int(int64(rank)), a.items[i].v}})
		}
		return value.ArrayValue(arr)
	}
	if len(a.items) == 0 {
		return value.Value{}
	}
	a.sortItems(s)
	n := len(a.items)
	if s.fn == pb.Aggregate_PERCENTILE_DISC {
		idx := int(math.Ceil(s.percentile*float64(n))) - 1
		return a.items[max(0, min(idx, n-1))].v
	}
	pos := s.percentile * float64(n-1)
	lo := int(math.Floor(pos))
	f0, _ := a.items[lo].v.AsFloat()
	if lo+1 >= n {
		return value.FloatValue(f0)
	}
	f1, _ := a.items[lo+1].v.AsFloat()
	return value.FloatValue(f0 + (pos-float64(lo))*(f1-f0))
}
