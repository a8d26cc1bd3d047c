package sql

import (
	"strings"
)

// Query is a whole job query: CTEs, then one or more SELECT statements.
type Query struct {
	Tables  []*Table
	With    []*CTE
	Selects []*Select
}

// Table is CREATE TABLE: the schema of an input.
type Table struct {
	Pos     Pos
	Name    string
	Columns []Column
}

// Column is one column of CREATE TABLE.
type Column struct {
	Pos  Pos
	Name string
	Type string // as in Cast.Type
}

// CTE is one `name AS (SELECT ...)` of a WITH block.
type CTE struct {
	Pos    Pos
	Name   string
	Select *Select
}

// Select is one SELECT statement.
type Select struct {
	Pos     Pos
	Items   []*SelectItem
	Into    string
	IntoPos Pos
	From    *Source
	Where   Expr
	GroupBy []Expr
	Having  Expr
	// Joins are the JOINs of the FROM clause in order: each joins the
	// result of the ones before it (left to right).
	Joins []*Join
	// Union is the next SELECT of a UNION (ALL) chain.
	Union    *Select
	UnionPos Pos
}

// Join is [INNER] JOIN or LEFT [OUTER] JOIN.
type Join struct {
	Pos    Pos
	Left   bool
	Source *Source
	On     Expr
}

// Apply is CROSS APPLY or OUTER APPLY of a table-valued function.
type Apply struct {
	Pos   Pos
	Outer bool
	Func  string
	Arg   Expr
	Alias string
}

// SelectItem is `*`, `path.*`, or `expr [AS alias]`.
type SelectItem struct {
	Pos      Pos
	Star     bool
	StarPath []string // path before .* (empty for a bare *)
	Expr     Expr
	Alias    string
}

// Source is the FROM clause.
type Source struct {
	Pos         Pos
	Name        string
	Alias       string
	TimestampBy Expr
	Over        []Expr
	PartitionBy []Expr
	Applies     []*Apply
	Match       *MatchRecognize
}

// MatchRecognize is MATCH_RECOGNIZE ( ... ) on a source.
type MatchRecognize struct {
	Pos          Pos
	Limit        *Call
	PartitionBy  []Expr
	Measures     []*SelectItem
	SkipPastLast bool
	Pattern      *Pattern
	Define       []*Define
	Alias        string
}

// Define is one DEFINE variable AS condition.
type Define struct {
	Pos  Pos
	Var  string
	Cond Expr
}

// Pattern kinds.
const (
	PatVar = iota
	PatSeq
	PatAlt
)

// Pattern is a node of a MATCH_RECOGNIZE PATTERN.
type Pattern struct {
	Kind     int
	Var      string
	Items    []*Pattern
	Min, Max int // quantifier; Max < 0: unbounded
}

// Expr is an expression node.
type Expr interface {
	Position() Pos
	String() string
}

// Literal kinds.
const (
	LitNull = iota
	LitNumber
	LitString
	LitBool
)

// Literal is a constant.
type Literal struct {
	P    Pos
	Kind int
	Text string
}

// Ident is a (possibly dotted) name: field, alias.field, record.field.
type Ident struct {
	P      Pos
	Parts  []string
	Quoted bool // a single double-quoted name
}

// Call is a function call, including aggregates and window specifications.
type Call struct {
	P        Pos
	Name     string // as written; may be dotted (System.Timestamp)
	Args     []Expr
	Star     bool // COUNT(*)
	Distinct bool
	Over     *Over
	// Member is the field name when the call is x.name on the record a
	// call returns (System.Window().Id), parsed as
	// GetRecordPropertyValue(x, 'name'): an unnamed column takes this name.
	Member string
}

// Over is an OVER (...) clause.
type Over struct {
	P           Pos
	PartitionBy []Expr
	Limit       *Call // DURATION(unit, n)
	When        Expr
	OrderBy     []OrderItem
}

// OrderItem is one key of OVER (ORDER BY ...).
type OrderItem struct {
	Expr Expr
	Desc bool
}

// Unary is -x, +x, ~x, NOT x.
type Unary struct {
	P  Pos
	Op string
	X  Expr
}

// Binary is x op y for arithmetic, bitwise, comparison, AND, OR.
type Binary struct {
	P    Pos
	Op   string
	L, R Expr
}

// Case is CASE [operand] WHEN ... THEN ... [ELSE ...] END.
type Case struct {
	P       Pos
	Operand Expr
	Whens   []When
	Else    Expr
}

// When is one WHEN branch.
type When struct {
	Cond, Then Expr
}

// Cast is CAST(x AS type) or TRY_CAST(x AS type).
type Cast struct {
	P    Pos
	X    Expr
	Type string // lower case: bigint, float, nvarchar(max), datetime, bit, record, array
	Try  bool
}

// Like is x [NOT] LIKE pattern.
type Like struct {
	P      Pos
	X, Pat Expr
	Not    bool
}

// In is x [NOT] IN (list).
type In struct {
	P    Pos
	X    Expr
	List []Expr
	Not  bool
}

// Between is x [NOT] BETWEEN lo AND hi.
type Between struct {
	P         Pos
	X, Lo, Hi Expr
	Not       bool
}

// IsNull is x IS [NOT] NULL.
type IsNull struct {
	P   Pos
	X   Expr
	Not bool
}

func (e *Literal) Position() Pos { return e.P }
func (e *Ident) Position() Pos   { return e.P }
func (e *Call) Position() Pos    { return e.P }
func (e *Unary) Position() Pos   { return e.P }
func (e *Binary) Position() Pos  { return e.P }
func (e *Case) Position() Pos    { return e.P }
func (e *Cast) Position() Pos    { return e.P }
func (e *Like) Position() Pos    { return e.P }
func (e *In) Position() Pos      { return e.P }
func (e *Between) Position() Pos { return e.P }
func (e *IsNull) Position() Pos  { return e.P }

func (e *Literal) String() string {
	switch e.Kind {
	case LitNull:
		return "NULL"
	case LitString:
		return "'" + strings.ReplaceAll(e.Text, "'", "''") + "'"
	}
	return e.Text
}

func (e *Ident) String() string {
	if e.Quoted {
		return `"` + strings.ReplaceAll(e.Parts[0], `"`, `""`) + `"`
	}
	parts := make([]string, len(e.Parts))
	for i, p := range e.Parts {
		parts[i] = quoteName(p)
	}
	return strings.Join(parts, ".")
}

func quoteName(p string) string {
	for i, r := range p {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return "[" + strings.ReplaceAll(p, "]", "]]") + "]"
		}
	}
	if p == "" || IsReserved(p) {
		return "[" + p + "]"
	}
	return p
}

func (e *Call) String() string {
	if e.Member != "" && len(e.Args) == 2 {
		return e.Args[0].String() + "." + quoteName(e.Member)
	}
	var b strings.Builder
	b.WriteString(e.Name)
	b.WriteByte('(')
	if e.Distinct {
		b.WriteString("DISTINCT ")
	}
	if e.Star {
		b.WriteByte('*')
	}
	for i, a := range e.Args {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(a.String())
	}
	b.WriteByte(')')
	if e.Over != nil {
		b.WriteString(" OVER (")
		sep := ""
		if len(e.Over.PartitionBy) > 0 {
			b.WriteString("PARTITION BY ")
			b.WriteString(joinExprs(e.Over.PartitionBy))
			sep = " "
		}
		if e.Over.Limit != nil {
			b.WriteString(sep + "LIMIT " + e.Over.Limit.String())
			sep = " "
		}
		if e.Over.When != nil {
			b.WriteString(sep + "WHEN " + e.Over.When.String())
			sep = " "
		}
		if len(e.Over.OrderBy) > 0 {
			keys := make([]string, len(e.Over.OrderBy))
			for i, o := range e.Over.OrderBy {
				keys[i] = o.Expr.String()
				if o.Desc {
					keys[i] += " DESC"
				}
			}
			b.WriteString(sep + "ORDER BY " + strings.Join(keys, ", "))
		}
		b.WriteByte(')')
	}
	return b.String()
}

func joinExprs(es []Expr) string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.String()
	}
	return strings.Join(parts, ", ")
}

func (e *Unary) String() string {
	if e.Op == "NOT" {
		return "NOT " + e.X.String()
	}
	x := e.X.String()
	if e.Op == "-" && strings.HasPrefix(x, "-") {
		return "- " + x // "--" would start a comment
	}
	return e.Op + x
}

func (e *Binary) String() string { return "(" + e.L.String() + " " + e.Op + " " + e.R.String() + ")" }

func (e *Case) String() string {
	var b strings.Builder
	b.WriteString("CASE")
	if e.Operand != nil {
		b.WriteString(" " + e.Operand.String())
	}
	for _, w := range e.Whens {
		b.WriteString(" WHEN " + w.Cond.String() + " THEN " + w.Then.String())
	}
	if e.Else != nil {
		b.WriteString(" ELSE " + e.Else.String())
	}
	b.WriteString(" END")
	return b.String()
}

func (e *Cast) String() string {
	name := "CAST"
	if e.Try {
		name = "TRY_CAST"
	}
	return name + "(" + e.X.String() + " AS " + e.Type + ")"
}

func (e *Like) String() string {
	op := " LIKE "
	if e.Not {
		op = " NOT LIKE "
	}
	return "(" + e.X.String() + op + e.Pat.String() + ")"
}

func (e *In) String() string {
	op := " IN ("
	if e.Not {
		op = " NOT IN ("
	}
	return "(" + e.X.String() + op + joinExprs(e.List) + "))"
}

func (e *Between) String() string {
	op := " BETWEEN "
	if e.Not {
		op = " NOT BETWEEN "
	}
	return "(" + e.X.String() + op + e.Lo.String() + " AND " + e.Hi.String() + ")"
}

func (e *IsNull) String() string {
	if e.Not {
		return "(" + e.X.String() + " IS NOT NULL)"
	}
	return "(" + e.X.String() + " IS NULL)"
}
