// Package exec runs a Plan incrementally over events: it owns event time
// (TIMESTAMP BY, substreams, watermarks, the early/late/out-of-order
// policies), the stages of a plan (filter, projection, grouping) and the
// five window kinds, the aggregates, and the snapshot of all of that state.
//
// Data flow inside one Executor:
//
//	Ingest -> input (decode, event time, policies, reorder buffer)
//	       -> stage (WHERE, projection | WHERE, window, aggregates, HAVING, projection)
//	       -> ... -> output (Options.Emit)
//
// Invariants:
//
//	X1: every stage receives the rows of one timeline (substream) in
//	    non-decreasing event time. The input guarantees it by adjusting or
//	    dropping out-of-order events and by releasing buffered ones in order;
//	    windowed stages keep it because they emit a window only when a later
//	    row or the watermark has passed its end.
//	X2: a window (start, end] is emitted exactly once, when the watermark of
//	    its timeline is past its end (or at Flush), and its rows carry the
//	    end as System.Timestamp().
//	X3: rows passed between stages and to Options.Emit are borrowed: a
//	    receiver that keeps one past the call must copy it. Values are
//	    immutable and may be kept.
//	X4: Snapshot captures all state; Restore into a fresh Executor of the
//	    same plan continues with exactly the output of an uninterrupted run.
//	X5: bad input (invalid JSON, a timestamp that is not a datetime, a type
//	    error in an expression) never stops the executor: the event is
//	    counted and handed to Options.DeadLetter with the reason, and every
//	    other event is processed as usual.
//
// Decisions where the Stream Analytics reference is silent:
//
//   - Tumbling and hopping windows align to 0001-01-01T00:00Z (the .NET
//     epoch the service is built on); for sizes that divide a day this is
//     the same as aligning to midnight.
//   - Session windows check their maximum duration at multiples of it; a
//     session closes at the first check point more than the maximum past
//     its first event, or at its last event plus the timeout.
//   - The out-of-order cut-off is the largest event time seen minus the
//     tolerance (the time-handling document, conformance case 047); case 046
//     row 5 implies arrival time minus the tolerance and is a documented
//     deviation.
//   - Local runs pass ArrivalIsEventTime: the early and late policies then
//     never apply, as in the service's local testing.
//
// Substream timelines (TIMESTAMP BY ... OVER) are kept for the life of the
// executor; a key that stops sending keeps its few bytes of state.
//
// An Executor is not safe for concurrent use: the gateway runs one per
// partition actor, which serializes calls.
package exec
