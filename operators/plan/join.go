package plan

import (
	"fmt"
	"strings"

	"github.com/millstream/millstream/operators/expr"
	"github.com/millstream/millstream/operators/sql"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// joinChain tracks the left side of a join while a chain of joins is
// planned left to right: which aliases it holds and, for each stream alias,
// how far the left row's time can lie from that alias's own event time.
type joinChain struct {
	root   string              // lower-case alias (or name) of the FROM source
	spans  map[string]timeSpan // stream aliases of the left side
	order  []string            // keys of spans, in join order (L3)
	nested bool                // the left side is an earlier join's row
}

// timeSpan is the range of (left row time - alias event time), exact and
// widened to whole DATEDIFF units as the join gaps are.
type timeSpan struct{ lo, hi gap }

// timeField is the field in which an earlier join of a chain records an
// alias's event time; '#' keeps it apart from names a query can write.
func timeField(alias string) string { return "#time:" + alias }

// joinSide reports which side of a stream join a bare alias names (the
// DATEDIFF(unit, left, right) special form): the left alias (lower case)
// or right.
func (c *stageCtx) joinSide(e sql.Expr) (member string, right, ok bool) {
	id, isID := e.(*sql.Ident)
	if !isID || len(id.Parts) != 1 {
		return "", false, false
	}
	n := strings.ToLower(id.Parts[0])
	switch {
	case n == c.alias || n == c.sourceName:
		if c.chain != nil {
			return c.chain.root, false, true
		}
		return n, false, true
	case n == c.rightAlias || n == c.rightName:
		return "", true, true
	}
	if f, known := c.leftAliases[n]; known {
		return strings.ToLower(f), false, true
	}
	return "", false, false
}

// sideTime is the event time of one side of a stream join as DATEDIFF in
// ON reads it: the join's own row times, or for an alias inside an earlier
// join of a chain the time field that join recorded.
func (c *stageCtx) sideTime(e sql.Expr) *pb.Expr {
	m, right, ok := c.joinSide(e)
	switch {
	case !ok:
		return nil
	case right:
		return &pb.Expr{Kind: &pb.Expr_JoinSideTime{JoinSideTime: 1}}
	case c.chain == nil || !c.chain.nested:
		return &pb.Expr{Kind: &pb.Expr_JoinSideTime{JoinSideTime: 0}}
	}
	if _, stream := c.chain.spans[m]; !stream {
		c.b.failAt(e.Position(), "%s is reference data: it has no event time for DATEDIFF", e)
	}
	return &pb.Expr{Kind: &pb.Expr_Field{Field: &pb.FieldRef{Path: []string{timeField(m)}}}}
}

// joinChain plans the JOINs of a stage left to right: every join but the
// last becomes a stage of its own (named stage#joinN, projecting the whole
// joined row) that the next join reads as its left side; the last join is
// the stage's own.
func (b *builder) joinChain(c *stageCtx, joins []*sql.Join) *pb.Join {
	root := c.alias
	if root == "" {
		root = c.sourceName
	}
	ch := &joinChain{root: root, spans: map[string]timeSpan{root: {}}, order: []string{root}}
	c.chain, c.leftAliases = ch, map[string]string{}
	var times []string
	for i, j := range joins[:len(joins)-1] {
		mid := &pb.Stage{Name: fmt.Sprintf("%s#join%d", c.st.Name, i+1), Source: c.st.Source, SourceAlias: c.st.SourceAlias,
			Projections: []*pb.Projection{{Kind: &pb.Projection_Wildcard{Wildcard: &pb.Wildcard{}}}}}
		mc := &stageCtx{b: b, st: mid, alias: c.alias, sourceName: c.sourceName, leftAliases: c.leftAliases, chain: ch, windowID: c.windowID}
		ch.nested = i > 0
		pj, lo, hi := b.join(mc, j)
		if i == 0 {
			pj.LeftTimeField = timeField(root)
			times = append(times, pj.LeftTimeField)
		}
		alias := strings.ToLower(pj.Alias)
		if !pj.Reference {
			pj.RightTimeField = timeField(alias)
			times = append(times, pj.RightTimeField)
		}
		mid.Join = pj
		b.plan.Stages = append(b.plan.Stages, mid)
		ch.joined(alias, pj, lo, hi)
		c.leftAliases[alias] = pj.Alias
		if n := strings.ToLower(j.Source.Name); n != alias && n != root && n != c.sourceName {
			c.leftAliases[n] = pj.Alias
		}
		c.st.Source = mid.Name
	}
	ch.nested = len(joins) > 1
	pj, _, _ := b.join(c, joins[len(joins)-1])
	pj.DropFields = times
	return pj
}

// joined updates the time spans after a join of the chain: a match is
// stamped with the later of its two times, an unmatched LEFT JOIN row with
// its left time plus the delay.
func (ch *joinChain) joined(alias string, pj *pb.Join, lo, hi gap) {
	if pj.Reference {
		return // rows keep their time
	}
	for _, m := range ch.order {
		s := ch.spans[m]
		n := timeSpan{lo: gap{s.lo.exact + max(0, lo.exact), s.lo.widened + max(0, lo.widened)},
			hi: gap{s.hi.exact + max(0, hi.exact), s.hi.widened + max(0, hi.widened)}}
		if pj.LeftOuter {
			d := pj.UnmatchedDelay
			n.lo = gap{min(n.lo.exact, s.lo.exact+d), min(n.lo.widened, s.lo.widened+d)}
			n.hi = gap{max(n.hi.exact, s.hi.exact+d), max(n.hi.widened, s.hi.widened+d)}
		}
		ch.spans[m] = n
	}
	ch.spans[alias] = timeSpan{lo: gap{max(0, -hi.exact), max(0, -hi.widened)}, hi: gap{max(0, -lo.exact), max(0, -lo.widened)}}
	ch.order = append(ch.order, alias)
}

// join plans one JOIN of a stage. A join whose ON has no DATEDIFF bound
// between the two sides is a reference-data join; its right side must be
// an input, loaded as a static table. It returns the range of right time
// minus left row time that ON admits (stream joins).
func (b *builder) join(c *stageCtx, j *sql.Join) (pj *pb.Join, lo, hi gap) {
	src := j.Source
	alias := src.Alias
	if alias == "" {
		alias = src.Name
	}
	_, taken := c.leftAliases[strings.ToLower(alias)]
	if taken || strings.EqualFold(alias, c.alias) || strings.EqualFold(alias, c.sourceName) && c.alias == "" {
		b.failAt(src.Pos, "two sources of the JOIN are called %q: give one an alias", alias)
	}
	c.rightAlias, c.rightName, c.rightField = strings.ToLower(alias), strings.ToLower(src.Name), alias
	pj = &pb.Join{Source: src.Name, Alias: alias, LeftOuter: j.Left}
	lo, hi, found := c.joinBounds(j.On)
	_, isStage := b.stages[strings.ToLower(src.Name)]
	switch {
	case found:
		c.streamJoin = true
		if isStage {
			pj.Source = b.stages[strings.ToLower(src.Name)]
			if src.TimestampBy != nil {
				b.failAt(src.TimestampBy.Position(), "TIMESTAMP BY applies to inputs only; %q is a WITH step", src.Name)
			}
		} else {
			b.useInput(src, c)
		}
		pj.MinGap, pj.MaxGap = lo.widened, hi.widened
		pj.UnmatchedDelay = hi.exact
		if hi.exact-lo.exact > maxWindow {
			b.failAt(j.On.Position(), "a join may span at most 7 days")
		}
	case isStage:
		b.failAt(j.On.Position(), "a JOIN of two streams needs a time bound in ON, such as DATEDIFF(second, %s, %s) BETWEEN 0 AND 10", c.sourceName, alias)
	default:
		if src.TimestampBy != nil {
			b.failAt(src.TimestampBy.Position(), "reference data has no TIMESTAMP BY (a JOIN without a DATEDIFF bound reads %q as reference data)", src.Name)
		}
		pj.Reference = true
		known := false
		for _, r := range b.plan.References {
			known = known || strings.EqualFold(r, src.Name)
		}
		if !known {
			b.plan.References = append(b.plan.References, src.Name)
		}
	}
	b.partitionBy(c, src)
	pj.On = c.row(j.On)
	if c.streamJoin {
		c.equiKeys(j.On, pj)
	}
	return pj, lo, hi
}

// equiKeys finds `left = right` conditions among the AND-ed parts of ON
// whose sides each read one side of the join only.
func (c *stageCtx) equiKeys(on sql.Expr, pj *pb.Join) {
	conj := splitAnd(on)
	for _, e := range conj {
		bin, ok := e.(*sql.Binary)
		if !ok || bin.Op != "=" {
			continue
		}
		l, r := bin.L, bin.R
		ls, rs := c.sides(l), c.sides(r)
		if ls == 2 && rs == 1 {
			l, r, ls, rs = r, l, rs, ls
		}
		if ls != 1 || rs != 2 {
			continue
		}
		right := c.row(r)
		expr.Walk(right, func(x *pb.Expr) {
			if f := x.GetField(); f != nil && len(f.Path) > 1 {
				f.Path = f.Path[1:] // evaluated on the right record itself
			}
		})
		pj.LeftKeys = append(pj.LeftKeys, c.row(l))
		pj.RightKeys = append(pj.RightKeys, right)
	}
}

// sides reports which join side an expression reads: 1 only the left
// (qualified by the left alias), 2 only the right (every field qualified
// by the right alias), 0 neither or both or unknown.
func (c *stageCtx) sides(e sql.Expr) int {
	left, right, other := false, false, false
	walk(e, func(x sql.Expr) {
		switch v := x.(type) {
		case *sql.Ident:
			if len(v.Parts) > 1 && (strings.EqualFold(v.Parts[0], c.rightAlias) || strings.EqualFold(v.Parts[0], c.rightName)) {
				right = true
			} else if len(v.Parts) > 1 && (strings.EqualFold(v.Parts[0], c.alias) || strings.EqualFold(v.Parts[0], c.sourceName)) {
				left = true
			} else if _, chained := c.leftAliases[strings.ToLower(v.Parts[0])]; len(v.Parts) > 1 && chained {
				left = true
			} else {
				other = true // unqualified: could be either side
			}
		case *sql.Call:
			if containsAggregate(v) || containsAnalytic(v) {
				other = true
			}
		}
	})
	switch {
	case other || left == right:
		return 0
	case left:
		return 1
	}
	return 2
}

type gap struct{ exact, widened int64 }

// aliasBound is what the DATEDIFF conditions of ON say about right time
// minus one left alias's time; nil where they set no limit.
type aliasBound struct{ lo, hi *gap }

// joinBounds finds the DATEDIFF(unit, a, b) bounds of a stream join among
// the AND-ed conditions of ON and returns the range of right time minus
// left row time they admit. In a chain each bound may name any stream
// alias of the left side; the left row's time lies within that alias's
// span of its event time, so every bound gives a range and ON needs all.
func (c *stageCtx) joinBounds(on sql.Expr) (lo, hi gap, found bool) {
	c.streamJoin = true // recognise the special form while looking
	defer func() { c.streamJoin = false }()
	bounds := map[string]*aliasBound{}
	var order []string
	// DATEDIFF counts unit boundaries: n boundaries is an elapsed time in
	// (n-1, n+1) units.
	limit := func(m string, unit, n int64, upper bool) {
		b := bounds[m]
		if b == nil {
			b = &aliasBound{}
			bounds[m] = b
			order = append(order, m)
		}
		if upper {
			g := gap{exact: n * unit, widened: n*unit + unit - 1}
			if b.hi != nil {
				g = gap{min(g.exact, b.hi.exact), min(g.widened, b.hi.widened)}
			}
			b.hi = &g
			return
		}
		g := gap{exact: n * unit, widened: n*unit - unit + 1}
		if b.lo != nil {
			g = gap{max(g.exact, b.lo.exact), max(g.widened, b.lo.widened)}
		}
		b.lo = &g
	}
	for _, e := range splitAnd(on) {
		switch x := e.(type) {
		case *sql.Between:
			if u, m, sign, ok := c.datediffSides(x.X); ok && !x.Not {
				l, okL := intLit(x.Lo)
				h, okH := intLit(x.Hi)
				if !okL || !okH {
					c.b.failAt(x.P, "the DATEDIFF bound of a join must be number constants")
				}
				if sign < 0 {
					l, h = -h, -l
				}
				limit(m, u, l, false)
				limit(m, u, h, true)
			}
		case *sql.Binary:
			u, m, sign, ok := c.datediffSides(x.L)
			other, op := x.R, x.Op
			if !ok {
				if u, m, sign, ok = c.datediffSides(x.R); ok {
					other, op = x.L, flip(x.Op)
				}
			}
			if !ok {
				continue
			}
			n, okN := intLit(other)
			if !okN {
				c.b.failAt(x.P, "the DATEDIFF bound of a join must be a number constant")
			}
			if sign < 0 {
				n, op = -n, flip(op)
			}
			switch op {
			case "=":
				limit(m, u, n, false)
				limit(m, u, n, true)
			case "<":
				limit(m, u, n-1, true)
			case "<=":
				limit(m, u, n, true)
			case ">":
				limit(m, u, n+1, false)
			case ">=":
				limit(m, u, n, false)
			}
		}
	}
	if len(order) == 0 {
		return gap{}, gap{}, false
	}
	var haveLo, haveHi bool
	for _, m := range order {
		b, sp := bounds[m], timeSpan{}
		if c.chain != nil {
			sp = c.chain.spans[m]
		}
		// right - row = (right - alias) - (row - alias)
		if b.lo != nil {
			g := gap{b.lo.exact - sp.hi.exact, b.lo.widened - sp.hi.widened}
			if haveLo {
				g = gap{max(g.exact, lo.exact), max(g.widened, lo.widened)}
			}
			lo, haveLo = g, true
		}
		if b.hi != nil {
			g := gap{b.hi.exact - sp.lo.exact, b.hi.widened - sp.lo.widened}
			if haveHi {
				g = gap{min(g.exact, hi.exact), min(g.widened, hi.widened)}
			}
			hi, haveHi = g, true
		}
	}
	if !haveLo || !haveHi {
		c.b.failAt(on.Position(), "the DATEDIFF bound of a join needs a lower and an upper limit (for example BETWEEN 0 AND 10)")
	}
	if lo.exact > hi.exact {
		c.b.failAt(on.Position(), "the DATEDIFF bound of the join admits no time difference")
	}
	return lo, hi, true
}

// datediffSides recognises DATEDIFF(unit, side, side) between the right
// side and a left alias and returns its unit in ticks, that alias (lower
// case) and +1 when it measures right minus left, -1 for left minus right.
func (c *stageCtx) datediffSides(e sql.Expr) (unit int64, member string, sign int, ok bool) {
	call, isCall := e.(*sql.Call)
	if !isCall || !strings.EqualFold(call.Name, "datediff") || len(call.Args) != 3 {
		return 0, "", 0, false
	}
	mA, rightA, okA := c.joinSide(call.Args[1])
	mB, rightB, okB := c.joinSide(call.Args[2])
	if !okA || !okB || rightA == rightB {
		return 0, "", 0, false
	}
	id, isID := call.Args[0].(*sql.Ident)
	if !isID || len(id.Parts) != 1 {
		return 0, "", 0, false
	}
	u, known := timeUnits[strings.ToLower(id.Parts[0])]
	if !known {
		c.b.failAt(id.P, "a join bound needs a unit of day, hour, minute, second, millisecond or microsecond")
	}
	if !rightA {
		member, sign = mA, 1
	} else {
		member, sign = mB, -1
	}
	if c.chain != nil {
		if _, stream := c.chain.spans[member]; !stream {
			c.b.failAt(call.P, "%s is reference data: it has no event time for DATEDIFF", member)
		}
	}
	return u, member, sign, true
}

func flip(op string) string {
	switch op {
	case "<":
		return ">"
	case "<=":
		return ">="
	case ">":
		return "<"
	case ">=":
		return "<="
	}
	return op
}
