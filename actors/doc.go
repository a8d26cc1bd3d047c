// Package actors is the gateway runtime on protoactor-go: partition actors
// that order each partition's input, job actors (their children, one per
// deployed job on each partition it runs on) that run the query engine
// (operators/exec), device actors (their children too, one per active
// device) that own each device's control plane (deviceactor.go), the
// batching router that feeds them, the embedded MQTT broker hook that
// turns device messages into events, and the output sinks.
//
// Data path:
//
//	MQTT publish -> brokerHook.OnPublish -> Gateway.Ingest
//	  -> batcher[p] (p = hash(deviceId) mod P; flushed by size or delay)
//	  -> partition actor p (order, duplicates, liveness, forwards)
//	     -> device actor per device: summaries every 5 s in memory, with
//	        each checkpoint when durable, before any read, write or call
//	  -> job actor per job: exec.Executor -> Sink.Encode (jobactor.go)
//	  -> partition actor p: row ids in step order (D2) -> outbox
//	  -> drainer per output -> deliverer (MQTT, file, HTTP, log; outbox.go)
//	  -> MQTT, clustered: RelayLink -> the other gateways' PublishRelayed
//	     (cluster-wide outputs, R1-R2 in relay.go)
//
// Invariants:
//
//	A1: an executor's state is touched only inside its job actor's
//	    Receive, so the engine needs no locks; the partition waits for all
//	    its jobs' answers before it takes its next message.
//	A2: every event of a device goes to the same partition, in the order
//	    the gateway received it.
//	A3: mailboxes are bounded: when a partition falls behind, Ingest blocks,
//	    which holds back the MQTT acknowledgement (QoS 1) and slows the
//	    publisher instead of growing memory. Nothing is dropped silently.
//	A4: a job whose state is keyed by something other than the device
//	    (global aggregates, joins, MATCH_RECOGNIZE, UNION) runs in partition
//	    0 only, so its results are the same as on one executor. The other
//	    partitions forward such a job the events (and device liveness
//	    events) they receive, each device's in order; broadcasts such as
//	    Drain visit partition 0 last so forwarded events are counted.
//	A5: a partition actor that panics is restarted with exponential
//	    backoff by its supervisor; its jobs are redeployed from the
//	    gateway's job table on restart. A job actor that panics is
//	    restarted alone: empty in memory, rebuilt from the checkpoint
//	    and log when durable (jobactor.go, jobrestart.go).
//	A6: the watermark of an A4 job is the lowest of the partitions
//	    feeding it that are not idle (exec.IngestFrom): a partition that lags
//	    (replaying its log, handed off, behind a slow link) does not have
//	    its events taken as out of order because another one is ahead.
//
// Rows take one path in both modes: an outbox drained per output with
// retries, a time-to-live, a quota and dead letters. In memory the outbox
// is a state.MemOutbox (lost on restart); with a state.Store
// (Config.Store) the gateway is durable: events are logged with group
// commit before they are acknowledged, partitions checkpoint and recover,
// and the outbox is the store's. The invariants of that mode (D1-D6) are
// in durable.go; the group commit is logwriter.go, rows and checkpoints
// checkpoint.go, recovery and poison entries recovery.go, the drainers
// (actors) outbox.go, forwards lost in a failed commit fwdredo.go, and
// the partitions an idle gateway does not tick quiet.go.
//
// A durable gateway joins a cluster through a ClusterLink (package cluster
// implements it): it then serves some partitions, forwards events of the
// others, and replicates its log before applying it (C4-C7, cluster.go).
package actors
