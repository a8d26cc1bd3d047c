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
//
// Names of unnamed columns. A SELECT item without AS is named as Stream
// Analytics names it, and later steps read it by that name:
//
//	a.b.Field             Field (the last name of a field path)
//	System.Window().Id    Id (x.name on the record a call returns: name;
//	                      the Windows() reference joins a step on its .Id)
//	System.Timestamp()    Timestamp
//	COUNT(*), AVG(x), ... count, avg, ... (an aggregate: its function name
//	                      in lower case; SUM(count) reads an unnamed COUNT)
//	anything else         ColumnN, N its 1-based position in the list
//
// A name an earlier column of the same SELECT already has falls back to
// ColumnN. The reference does not spell out the names of unnamed scalar
// functions or of aggregates; the aggregate rule is the service's output.
//
// Whole records. A row expression (pb.Expr.row: COLLECT(), TopOne(),
// CollectTop(n), and the source's alias alone, as in Collect(e) or
// GetRecordProperties(e)) and SELECT * or alias.* make the executor keep
// every field of the event (no projection pushdown for that input).
//
// PARTITION BY. FROM input PARTITION BY PartitionId [INTO n] (on a FROM
// or JOIN source, compatibility level 1.2) is accepted and ignored:
// Millstream already splits every input by device on the gateway, so an
// input is one partition and PartitionId reads 0 unless the event carries
// its own (conditions such as I1.PartitionId = I2.PartitionId hold). Any
// other PARTITION BY key is refused with its position.
//
// Chains of joins. FROM a JOIN b ON ... JOIN c ON ... runs left to right:
// every join but the last is a stage of its own (stage#joinN, projecting
// the whole joined row) that the next join reads as its left side. A
// later join's DATEDIFF may name any stream alias before it; the earlier
// joins record each alias's event time in the row (#time:alias) and the
// last join drops those fields. The time window of the later join is
// derived from each alias's span within the joined row's time (the later
// of the two times of a match; left time plus the bound for an unmatched
// LEFT JOIN row); ON still decides with the exact times.
package plan
