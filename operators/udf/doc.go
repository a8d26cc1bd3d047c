// Package udf runs the JavaScript user-defined functions (udf.name) and
// aggregates (uda.name) of a job, in the Stream Analytics shape, on goja,
// a JavaScript engine written in Go: no cgo, so the gateway stays one
// static binary, and the engine can be interrupted from another goroutine,
// which is how the CPU limit works.
//
// A scalar function's code defines function main(args...) returning the
// result. An aggregate's code defines function main() as a constructor
// whose object has init(), accumulate(value, timestamp) and
// computeResult(); deaccumulate and deaccumulateState may be there and
// are not called (a window keeps its values, see exec).
//
// Invariants:
//
//	U1: a call sees no file, network, clock or randomness: goja has no I/O
//	    of its own, nothing is added to the global object, Math.random and
//	    Date.now throw, and Date needs an argument (new Date() throws).
//	U2: a call runs at most Function.timeout_ms of wall time (goja's
//	    Interrupt from a timer); then it fails.
//	U3: a result is at most Function.max_result_bytes (its JSON size) and
//	    nested at most value.DefaultMaxDepth deep; calls nest at most
//	    MaxCallStack deep; String.prototype.repeat, padStart and padEnd
//	    refuse to build a string over max_result_bytes.
//	U4: the script's own globals are frozen (deeply) once it has run, so
//	    one call cannot leave state for the next: the same arguments give
//	    the same result, and a replay the same rows.
//	U5: a call that runs past 5 ms is watched: once the process has
//	    allocated MaxCallAllocBytes (64 MiB) since the call began, it is
//	    interrupted and fails. goja keeps no heap account of its own, so
//	    this counts the whole process's allocation: approximate, a call
//	    may go past the bound by what it allocates in 5 ms, and what
//	    other goroutines allocate meanwhile counts too.
//
// What is not bounded: state a script hides in a closure (U4 freezes objects,
// not closed-over variables: a function that counts calls in a closure
// gives different results after a restart). Local-time Date methods follow
// the gateway's time zone; use the UTC ones.
//
// A Func is not safe for concurrent use: each executor (one goroutine)
// compiles its own.
package udf
