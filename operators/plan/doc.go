// Package plan turns a parsed query (package sql) into a Plan protobuf
// message: it resolves names, splits each SELECT into source, filter,
// grouping, window, aggregates, HAVING and projection, and checks what the
// dialect forbids, reporting the line and column of the offending text.
//
// Invariants:
//
//	L1: a Plan's stages are in dependency order and every stage's source is
//	    an input or an earlier stage.
//	L2: in an aggregated stage, projections and HAVING reference rows only
//	    through group keys, aggregates and System.Timestamp(); any other
//	    column is rejected here, not at run time.
//	L3: the planner is pure: the same query text gives an equal Plan.
package plan
