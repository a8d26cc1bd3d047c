// Package state owns everything that touches Pebble: the per-partition
// ingest log and checkpoints, the outboxes of the outputs and the job
// catalog.
// It stores bytes and protobuf messages and knows nothing of the query
// engine (DESIGN.md section 4).
//
// Key layout (all integers big-endian, so keys sort by partition, then by
// sequence):
//
//	'l' partition:uint16 seq:uint64  -> LogEntry    (ingest log)
//	'c' partition:uint16             -> Checkpoint  (latest checkpoint)
//	'o' output 0x00 seq:uint64       -> OutboxEntry (rows waiting for their sink; outbox.go)
//	'x' output 0x00 seq:uint64       -> OutboxEntry (rows a sink refused for good)
//	'w' partition:uint16             -> uint64      (last output seq of the partition in the outbox)
//	'J' name                         -> JobUpdate   (job catalog: newest deploy or removal of a job, its version and origin; jobs.go)
//	'j' name                         -> Job         (the catalog before versions; moved into 'J' at start, MigrateJobCatalog)
//	'r', 'e', 'P', 'g', 'G'                         (cluster: safe checkpoints, epochs, promised epochs, gateways, forgotten gateways; cluster.go)
//	'f' partition:uint16 origin 0x00 seq:uint64     -> LogEntry    (cluster: input parked while cut off; parked.go)
//	'D' id:uint64, 'd' partition:uint16             (dead letters and their replay positions; deadletters.go)
//
// Beside Pebble's files, MILLSTREAM-REPLAY holds one slot per partition:
// how far its replay got, to find a log entry that ends the process
// (replay.go).
//
// Invariants:
//
//	S1: a log entry is durable when Append or AppendGroup returns (with
//	    Sync, the default): the caller may acknowledge the event (MQTT QoS
//	    1) only then.
//	S2: sequence numbers of a partition increase by one per entry and are
//	    never reused, also across restarts (unless its checkpoint is
//	    damaged and the gateway was told to start without it).
//	S3: a checkpoint and the truncation of the log it covers are written in
//	    one atomic batch: after a crash either both happened or neither.
//	S4: one writer per partition log at a time (the gateway's log writer,
//	    which groups every partition's entries into one batch and one sync);
//	    Append for different partitions may run concurrently, and Pebble's
//	    commit pipeline groups their WAL syncs.
//
// The store is opened with FormatMajorVersion pinned (FormatTableFormatV6),
// so a gateway rolled back to an earlier v2.1 binary can still open it.
// A damaged store, checkpoint or log entry (Pebble checksum mismatch,
// truncated file, undecodable value) is reported as ErrCorrupt, never
// silently skipped; Pebble's default of ending the process on corruption
// is replaced by an error on the read that found it. How an operator
// recovers is the gateway's business (README, "Damaged state").
package state
