// Package querytest runs query test folders: a query, its input events and
// the rows each output must produce, the way Stream Analytics users unit
// test their jobs. It backs `millstream query test` and the conformance
// suite in testdata/conformance (a copy of the project's shared cases).
//
// A folder holds:
//
//	query.sql                the query
//	input.jsonl              events of the only input (one JSON object per line)
//	input-<Alias>.jsonl      events of input <Alias>, when there are several
//	expected.jsonl           rows of the only output (`output` without INTO)
//	expected-<Alias>.jsonl   rows of output <Alias>
//	case.json                optional: inputs, outputs, options, comparison rules
//
// Rows are compared as multisets by default, numbers within a relative
// tolerance, ISO-8601 strings as instants, and a JSON null equals a missing
// field. An empty expected file means the output must stay empty.
package querytest
