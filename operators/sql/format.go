package sql

import (
	"strconv"
	"strings"
)

// Format prints a query as canonical text: upper-case keywords, one clause
// per line, names bracketed only where needed and every operator
// parenthesized, so that the tree's shape is visible. Parsing the result
// gives a query that formats to the same text (tests check this for every
// query they parse); positions and spellings the AST does not keep (UNION
// ALL, PARTITION BY ... INTO n, quoted aliases) are not reproduced.
func Format(q *Query) string {
	var w formatter
	for _, t := range q.Tables {
		cols := make([]string, len(t.Columns))
		for i, c := range t.Columns {
			cols[i] = quoteName(c.Name) + " " + c.Type
		}
		w.line("CREATE TABLE " + quoteName(t.Name) + " (" + strings.Join(cols, ", ") + ")")
	}
	for i, cte := range q.With {
		head := "WITH "
		if i > 0 {
			head = ""
		}
		w.line(head + quoteName(cte.Name) + " AS (")
		w.indent++
		w.selectChain(cte.Select)
		w.indent--
		if i < len(q.With)-1 {
			w.line("),")
		} else {
			w.line(")")
		}
	}
	for _, s := range q.Selects {
		w.selectChain(s)
	}
	return w.b.String()
}

type formatter struct {
	b      strings.Builder
	indent int
}

func (w *formatter) line(s string) {
	w.b.WriteString(strings.Repeat("    ", w.indent))
	w.b.WriteString(s)
	w.b.WriteByte('\n')
}

func (w *formatter) selectChain(s *Select) {
	for part := s; part != nil; part = part.Union {
		if part != s {
			w.line("UNION")
		}
		w.selectStmt(part)
	}
}

func (w *formatter) selectStmt(s *Select) {
	items := make([]string, len(s.Items))
	for i, it := range s.Items {
		items[i] = formatItem(it)
	}
	w.line("SELECT " + strings.Join(items, ", "))
	if s.Into != "" {
		w.line("INTO " + quoteName(s.Into))
	}
	w.source("FROM ", s.From)
	for _, a := range s.From.Applies {
		kw := "CROSS APPLY "
		if a.Outer {
			kw = "OUTER APPLY "
		}
		w.line(kw + a.Func + "(" + a.Arg.String() + ") AS " + quoteName(a.Alias))
	}
	for _, j := range s.Joins {
		kw := "JOIN "
		if j.Left {
			kw = "LEFT JOIN "
		}
		w.source(kw, j.Source)
		w.line("ON " + j.On.String())
	}
	if s.Where != nil {
		w.line("WHERE " + s.Where.String())
	}
	if len(s.GroupBy) > 0 {
		w.line("GROUP BY " + joinExprs(s.GroupBy))
	}
	if s.Having != nil {
		w.line("HAVING " + s.Having.String())
	}
}

func formatItem(it *SelectItem) string {
	if it.Star {
		var b strings.Builder
		for _, p := range it.StarPath {
			b.WriteString(quoteName(p) + ".")
		}
		return b.String() + "*"
	}
	if it.Alias != "" {
		return it.Expr.String() + " AS " + quoteName(it.Alias)
	}
	return it.Expr.String()
}

// source prints a FROM or JOIN source with its clauses, in the order the
// parser accepts them all.
func (w *formatter) source(kw string, src *Source) {
	s := kw + quoteName(src.Name)
	if src.Alias != "" {
		s += " AS " + quoteName(src.Alias)
	}
	if src.TimestampBy != nil {
		s += " TIMESTAMP BY " + src.TimestampBy.String()
		if len(src.Over) > 0 {
			s += " OVER " + joinExprs(src.Over)
		}
	}
	if len(src.PartitionBy) > 0 {
		s += " PARTITION BY " + joinExprs(src.PartitionBy)
	}
	if src.Match == nil {
		w.line(s)
		return
	}
	m := src.Match
	w.line(s + " MATCH_RECOGNIZE (")
	w.indent++
	w.line("LIMIT " + m.Limit.String())
	if len(m.PartitionBy) > 0 {
		w.line("PARTITION BY " + joinExprs(m.PartitionBy))
	}
	if len(m.Measures) > 0 {
		ms := make([]string, len(m.Measures))
		for i, it := range m.Measures {
			ms[i] = formatItem(it)
		}
		w.line("MEASURES " + strings.Join(ms, ", "))
	}
	if m.SkipPastLast {
		w.line("AFTER MATCH SKIP PAST LAST ROW")
	}
	w.line("PATTERN (" + formatPattern(m.Pattern) + ")")
	if len(m.Define) > 0 {
		ds := make([]string, len(m.Define))
		for i, d := range m.Define {
			ds[i] = quoteName(d.Var) + " AS " + d.Cond.String()
		}
		w.line("DEFINE " + strings.Join(ds, ", "))
	}
	w.indent--
	if m.Alias != "" {
		w.line(") AS " + quoteName(m.Alias))
	} else {
		w.line(")")
	}
}

// formatPattern prints a PATTERN without its outer parentheses.
func formatPattern(p *Pattern) string {
	switch p.Kind {
	case PatVar:
		return quoteName(p.Var)
	case PatAlt:
		alts := make([]string, len(p.Items))
		for i, it := range p.Items {
			alts[i] = formatPattern(it)
		}
		return strings.Join(alts, " | ")
	}
	items := make([]string, len(p.Items))
	for i, it := range p.Items {
		s := formatPattern(it)
		if it.Kind != PatVar {
			s = "(" + s + ")"
		}
		items[i] = s + quantifier(it.Min, it.Max)
	}
	return strings.Join(items, " ")
}

func quantifier(lo, hi int) string {
	switch {
	case lo == 1 && hi == 1:
		return ""
	case lo == 0 && hi < 0:
		return "*"
	case lo == 1 && hi < 0:
		return "+"
	case lo == 0 && hi == 1:
		return "?"
	case hi < 0:
		return "{" + strconv.Itoa(lo) + ",}"
	case lo == hi:
		return "{" + strconv.Itoa(lo) + "}"
	}
	return "{" + strconv.Itoa(lo) + "," + strconv.Itoa(hi) + "}"
}
