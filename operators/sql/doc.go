// Package sql owns the text of the query language: the lexer, the
// recursive-descent parser and the AST of the Azure Stream Analytics
// dialect Millstream accepts.
//
// Invariants:
//
//	P1: Parse never panics; every failure is an *Error carrying the line and
//	    column (1-based, columns count runes) of the offending token and
//	    what was expected there.
//	P2: keywords, function names and identifiers are case-insensitive; the
//	    AST keeps identifiers as written so outputs keep the user's casing.
//	P3: the parser knows no semantics (inputs, types, windows): that is the
//	    planner's job (package plan).
//
// Double-quoted tokens are kept as QuotedIdent: Stream Analytics documents
// them both as escaped field names and as string literals, and only the
// executor, which sees the row, can tell which one is meant.
package sql
