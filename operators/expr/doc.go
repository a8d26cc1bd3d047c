// Package expr compiles plan expressions (pb.Expr) into Go closures and owns
// the scalar functions and operators of the query language.
//
// Invariants:
//
//	E1: Compile walks the expression tree once; evaluation never looks at
//	    the plan again, and evaluating a compiled expression on a flat record
//	    does not allocate unless the result is a new string, record or array.
//	E2: a runtime type error never panics: it is recorded in Ctx.Err (the
//	    first one wins) and the expression yields NULL; the caller decides
//	    what to do with the row (the executor dead-letters it).
//	E3: a compiled Eval keeps per-call-site scratch space (argument buffers,
//	    field position hints, compiled LIKE patterns), so one Eval must not be
//	    run by two goroutines at once. Executors compile their own copy.
//
// Arithmetic: bigint op bigint stays bigint and falls back to float on
// overflow; `/` always gives a float; division or modulo by zero is a
// runtime error. ROUND rounds half away from zero on the decimal form.
//
// NULL follows SQL: comparisons with NULL are unknown (NULL), AND/OR use
// three-valued logic, and a filter keeps a row only when its predicate is
// true.
package expr
