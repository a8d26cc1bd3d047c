// Package benchmarks holds the benchmarks that issues name as acceptance
// figures, so they are found in one place. Results, with the machine and
// the command, are recorded in RESULTS.md.
//
// Run them with:
//
//	go test ./benchmarks -run XXX -bench . -benchmem
package benchmarks
