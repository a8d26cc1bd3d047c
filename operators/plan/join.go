package plan

import (
	"strings"

	"github.com/millstream/millstream/operators/expr"
	"github.com/millstream/millstream/operators/sql"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// joinSide reports which side of a stream join a bare alias names (the
// DATEDIFF(unit, left, right) special form): 0 left, 1 right.
func (c *stageCtx) joinSide(e sql.Expr) (int32, bool) {
	id, ok := e.(*sql.Ident)
	if !ok || len(id.Parts) != 1 {
		return 0, false
	}
	switch n := strings.ToLower(id.Parts[0]); {
	case n == c.alias || n == c.sourceName:
		return 0, true
	case n == c.rightAlias || n == c.rightName:
		return 1, true
	}
	return 0, false
}

// join plans the JOIN of a stage. A join whose ON has no DATEDIFF bound
// between the two sides is a reference-data join; its right side must be
// an input, loaded as a static table.
func (b *builder) join(c *stageCtx, j *sql.Join) *pb.Join {
	src := j.Source
	alias := src.Alias
	if alias == "" {
		alias = src.Name
	}
	if strings.EqualFold(alias, c.alias) || strings.EqualFold(alias, c.sourceName) && c.alias == "" {
		b.failAt(src.Pos, "both sides of the JOIN are called %q: give one an alias", alias)
	}
	c.rightAlias, c.rightName, c.rightField = strings.ToLower(alias), strings.ToLower(src.Name), alias
	pj := &pb.Join{Source: src.Name, Alias: alias, LeftOuter: j.Left}
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
	pj.On = c.row(j.On)
	if c.streamJoin {
		c.equiKeys(j.On, pj)
	}
	return pj
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

// joinBounds finds the DATEDIFF(unit, a, b) bound of a stream join among the
// AND-ed conditions of ON, as the range of right time minus left time.
func (c *stageCtx) joinBounds(on sql.Expr) (lo, hi gap, found bool) {
	c.streamJoin = true // recognise the special form while looking
	defer func() { c.streamJoin = false }()
	conj := splitAnd(on)
	var loU, hiU *int64
	var unit int64
	set := func(p **int64, v int64) { x := v; *p = &x }
	for _, e := range conj {
		switch x := e.(type) {
		case *sql.Between:
			if u, sign, ok := c.datediffSides(x.X); ok && !x.Not {
				l, okL := intLit(x.Lo)
				h, okH := intLit(x.Hi)
				if !okL || !okH {
					c.b.failAt(x.P, "the DATEDIFF bound of a join must be number constants")
				}
				if sign < 0 {
					l, h = -h, -l
				}
				unit = u
				set(&loU, l)
				set(&hiU, h)
			}
		case *sql.Binary:
			u, sign, ok := c.datediffSides(x.L)
			other, op := x.R, x.Op
			if !ok {
				if u, sign, ok = c.datediffSides(x.R); ok {
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
			unit = u
			if sign < 0 {
				n, op = -n, flip(op)
			}
			switch op {
			case "=":
				set(&loU, n)
				set(&hiU, n)
			case "<":
				set(&hiU, n-1)
			case "<=":
				set(&hiU, n)
			case ">":
				set(&loU, n+1)
			case ">=":
				set(&loU, n)
			}
		}
	}
	if unit == 0 {
		return gap{}, gap{}, false
	}
	if loU == nil || hiU == nil {
		c.b.failAt(on.Position(), "the DATEDIFF bound of a join needs a lower and an upper limit (for example BETWEEN 0 AND 10)")
	}
	if *loU > *hiU {
		c.b.failAt(on.Position(), "the DATEDIFF bound of the join admits no time difference")
	}
	// DATEDIFF counts unit boundaries: n boundaries is an elapsed time in
	// (n-1, n+1) units.
	lo = gap{exact: *loU * unit, widened: *loU*unit - unit + 1}
	hi = gap{exact: *hiU * unit, widened: *hiU*unit + unit - 1}
	return lo, hi, true
}

// datediffSides recognises DATEDIFF(unit, side, side) and returns its unit
// in ticks and +1 when it measures right minus left, -1 for left minus right.
func (c *stageCtx) datediffSides(e sql.Expr) (unit int64, sign int, ok bool) {
	call, isCall := e.(*sql.Call)
	if !isCall || !strings.EqualFold(call.Name, "datediff") || len(call.Args) != 3 {
		return 0, 0, false
	}
	a, okA := c.joinSide(call.Args[1])
	bSide, okB := c.joinSide(call.Args[2])
	if !okA || !okB || a == bSide {
		return 0, 0, false
	}
	id, isID := call.Args[0].(*sql.Ident)
	if !isID || len(id.Parts) != 1 {
		return 0, 0, false
	}
	u, known := timeUnits[strings.ToLower(id.Parts[0])]
	if !known {
		c.b.failAt(id.P, "a join bound needs a unit of day, hour, minute, second, millisecond or microsecond")
	}
	if a == 0 {
		return u, 1, true
	}
	return u, -1, true
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
