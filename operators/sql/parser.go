package sql

import (
	"fmt"
	"strconv"
	"strings"
)

// reserved words cannot be used as bare aliases or names.
var reserved = map[string]bool{
	"select": true, "from": true, "where": true, "group": true, "by": true, "having": true,
	"as": true, "into": true, "with": true, "timestamp": true, "over": true, "case": true,
	"when": true, "then": true, "else": true, "end": true, "and": true, "or": true, "not": true,
	"like": true, "in": true, "between": true, "is": true, "null": true, "cast": true,
	"try_cast": true, "distinct": true, "partition": true, "limit": true, "join": true,
	"on": true, "left": true, "inner": true, "outer": true, "cross": true, "apply": true,
	"union": true, "all": true, "create": true, "table": true, "match_recognize": true,
	"order": true, "right": true, "full": true,
}

// clauseWords start a clause, so they are no alias even after AS: in
// `SELECT a AS FROM i` the alias is missing, FROM is not the alias.
var clauseWords = map[string]bool{"from": true, "into": true, "where": true, "group": true, "having": true, "union": true}

// exprWords are reserved words that may still name a field inside an
// expression (Stream Analytics jobs commonly have a field "timestamp").
var exprWords = map[string]bool{"timestamp": true}

// IsReserved reports whether a word is a reserved keyword.
func IsReserved(w string) bool { return reserved[strings.ToLower(w)] }

// functions that are spelled like reserved words.
var keywordFuncs = map[string]bool{"left": true, "right": true}

// Parse parses a whole query.
func Parse(src string) (q *Query, err error) {
	toks, err := Lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	defer Recover(&err)
	return p.query(), nil
}

// Recover turns a *Error raised with panic inside a parser or planner rule
// into the function's error result; other panics continue. Use it as
// `defer Recover(&err)` in a function with a named error result.
func Recover(err *error) {
	if r := recover(); r != nil {
		perr, ok := r.(*Error)
		if !ok {
			panic(r)
		}
		*err = perr
	}
}

// ParseExpr parses a single expression (used for TIMESTAMP BY given in
// configuration and in tests).
func ParseExpr(src string) (e Expr, err error) {
	toks, err := Lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	defer Recover(&err)
	e = p.expr()
	if p.peek().Kind != TokEOF {
		p.fail("expected the end of the expression")
	}
	return e, nil
}

// parser is a recursive-descent parser. Errors are raised with panic(*Error)
// inside and turned into return values by Parse: this keeps each grammar
// rule a plain function; the nesting depth is bounded so hostile input
// cannot exhaust the stack.
type parser struct {
	toks  []Token
	i     int
	depth int
	// folded counts the nodes built by the loops that fold a chain to the
	// left (a+b+c..., x.a.b...): they nest without recursion here, but
	// every later walk of the tree recurses through them.
	folded int
}

const maxDepth = 200

// maxFolded bounds those nodes in one query: a tree nests at most this
// deep through them, which every walk of it can afford.
const maxFolded = 10000

// fold counts one left-folded node at pos.
func (p *parser) fold(pos Pos) {
	p.folded++
	if p.folded > maxFolded {
		p.failAt(pos, "the query has more than %d chained operators", maxFolded)
	}
}

func (p *parser) peek() Token { return p.toks[p.i] }
func (p *parser) peekAt(n int) Token {
	if p.i+n < len(p.toks) {
		return p.toks[p.i+n]
	}
	return p.toks[len(p.toks)-1]
}

func (p *parser) next() Token {
	t := p.toks[p.i]
	if t.Kind != TokEOF {
		p.i++
	}
	return t
}

func (p *parser) fail(expected string) {
	t := p.peek()
	panic(&Error{Pos: t.Pos, Msg: fmt.Sprintf("%s, found %s", expected, t.describe())})
}

func (p *parser) failAt(pos Pos, format string, args ...any) {
	panic(&Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

// isKw reports whether the next token is the keyword kw (lower case).
func (p *parser) isKw(kw string) bool {
	t := p.peek()
	return t.Kind == TokIdent && strings.EqualFold(t.Text, kw)
}

func (p *parser) isKwAt(n int, kw string) bool {
	t := p.peekAt(n)
	return t.Kind == TokIdent && strings.EqualFold(t.Text, kw)
}

func (p *parser) acceptKw(kw string) bool {
	if p.isKw(kw) {
		p.next()
		return true
	}
	return false
}

func (p *parser) expectKw(kw string) Token {
	if !p.isKw(kw) {
		p.fail("expected " + strings.ToUpper(kw))
	}
	return p.next()
}

func (p *parser) isOp(op string) bool {
	t := p.peek()
	return t.Kind == TokOp && t.Text == op
}

func (p *parser) acceptOp(op string) bool {
	if p.isOp(op) {
		p.next()
		return true
	}
	return false
}

func (p *parser) expectOp(op string) Token {
	if !p.isOp(op) {
		p.fail("expected '" + op + "'")
	}
	return p.next()
}

// name reads an identifier usable as a name (not a reserved word).
func (p *parser) name(what string) (string, Pos) {
	t := p.peek()
	switch t.Kind {
	case TokBracket, TokQuoted:
		p.next()
		return t.Text, t.Pos
	case TokIdent:
		if !reserved[strings.ToLower(t.Text)] {
			p.next()
			return t.Text, t.Pos
		}
	}
	p.fail("expected " + what)
	return "", Pos{}
}

// aliasAfterAs reads the name after AS, where reserved words are allowed
// (`System.Timestamp() AS timestamp` is common in Stream Analytics jobs).
func (p *parser) aliasAfterAs() string {
	if t := p.peek(); t.Kind == TokIdent && !clauseWords[strings.ToLower(t.Text)] {
		p.next()
		return t.Text
	}
	name, _ := p.name("an alias after AS")
	return name
}

func (p *parser) isName() bool {
	t := p.peek()
	return t.Kind == TokBracket || t.Kind == TokQuoted || (t.Kind == TokIdent && !reserved[strings.ToLower(t.Text)])
}

func (p *parser) query() *Query {
	q := &Query{}
	for p.isKw("create") {
		q.Tables = append(q.Tables, p.createTable())
		for p.acceptOp(";") {
		}
	}
	if p.acceptKw("with") {
		for {
			name, pos := p.name("a name for the WITH step")
			// AS may be left out: the Windows() reference page writes
			// WITH HoppingWindowResults ( SELECT ... ).
			if !p.acceptKw("as") && !p.isOp("(") {
				p.fail("expected AS")
			}
			p.expectOp("(")
			sel := p.selectUnion(true)
			p.expectOp(")")
			q.With = append(q.With, &CTE{Pos: pos, Name: name, Select: sel})
			if !p.acceptOp(",") {
				break
			}
		}
	}
	for {
		for p.acceptOp(";") {
		}
		if p.peek().Kind == TokEOF {
			break
		}
		if !p.isKw("select") && !p.isOp("(") {
			if len(q.Selects) == 0 {
				p.fail("expected SELECT")
			}
			p.fail("expected SELECT or the end of the query")
		}
		q.Selects = append(q.Selects, p.selectUnion(false))
	}
	if len(q.Selects) == 0 {
		p.fail("expected SELECT")
	}
	return q
}

func (p *parser) selectStmt(inWith bool) *Select {
	s := &Select{Pos: p.expectKw("select").Pos}
	if p.isKw("distinct") || p.isKw("top") {
		p.failAt(p.peek().Pos, "SELECT %s is not supported", strings.ToUpper(p.peek().Text))
	}
	for {
		s.Items = append(s.Items, p.selectItem())
		if !p.acceptOp(",") {
			break
		}
	}
	if p.isKw("into") {
		t := p.next()
		if inWith {
			p.failAt(t.Pos, "INTO is not allowed inside WITH: a WITH step feeds other statements, not an output")
		}
		s.Into, s.IntoPos = p.name("an output name after INTO")
	}
	if !p.isKw("from") {
		p.fail("expected FROM (every SELECT reads from an input or a WITH step)")
	}
	p.next()
	s.From = p.source()
	for (p.isKw("cross") || p.isKw("outer")) && p.isKwAt(1, "apply") {
		s.From.Applies = append(s.From.Applies, p.apply())
	}
	for p.isKw("join") || p.isKw("inner") || p.isKw("left") {
		s.Joins = append(s.Joins, p.join())
	}
	for _, kw := range []string{"cross", "outer", "right", "full"} {
		if p.isKw(kw) {
			t := p.peek()
			switch strings.ToLower(t.Text) {
			case "right", "full":
				p.failAt(t.Pos, "%s JOIN is not supported by Stream Analytics: use LEFT JOIN with the sides swapped", strings.ToUpper(t.Text))
			}
			p.failAt(t.Pos, "unexpected %s", strings.ToUpper(t.Text))
		}
	}
	if p.acceptKw("where") {
		s.Where = p.expr()
	}
	if p.isKw("group") {
		p.next()
		p.expectKw("by")
		for {
			s.GroupBy = append(s.GroupBy, p.expr())
			if !p.acceptOp(",") {
				break
			}
		}
	}
	if p.acceptKw("having") {
		s.Having = p.expr()
	}
	return s
}

// selectUnion parses SELECTs joined by UNION [ALL], each optionally in
// parentheses, into a chain linked by Select.Union.
func (p *parser) selectUnion(inWith bool) *Select {
	first := p.selectPrimary(inWith)
	tail := first
	for p.isKw("union") {
		t := p.next()
		p.acceptKw("all") // UNION keeps duplicates either way
		if !p.isKw("select") && !p.isOp("(") {
			p.fail("expected SELECT after UNION")
		}
		for tail.Union != nil {
			tail = tail.Union
		}
		next := p.selectPrimary(inWith)
		if next.Into != "" {
			p.failAt(next.IntoPos, "INTO belongs to the first SELECT of a UNION")
		}
		tail.Union, tail.UnionPos = next, t.Pos
	}
	return first
}

func (p *parser) selectPrimary(inWith bool) *Select {
	if p.acceptOp("(") {
		p.depth++
		if p.depth > maxDepth {
			p.fail("query nested too deeply")
		}
		s := p.selectUnion(inWith)
		p.depth--
		p.expectOp(")")
		return s
	}
	return p.selectStmt(inWith)
}

// createTable parses CREATE TABLE name (column type, ...).
func (p *parser) createTable() *Table {
	t := &Table{Pos: p.next().Pos}
	p.expectKw("table")
	t.Name, _ = p.name("a table name after CREATE TABLE")
	p.expectOp("(")
	for {
		col, pos := p.name("a column name")
		t.Columns = append(t.Columns, Column{Pos: pos, Name: col, Type: p.typeName()})
		if !p.acceptOp(",") {
			break
		}
	}
	p.expectOp(")")
	return t
}

// join parses [INNER] JOIN | LEFT [OUTER] JOIN source ON condition.
func (p *parser) join() *Join {
	t := p.peek()
	j := &Join{Pos: t.Pos}
	switch {
	case p.acceptKw("inner"):
	case p.acceptKw("left"):
		j.Left = true
		p.acceptKw("outer")
	}
	p.expectKw("join")
	j.Source = p.source()
	p.expectKw("on")
	j.On = p.expr()
	return j
}

// apply parses CROSS APPLY / OUTER APPLY function(args) [AS] alias.
func (p *parser) apply() *Apply {
	t := p.next()
	p.next() // APPLY
	a := &Apply{Pos: t.Pos, Outer: strings.EqualFold(t.Text, "outer")}
	if p.peek().Kind != TokIdent {
		p.fail("expected GetArrayElements(...) or GetRecordProperties(...) after APPLY")
	}
	name := p.next()
	a.Func = name.Text
	p.expectOp("(")
	a.Arg = p.expr()
	p.expectOp(")")
	p.acceptKw("as")
	a.Alias, _ = p.name("an alias for the APPLY result")
	return a
}

func (p *parser) selectItem() *SelectItem {
	t := p.peek()
	if p.acceptOp("*") {
		return &SelectItem{Pos: t.Pos, Star: true}
	}
	// path.* : a run of names separated by dots and ending in .*
	if p.isName() || t.Kind == TokIdent {
		j := 0
		var path []string
		for {
			tk := p.peekAt(j)
			if tk.Kind != TokIdent && tk.Kind != TokBracket && tk.Kind != TokQuoted {
				break
			}
			path = append(path, tk.Text)
			if !(p.peekAt(j+1).Kind == TokOp && p.peekAt(j+1).Text == ".") {
				break
			}
			if n := p.peekAt(j + 2); n.Kind == TokOp && n.Text == "*" {
				p.i += j + 3
				return &SelectItem{Pos: t.Pos, Star: true, StarPath: path}
			}
			j += 2
		}
	}
	// alias = expr (T-SQL style)
	if p.isName() && p.peekAt(1).Kind == TokOp && p.peekAt(1).Text == "=" {
		alias, _ := p.name("an alias")
		p.next()
		return &SelectItem{Pos: t.Pos, Expr: p.expr(), Alias: alias}
	}
	item := &SelectItem{Pos: t.Pos, Expr: p.expr()}
	if p.acceptKw("as") {
		item.Alias = p.aliasAfterAs()
	} else if p.isName() {
		item.Alias, _ = p.name("an alias")
	} else if p.peek().Kind == TokString {
		item.Alias = p.next().Text
	}
	return item
}

func (p *parser) source() *Source {
	name, pos := p.name("an input or WITH step name after FROM")
	src := &Source{Pos: pos, Name: name}
	if p.acceptKw("as") {
		src.Alias = p.aliasAfterAs()
	} else if p.isName() {
		src.Alias, _ = p.name("an alias")
	}
	for {
		switch {
		case p.isKw("partition"):
			p.next()
			p.expectKw("by")
			for {
				src.PartitionBy = append(src.PartitionBy, p.expr())
				if !p.acceptOp(",") {
					break
				}
			}
			if p.acceptKw("into") {
				if p.peek().Kind != TokNumber {
					p.fail("expected a partition count after INTO")
				}
				p.next()
			}
		case p.isKw("timestamp"):
			t := p.next()
			p.expectKw("by")
			if src.TimestampBy != nil {
				p.failAt(t.Pos, "TIMESTAMP BY is given twice")
			}
			src.TimestampBy = p.expr()
			if p.acceptKw("over") {
				for {
					src.Over = append(src.Over, p.expr())
					if !p.acceptOp(",") {
						break
					}
				}
			}
		case p.isKw("match_recognize"):
			if src.Match != nil {
				p.failAt(p.peek().Pos, "MATCH_RECOGNIZE is given twice")
			}
			src.Match = p.matchRecognize()
		default:
			return src
		}
	}
}

// Expressions, lowest precedence first.

func (p *parser) expr() Expr {
	p.depth++
	if p.depth > maxDepth {
		p.fail("expression nested too deeply")
	}
	defer func() { p.depth-- }()
	return p.or()
}

func (p *parser) or() Expr {
	l := p.and()
	for p.isKw("or") {
		t := p.next()
		p.fold(t.Pos)
		l = &Binary{P: t.Pos, Op: "OR", L: l, R: p.and()}
	}
	return l
}

func (p *parser) and() Expr {
	l := p.not()
	for p.isKw("and") {
		t := p.next()
		p.fold(t.Pos)
		l = &Binary{P: t.Pos, Op: "AND", L: l, R: p.not()}
	}
	return l
}

func (p *parser) not() Expr {
	if p.isKw("not") {
		t := p.next()
		p.depth++
		if p.depth > maxDepth {
			p.fail("expression nested too deeply")
		}
		defer func() { p.depth-- }()
		return &Unary{P: t.Pos, Op: "NOT", X: p.not()}
	}
	return p.predicate()
}

var comparisons = map[string]string{"=": "=", "<>": "<>", "!=": "<>", ">": ">", ">=": ">=", "<": "<", "<=": "<=", "!>": "<=", "!<": ">="}

func (p *parser) predicate() Expr {
	l := p.additive()
	for {
		t := p.peek()
		if t.Kind == TokOp {
			if op, ok := comparisons[t.Text]; ok {
				p.next()
				p.fold(t.Pos)
				l = &Binary{P: t.Pos, Op: op, L: l, R: p.additive()}
				continue
			}
			return l
		}
		not := false
		if p.isKw("not") && (p.isKwAt(1, "like") || p.isKwAt(1, "in") || p.isKwAt(1, "between")) {
			p.next()
			not = true
		}
		switch {
		case p.isKw("like"):
			p.next()
			p.fold(t.Pos)
			l = &Like{P: t.Pos, X: l, Pat: p.additive(), Not: not}
		case p.isKw("in"):
			p.next()
			p.expectOp("(")
			in := &In{P: t.Pos, X: l, Not: not}
			for {
				in.List = append(in.List, p.expr())
				if !p.acceptOp(",") {
					break
				}
			}
			p.expectOp(")")
			l = in
		case p.isKw("between"):
			p.next()
			lo := p.additive()
			p.expectKw("and")
			p.fold(t.Pos)
			l = &Between{P: t.Pos, X: l, Lo: lo, Hi: p.additive(), Not: not}
		case p.isKw("is"):
			p.next()
			n := p.acceptKw("not")
			p.expectKw("null")
			p.fold(t.Pos)
			l = &IsNull{P: t.Pos, X: l, Not: n}
		default:
			return l
		}
	}
}

func (p *parser) additive() Expr {
	l := p.multiplicative()
	for {
		t := p.peek()
		if t.Kind == TokOp && (t.Text == "+" || t.Text == "-" || t.Text == "&" || t.Text == "|" || t.Text == "^") {
			p.next()
			p.fold(t.Pos)
			l = &Binary{P: t.Pos, Op: t.Text, L: l, R: p.multiplicative()}
			continue
		}
		return l
	}
}

func (p *parser) multiplicative() Expr {
	l := p.unary()
	for {
		t := p.peek()
		if t.Kind == TokOp && (t.Text == "*" || t.Text == "/" || t.Text == "%") {
			p.next()
			p.fold(t.Pos)
			l = &Binary{P: t.Pos, Op: t.Text, L: l, R: p.unary()}
			continue
		}
		return l
	}
}

func (p *parser) unary() Expr {
	t := p.peek()
	if t.Kind == TokOp && (t.Text == "-" || t.Text == "+" || t.Text == "~") {
		p.next()
		p.depth++
		if p.depth > maxDepth {
			p.fail("expression nested too deeply")
		}
		defer func() { p.depth-- }()
		x := p.unary()
		// Fold -1 into a literal, but not - -1: "--1" is no number.
		if lit, ok := x.(*Literal); ok && lit.Kind == LitNumber && t.Text == "-" && !strings.HasPrefix(lit.Text, "-") {
			return &Literal{P: t.Pos, Kind: LitNumber, Text: "-" + lit.Text}
		}
		return &Unary{P: t.Pos, Op: t.Text, X: x}
	}
	return p.primary()
}

var castTypes = map[string]string{
	"bigint": "bigint", "int": "bigint", "float": "float", "real": "float", "double": "float",
	"nvarchar": "nvarchar(max)", "datetime": "datetime", "bit": "bit", "record": "record", "array": "array",
}

func (p *parser) primary() Expr {
	t := p.peek()
	switch t.Kind {
	case TokNumber:
		p.next()
		return &Literal{P: t.Pos, Kind: LitNumber, Text: t.Text}
	case TokString:
		p.next()
		return &Literal{P: t.Pos, Kind: LitString, Text: t.Text}
	case TokQuoted:
		p.next()
		id := &Ident{P: t.Pos, Parts: []string{t.Text}, Quoted: true}
		return p.pathRest(id)
	case TokBracket:
		p.next()
		return p.pathRest(&Ident{P: t.Pos, Parts: []string{t.Text}})
	case TokOp:
		if t.Text == "(" {
			p.next()
			e := p.expr()
			p.expectOp(")")
			return e
		}
	case TokIdent:
		lw := strings.ToLower(t.Text)
		switch lw {
		case "null":
			p.next()
			return &Literal{P: t.Pos, Kind: LitNull, Text: "NULL"}
		case "true", "false":
			if !(p.peekAt(1).Kind == TokOp && p.peekAt(1).Text == "(") {
				p.next()
				return &Literal{P: t.Pos, Kind: LitBool, Text: lw}
			}
		case "case":
			return p.caseExpr()
		case "cast", "try_cast":
			p.next()
			p.expectOp("(")
			x := p.expr()
			p.expectKw("as")
			typ := p.typeName()
			p.expectOp(")")
			return &Cast{P: t.Pos, X: x, Type: typ, Try: lw == "try_cast"}
		}
		if reserved[lw] && !exprWords[lw] && !(keywordFuncs[lw] && p.peekAt(1).Kind == TokOp && p.peekAt(1).Text == "(") {
			p.fail("expected an expression")
		}
		p.next()
		return p.pathRest(&Ident{P: t.Pos, Parts: []string{t.Text}})
	}
	p.fail("expected an expression")
	return nil
}

func (p *parser) typeName() string {
	t := p.peek()
	if t.Kind != TokIdent {
		p.fail("expected a type name (bigint, float, nvarchar(max), datetime, bit, record, array)")
	}
	typ, ok := castTypes[strings.ToLower(t.Text)]
	if !ok {
		p.fail("expected a type name (bigint, float, nvarchar(max), datetime, bit, record, array)")
	}
	p.next()
	if typ == "nvarchar(max)" && p.acceptOp("(") {
		if !p.acceptKw("max") {
			if p.peek().Kind != TokNumber {
				p.fail("expected MAX in nvarchar(max)")
			}
			p.next()
		}
		p.expectOp(")")
	}
	return typ
}

// pathRest continues a name with .field parts, then a call if '(' follows.
func (p *parser) pathRest(id *Ident) Expr {
	for p.isOp(".") {
		nt := p.peekAt(1)
		if nt.Kind != TokIdent && nt.Kind != TokBracket && nt.Kind != TokQuoted {
			break
		}
		p.next()
		p.next()
		id.Parts = append(id.Parts, nt.Text)
		id.Quoted = false
	}
	if p.isOp("(") && !id.Quoted {
		return p.call(id)
	}
	// System.Timestamp without parentheses (older syntax).
	if len(id.Parts) == 2 && strings.EqualFold(id.Parts[0], "system") && strings.EqualFold(id.Parts[1], "timestamp") {
		return &Call{P: id.P, Name: strings.Join(id.Parts, ".")}
	}
	return id
}

func (p *parser) call(id *Ident) Expr {
	p.expectOp("(")
	c := &Call{P: id.P, Name: strings.Join(id.Parts, ".")}
	switch {
	case p.acceptOp("*"):
		c.Star = true
	case p.isOp(")"):
	default:
		if p.acceptKw("distinct") {
			c.Distinct = true
		}
		for {
			c.Args = append(c.Args, p.expr())
			if !p.acceptOp(",") {
				break
			}
		}
	}
	p.expectOp(")")
	if p.isKw("over") {
		c.Over = p.over()
	}
	// System.Window().Id and similar: a field of the record a call returns.
	var e Expr = c
	for p.isOp(".") && (p.peekAt(1).Kind == TokIdent || p.peekAt(1).Kind == TokBracket) {
		p.next()
		f := p.next()
		p.fold(f.Pos)
		e = &Call{P: f.Pos, Name: "GetRecordPropertyValue", Args: []Expr{e, &Literal{P: f.Pos, Kind: LitString, Text: f.Text}}, Member: f.Text}
	}
	return e
}

func (p *parser) over() *Over {
	o := &Over{P: p.next().Pos}
	p.expectOp("(")
	for !p.isOp(")") {
		switch {
		case p.isKw("partition"):
			p.next()
			p.expectKw("by")
			for {
				o.PartitionBy = append(o.PartitionBy, p.expr())
				if !p.acceptOp(",") {
					break
				}
			}
		case p.isKw("limit"):
			p.next()
			if !p.isKw("duration") {
				p.fail("expected DURATION after LIMIT")
			}
			t := p.next()
			d := p.call(&Ident{P: t.Pos, Parts: []string{t.Text}})
			o.Limit = d.(*Call)
		case p.isKw("when"):
			p.next()
			o.When = p.expr()
		case p.isKw("order"):
			p.next()
			p.expectKw("by")
			for {
				it := OrderItem{Expr: p.expr()}
				if p.acceptKw("desc") {
					it.Desc = true
				} else {
					p.acceptKw("asc")
				}
				o.OrderBy = append(o.OrderBy, it)
				if !p.acceptOp(",") {
					break
				}
			}
		default:
			p.fail("expected PARTITION BY, LIMIT DURATION, WHEN, ORDER BY or ')' in OVER")
		}
	}
	p.next()
	return o
}

func (p *parser) caseExpr() Expr {
	c := &Case{P: p.next().Pos}
	if p.isKw("end") {
		p.fail("expected WHEN in CASE")
	}
	if !p.isKw("when") {
		c.Operand = p.expr()
	}
	for p.acceptKw("when") {
		cond := p.expr()
		p.expectKw("then")
		c.Whens = append(c.Whens, When{Cond: cond, Then: p.expr()})
	}
	if len(c.Whens) == 0 {
		p.fail("expected WHEN in CASE")
	}
	if p.acceptKw("else") {
		c.Else = p.expr()
	}
	p.expectKw("end")
	return c
}

// matchRecognize parses MATCH_RECOGNIZE ( LIMIT DURATION(u, n)
// [PARTITION BY ...] MEASURES m AS name, ... [AFTER MATCH SKIP TO NEXT ROW |
// SKIP PAST LAST ROW] PATTERN (regex) DEFINE v AS cond, ... ) [AS alias].
func (p *parser) matchRecognize() *MatchRecognize {
	m := &MatchRecognize{Pos: p.next().Pos}
	p.expectOp("(")
	for !p.isOp(")") {
		switch {
		case p.isKw("limit"):
			p.next()
			if !p.isKw("duration") {
				p.fail("expected DURATION after LIMIT")
			}
			t := p.next()
			m.Limit = p.call(&Ident{P: t.Pos, Parts: []string{t.Text}}).(*Call)
		case p.isKw("partition"):
			p.next()
			p.expectKw("by")
			for {
				m.PartitionBy = append(m.PartitionBy, p.expr())
				if !p.acceptOp(",") {
					break
				}
			}
		case p.isKwAt(0, "measures"):
			p.next()
			for {
				e := p.expr()
				p.expectKw("as")
				m.Measures = append(m.Measures, &SelectItem{Pos: e.Position(), Expr: e, Alias: p.aliasAfterAs()})
				if !p.acceptOp(",") {
					break
				}
			}
		case p.isKwAt(0, "after"):
			p.next()
			if !p.isKwAt(0, "match") {
				p.fail("expected MATCH after AFTER")
			}
			p.next()
			if !p.isKwAt(0, "skip") {
				p.fail("expected SKIP")
			}
			p.next()
			switch {
			case p.isKw("to"):
				p.next()
				if !p.isKwAt(0, "next") || !p.isKwAt(1, "row") {
					p.fail("expected NEXT ROW")
				}
				p.next()
				p.next()
			case p.isKwAt(0, "past"):
				p.next()
				if !p.isKwAt(0, "last") || !p.isKwAt(1, "row") {
					p.fail("expected LAST ROW")
				}
				p.next()
				p.next()
				m.SkipPastLast = true
			default:
				p.fail("expected TO NEXT ROW or PAST LAST ROW")
			}
		case p.isKwAt(0, "pattern"):
			p.next()
			p.expectOp("(")
			m.Pattern = p.patternAlt()
			p.expectOp(")")
		case p.isKwAt(0, "define"):
			p.next()
			for {
				name, pos := p.name("a pattern variable")
				p.expectKw("as")
				m.Define = append(m.Define, &Define{Pos: pos, Var: name, Cond: p.expr()})
				if !p.acceptOp(",") {
					break
				}
			}
		default:
			p.fail("expected LIMIT DURATION, PARTITION BY, MEASURES, AFTER MATCH, PATTERN, DEFINE or ')' in MATCH_RECOGNIZE")
		}
	}
	p.next()
	if p.acceptKw("as") {
		m.Alias = p.aliasAfterAs()
	} else if p.isName() {
		m.Alias, _ = p.name("an alias")
	}
	if m.Pattern == nil {
		p.failAt(m.Pos, "MATCH_RECOGNIZE needs a PATTERN")
	}
	if m.Limit == nil {
		p.failAt(m.Pos, "MATCH_RECOGNIZE needs LIMIT DURATION(unit, n)")
	}
	return m
}

// patternAlt parses a|b|c of a PATTERN.
func (p *parser) patternAlt() *Pattern {
	p.depth++
	if p.depth > maxDepth {
		p.fail("pattern nested too deeply")
	}
	defer func() { p.depth-- }()
	alt := &Pattern{Kind: PatAlt, Min: 1, Max: 1}
	for {
		seq := &Pattern{Kind: PatSeq, Min: 1, Max: 1}
		for !p.isOp(")") && !p.isOp("|") && p.peek().Kind != TokEOF {
			seq.Items = append(seq.Items, p.patternItem())
		}
		if len(seq.Items) == 0 {
			p.fail("expected a pattern variable")
		}
		alt.Items = append(alt.Items, seq)
		if !p.acceptOp("|") {
			break
		}
	}
	if len(alt.Items) == 1 {
		return alt.Items[0]
	}
	return alt
}

func (p *parser) patternItem() *Pattern {
	var it *Pattern
	if p.acceptOp("(") {
		it = p.patternAlt()
		p.expectOp(")")
	} else {
		name, _ := p.name("a pattern variable")
		it = &Pattern{Kind: PatVar, Var: name}
	}
	it.Min, it.Max = 1, 1
	switch {
	case p.acceptOp("*"):
		it.Min, it.Max = 0, -1
	case p.acceptOp("+"):
		it.Min, it.Max = 1, -1
	case p.acceptOp("?"):
		it.Min, it.Max = 0, 1
	case p.isOp("{"):
		brace := p.next()
		if p.peek().Kind != TokNumber {
			p.fail("expected a count in {n,m}")
		}
		n, _ := strconv.Atoi(p.next().Text)
		it.Min, it.Max = n, n
		if p.acceptOp(",") {
			it.Max = -1
			if p.peek().Kind == TokNumber {
				it.Max, _ = strconv.Atoi(p.next().Text)
			}
		}
		p.expectOp("}")
		if it.Max >= 0 && it.Max < it.Min {
			p.failAt(brace.Pos, "the pattern count {%d,%d} needs n <= m", it.Min, it.Max)
		}
	}
	return it
}
