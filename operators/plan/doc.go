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
//
// Files, by feature:
//
//	plan.go       entry (FromSQL, Build), UNION chains, the builder, and a
//	              stage: source, WHERE, GROUP BY, projections, HAVING, APPLY.
//	expr.go       AST expressions to plan expressions (Expr, convert, calls,
//	              arity and date-part checks) and the shared AST helpers.
//	window.go     GROUP BY windows (tumbling, hopping, sliding, session,
//	              snapshot), time units and durations, Windows(...) expansion.
//	aggregate.go  aggregates of a grouped stage and the L2 check of
//	              per-group expressions.
//	analytic.go   LAG, LAST, ISFIRST, anomaly detection and aggregates OVER
//	              (LIMIT DURATION): per-row functions over history.
//	join.go       stream joins (DATEDIFF time bounds, equality keys),
//	              reference-data joins, and chains of joins (nested
//	              two-way joins through stage#joinN stages).
//	match.go      MATCH_RECOGNIZE: pattern, DEFINE, MEASURES and their
//	              First/Last/Min/Max aggregates.
package plan
