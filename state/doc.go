// Package state will hold everything that touches Pebble: the ingest log,
// checkpoints (operators/exec snapshots stored as bytes), outboxes and the
// job catalog (DESIGN.md section 4). It is empty until durable state lands.
package state
