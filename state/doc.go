// Package state owns everything that touches Pebble: the per-partition
// ingest log and checkpoints (the outbox and the job catalog are to come).
// It stores bytes and protobuf messages and knows nothing of the query
// engine (DESIGN.md section 4).
//
// Key layout (all integers big-endian, so keys sort by partition, then by
// sequence):
//
//	'l' partition:uint16 seq:uint64  -> LogEntry   (ingest log)
//	'c' partition:uint16             -> Checkpoint (latest checkpoint)
//
// Invariants:
//
//	S1: a log entry is durable when Append returns (with Sync, the default):
//	    the caller may acknowledge the event (MQTT QoS 1) only then.
//	S2: sequence numbers of a partition increase by one per entry and are
//	    never reused, also across restarts.
//	S3: a checkpoint and the truncation of the log it covers are written in
//	    one atomic batch: after a crash either both happened or neither.
//	S4: only a partition's owner writes its keys (one goroutine per
//	    partition); Append for different partitions may run concurrently,
//	    and Pebble's commit pipeline groups their WAL syncs (group commit).
//
// The store is opened with FormatMajorVersion pinned (FormatTableFormatV6),
// so a gateway rolled back to an earlier v2.1 binary can still open it.
// A damaged store or checkpoint is reported as ErrCorrupt with the way to
// recover (move the data directory aside and restart; the partition then
// starts empty), never silently skipped.
package state
