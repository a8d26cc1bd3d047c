package cluster

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The replication, hand-off and take-over tests on the in-memory cluster
// (memnet_test.go): real gateways and stores, every message through the
// switch. Each ends by reading every row any gateway delivered and every
// device counter: a reading lost, or applied twice, fails it.

// TestClusterTakeOverRestoresReplicatedCheckpoint: a partition's server
// replicates its log and its safe checkpoints; when it dies, the replica
// that takes the partition over restores the checkpoint and replays the
// log after it: every reading has its row once, and every device counter
// (checkpointed state) counts each reading once (C5, C6, C8).
func TestClusterTakeOverRestoresReplicatedCheckpoint(t *testing.T) {
	c := newMemCluster(t, memConfig{gateways: 3, partitions: 4, replicas: 2, quorum: QuorumMajority})
	c.ingest("gw1", 200)
	victim := c.server(0)
	name := victim.n.cfg.Gateway
	// Every partition the victim serves has a safe checkpoint on its
	// replica, past some of the log.
	c.eventually("safe checkpoints replicated", func() bool {
		for p := 0; p < c.cfg.partitions; p++ {
			if !victim.gw.Serving(p) {
				continue
			}
			for _, m := range c.live() {
				if m != victim && !m.gw.Serving(p) && m.n.store.LastSeq(p) > 0 && m.safeThrough(t, p) == 0 {
					return false
				}
			}
		}
		return true
	})
	restored := 0
	for _, m := range c.live() {
		if m != victim {
			restored += int(m.safeThrough(t, 0))
		}
	}
	require.NotZero(t, restored, "no replica of partition 0 holds a safe checkpoint: the take-over restores none")
	c.ingest(name, 100) // in the log after the checkpoint (most of it)

	c.kill(name)
	c.waitSettled()
	var failovers uint64
	for _, m := range c.live() {
		failovers += m.n.failovers.Load()
	}
	require.NotZero(t, failovers, "nobody took the dead gateway's partitions over")
	c.ingest(c.live()[0].n.cfg.Gateway, 50)
	c.checkRows()
	c.checkDevices()
}

// TestClusterHandOffBackToOwner: the owner of a partition dies, another
// gateway takes it over, the owner starts again (a new member, its old
// copy in its store): the server catches it up and hands the partition
// back to it at a barrier (C8), and nothing is lost or applied twice.
func TestClusterHandOffBackToOwner(t *testing.T) {
	c := newMemCluster(t, memConfig{gateways: 3, partitions: 4, replicas: 2, quorum: QuorumMajority})
	c.ingest("gw1", 100)
	owner := c.server(0).n.cfg.Gateway
	dir := c.kill(owner)
	c.waitSettled()
	standIn := c.server(0)
	c.ingest(standIn.n.cfg.Gateway, 100)

	back := c.start(owner, dir)
	c.eventually("partition 0 handed back to its owner", func() bool { return back.gw.Serving(0) })
	c.waitSettled()
	require.NotZero(t, standIn.n.handoffs.Load(), "the stand-in handed nothing off")
	c.ingest(owner, 50)
	c.checkRows()
	c.checkDevices()
}

// TestClusterDroppedReplicationCaughtUp: a replicated log group never
// reaches the replica, which dies before the resend. The server goes on
// alone. The replica starts again from its store, with the gap: the
// server catches it up (reset, safe checkpoint, log after it) and hands
// it its own partitions back; then the server dies, and the replica's
// copies alone must hold every reading. Checkpoints are rare here, so the
// catch-up ships the log, not only a checkpoint.
func TestClusterDroppedReplicationCaughtUp(t *testing.T) {
	c := newMemCluster(t, memConfig{gateways: 2, partitions: 2, replicas: 2, quorum: QuorumNone, checkpoint: time.Minute})
	c.ingest("gw1", 50)
	gw2 := c.node("gw2")
	dropped := false
	c.net.setRule(func(m envelope) verdict {
		if !dropped && m.to == gw2.end.addr && isReplLog(m) {
			dropped = true
			return drop
		}
		return deliver
	})
	gw1 := c.node("gw1")
	published := make(chan error, 1)
	go func() { published <- c.publish(gw1, 50) }()
	c.eventually("a replication message dropped", func() bool { return c.net.drops.Load() > 0 })
	dir := c.kill("gw2")
	require.NoError(t, <-published)
	c.net.setRule(nil)
	c.waitSettled()
	c.ingest("gw1", 50)

	c.start("gw2", dir)
	c.waitSettled()
	c.kill("gw1")
	c.waitSettled()
	c.ingest("gw2", 20)
	c.checkRows()
	c.checkDevices()
}

// TestClusterDroppedReplicationResent: a replicated log group that is
// lost holds its commit (C5) until the stream sends it again, then every
// reading is there once.
func TestClusterDroppedReplicationResent(t *testing.T) {
	c := newMemCluster(t, memConfig{gateways: 2, partitions: 2, replicas: 2, quorum: QuorumNone})
	gw1, gw2 := c.node("gw1"), c.node("gw2")
	var dropped bool
	c.net.setRule(func(m envelope) verdict {
		if !dropped && m.from == gw1.end.addr && m.to == gw2.end.addr && isReplLog(m) {
			dropped = true
			return drop
		}
		return deliver
	})
	published := make(chan error, 1)
	go func() { published <- c.publish(gw1, 40) }()
	c.eventually("a replication message dropped", func() bool { return c.net.drops.Load() > 0 })
	select {
	case err := <-published:
		t.Fatalf("readings acknowledged before their replication: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	c.advance(resendAfter)
	require.NoError(t, <-published)
	c.checkRows()
	c.checkDevices()
}
