// Package value owns the runtime values of the query language and their
// encodings: the Value type, records and arrays, datetime ticks, the JSON
// event decoder and encoder, and the conversion to and from protobuf.
//
// Invariants:
//
//	V1: a Value is immutable once built; records and arrays reachable from a
//	    Value are never mutated after they are handed to another stage,
//	    except a Decoder's reusable top-level record (see Decoder).
//	V2: datetimes are int64 ticks of 100 ns since 0001-01-01T00:00:00Z UTC.
//	V3: field names are matched case-insensitively and kept as written.
//
// Nothing here is safe for concurrent mutation; values themselves may be
// shared between goroutines once built.
package value
