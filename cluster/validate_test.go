package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/remote"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/millstream/millstream/internal/certs"
	"github.com/millstream/millstream/internal/testutil"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

const peerMember = "gw2#abc123"

// TestRefusedMessagesChangeNothing: each message with a field out of
// range (HandOff{partition: 100000} killed a gateway: index out of range
// on a goroutine) is refused, counted under its reason, and leaves the
// gateway as it was; a good message of the same kind is applied (the
// harness sees changes).
func TestRefusedMessagesChangeNothing(t *testing.T) {
	h := newHarness(t)
	now := time.Now().UnixNano()
	entry := func(origin string, seq uint64) *pb.LogEntry {
		return &pb.LogEntry{Input: "readings", Device: "d1", Payload: []byte(`{"t":1}`), Origin: origin, OriginSeq: seq}
	}
	many := func(k int) []*pb.LogEntry {
		es := make([]*pb.LogEntry, k)
		for i := range es {
			es[i] = entry(peerMember, uint64(i+1))
		}
		return es
	}
	job := &pb.Job{Name: "forged", Query: "SELECT * INTO o FROM i"}
	cases := []struct {
		name   string
		msg    *pb.StreamMsg
		reason string
	}{
		{"hand-off of partition 100000", streamMsg(peerMember, 1, &pb.HandOff{Partition: 100000}), rejectRange},
		{"hand-off with an epoch about to wrap", streamMsg(peerMember, 2, &pb.HandOff{Partition: 1, Epoch: math.MaxUint64}), rejectRange},
		{"hand-off request of partition 2^31", streamMsg(peerMember, 3, &pb.HandOffRequest{Partition: 1 << 31}), rejectRange},
		{"replication at a first seq that wraps", streamMsg(peerMember, 4, &pb.ReplLog{Groups: []*pb.ReplGroup{{Partition: 1, Epoch: 1, FirstSeq: math.MaxUint64, Entries: many(2)}}}), rejectRange},
		{"replication of partition 100000", streamMsg(peerMember, 5, &pb.ReplLog{Groups: []*pb.ReplGroup{{Partition: 100000, Epoch: 1, FirstSeq: 1, Entries: many(1)}}}), rejectRange},
		{"replication of 70000 groups", streamMsg(peerMember, 6, &pb.ReplLog{Groups: make([]*pb.ReplGroup, 70000)}), rejectRange},
		{"replication with a bad epoch", streamMsg(peerMember, 7, &pb.ReplLog{Groups: []*pb.ReplGroup{{Partition: 1, Epoch: 1 << 60, FirstSeq: 1, Entries: many(1)}}}), rejectRange},
		{"checkpoint without a checkpoint", streamMsg(peerMember, 8, &pb.ReplCheckpoint{Partition: 1, Epoch: 1, Safe: &pb.SafeCheckpoint{}}), rejectMalformed},
		{"checkpoint at a log position that wraps", streamMsg(peerMember, 9, &pb.ReplCheckpoint{Partition: 1, Epoch: 1,
			Safe: &pb.SafeCheckpoint{Checkpoint: &pb.Checkpoint{LogPosition: math.MaxUint64}}}), rejectRange},
		{"reset of partition 100000", streamMsg(peerMember, 10, &pb.ReplReset{Partition: 100000, Epoch: 1}), rejectRange},
		{"caught-up of partition 100000", streamMsg(peerMember, 11, &pb.CaughtUp{Partition: 100000}), rejectRange},
		{"forwarded batch of 5000 events", streamMsg(peerMember, 12, &pb.ForwardBatch{Partition: 1, Id: 1, Entries: many(5000)}), rejectRange},
		{"forwarded events of another gateway", streamMsg(peerMember, 13, &pb.ForwardBatch{Partition: 1, Id: 1, Entries: []*pb.LogEntry{entry("gw3#abc", 1)}}), rejectIdentity},
		{"forwarded batch of partition 100000", streamMsg(peerMember, 14, &pb.ForwardBatch{Partition: 100000, Id: 1, Entries: many(1)}), rejectRange},
		{"job version an hour ahead", streamMsg(peerMember, 15, &pb.JobUpdate{Job: job, Version: now + int64(time.Hour), Origin: peerMember}), rejectFuture},
		{"job version at the end of time", streamMsg(peerMember, 16, &pb.JobUpdate{Removed: "temps", Version: math.MaxInt64, Origin: peerMember}), rejectFuture},
		{"job update both deploy and removal", streamMsg(peerMember, 17, &pb.JobUpdate{Job: job, Removed: "x", Version: now, Origin: peerMember}), rejectMalformed},
		{"job update without an origin", streamMsg(peerMember, 18, &pb.JobUpdate{Removed: "x", Version: now}), rejectMalformed},
		{"status reply of 1000 partitions", streamMsg(peerMember, 19, &pb.StatusReply{Id: 1, Partitions: make([]*pb.PartitionHolding, 1000)}), rejectRange},
		{"epoch promise of partition 100000", streamMsg(peerMember, 25, &pb.EpochPromise{Id: 1, Partition: 100000, Epoch: 2}), rejectRange},
		{"epoch promise past the last epoch", streamMsg(peerMember, 26, &pb.EpochPromise{Id: 1, Partition: 1, Epoch: 1 << 60}), rejectRange},
		{"promised epoch past the last epoch", streamMsg(peerMember, 27, &pb.EpochPromised{Id: 1, Partition: 1, Promised: 1 << 60}), rejectRange},
		{"status reply promising past the last epoch", streamMsg(peerMember, 28, &pb.StatusReply{Id: 1, Partitions: []*pb.PartitionHolding{{Partition: 1, Epoch: 1, Promised: 1 << 60}}}), rejectRange},
		{"forget of a member name", streamMsg(peerMember, 20, &pb.ForgetGateway{Gateway: "gw3#abc"}), rejectRange},
		{"stream message without a body", streamMsg(peerMember, 21, nil), rejectMalformed},
		{"sender without an incarnation", streamMsg("gw2", 22, &pb.CaughtUp{Partition: 1}), rejectMalformed},
		{"sender with a control character", streamMsg("gw\x002#abc", 23, &pb.CaughtUp{Partition: 1}), rejectRange},
		{"address without a port", func() *pb.StreamMsg {
			m := streamMsg(peerMember, 24, &pb.CaughtUp{Partition: 1})
			m.Addr = "127.0.0.1"
			return m
		}(), rejectMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := h.state(t)
			count := h.n.rej.counts[c.reason].Load()
			h.deliver(c.msg)
			require.Equal(t, count+1, h.n.rej.counts[c.reason].Load(), "refused as %s", c.reason)
			require.Equal(t, before, h.state(t), "a refused message changed the gateway")
			require.Zero(t, h.n.rej.counts[rejectPanic].Load())
		})
	}

	// The same kinds, in range, do change it: the checks above can fail.
	h.n.mu.Lock()
	h.n.holding[1] = peerMember // caught up by the peer
	h.n.mu.Unlock()
	before := h.state(t)
	h.deliver(streamMsg(peerMember, 100, &pb.ReplLog{Groups: []*pb.ReplGroup{{Partition: 1, Epoch: 3, FirstSeq: 1, Entries: many(2)}}}))
	after := h.state(t)
	require.NotEqual(t, before, after)
	require.Equal(t, uint64(3), after.epochs[1])
	require.Equal(t, uint64(2), after.lastSeq[1])
	h.deliver(streamMsg(peerMember, 101, &pb.JobUpdate{Removed: "gone", Version: now, Origin: peerMember}))
	require.Equal(t, after.jobLog+1, h.state(t).jobLog, "a valid job update is recorded")
	require.Zero(t, h.n.rej.counts[rejectPanic].Load())
}

// TestJobVersionsCannotBeForged: an update from a member that names
// another live gateway as its origin is refused (one that relays for a
// gateway not live is taken: C12); a far-future version stored before
// the check loses to an operator's removal, here and on the others.
func TestJobVersionsCannotBeForged(t *testing.T) {
	h := newHarness(t)
	now := time.Now().UnixNano()
	h.n.mu.Lock()
	h.n.bases["gw3"] = "gw3#live"
	h.n.mu.Unlock()
	count := h.n.rej.counts[rejectIdentity].Load()
	h.deliver(streamMsg(peerMember, 1, &pb.JobUpdate{Removed: "temps", Version: now, Origin: "gw3#live"}))
	require.Equal(t, count+1, h.n.rej.counts[rejectIdentity].Load())
	require.Zero(t, h.state(t).jobLog)
	h.deliver(streamMsg(peerMember, 2, &pb.JobUpdate{Removed: "temps", Version: now, Origin: "gw4#gone"}))
	require.Equal(t, 1, h.state(t).jobLog, "a relay for a gateway not live is taken")
	count = h.n.rej.counts[rejectIdentity].Load()
	h.deliver(streamMsg(peerMember, 3, &pb.JobUpdate{Removed: "other", Version: now, Origin: h.n.name}))
	require.Equal(t, count+1, h.n.rej.counts[rejectIdentity].Load(), "nobody speaks for this gateway")

	// A version from before the check, out of range: any valid one wins.
	h.n.mu.Lock()
	h.n.jobVer["poisoned"] = jobVersion{math.MaxInt64, "gw2#old"}
	h.n.jobLog["poisoned"] = &pb.JobUpdate{Job: &pb.Job{Name: "poisoned"}, Version: math.MaxInt64, Origin: "gw2#old"}
	h.n.mu.Unlock()
	v := h.n.localJobVersion("poisoned")
	require.Equal(t, int64(1), v, "the operator's change counts from the start")
	h.deliver(streamMsg(peerMember, 4, &pb.JobUpdate{Removed: "poisoned", Version: v, Origin: peerMember}))
	h.n.mu.Lock()
	got := h.n.jobLog["poisoned"]
	h.n.mu.Unlock()
	require.Equal(t, "poisoned", got.GetRemoved(), "the removal replaced the out-of-range deploy")
}

// TestJobVersionsAreCounters: a change takes one more than the version
// known, whatever the clock says; of two changes at one version the
// greater origin wins; a version far above every version known is
// refused, one within the step is taken and the next real change still
// wins over it; deploy times from releases before the counters are taken
// near this clock, and counting goes on from them.
func TestJobVersionsAreCounters(t *testing.T) {
	for _, c := range []struct {
		cur     int64
		seen    bool
		want    int64
		comment string
	}{
		{0, false, 1, "first version"},
		{1, true, 2, "one more"},
		{41, true, 42, "one more"},
		{1_764_000_000_000_000_000, true, 1_764_000_000_000_000_001, "a deploy time from an older release: counting goes on from it"},
		{math.MaxInt64, true, 1, "out of range (stored before the checks): from the start"},
	} {
		require.Equal(t, c.want, nextJobVersion(c.cur, c.seen), c.comment)
	}
	require.True(t, jobNewer(jobVersion{math.MaxInt64, "a"}, true, 5, "b"))
	require.False(t, jobNewer(jobVersion{20, "a"}, true, 5, "b"))
	require.True(t, jobNewer(jobVersion{5, "a"}, true, 6, "a"))
	require.True(t, jobNewer(jobVersion{5, "a"}, true, 5, "b"), "same version: the greater origin")
	require.False(t, jobNewer(jobVersion{5, "b"}, true, 5, "a"))

	h := newHarness(t)
	job := &pb.Job{Name: "temps", Query: "SELECT deviceId INTO o FROM i"}
	version := func() int64 {
		h.n.mu.Lock()
		defer h.n.mu.Unlock()
		return h.n.jobVer["temps"].version
	}
	h.deliver(streamMsg(peerMember, 1, &pb.JobUpdate{Job: job, Version: 7, Origin: peerMember}))
	require.Equal(t, int64(7), version(), "a first version within the step of nothing known")
	require.Equal(t, int64(8), h.n.localJobVersion("temps"))

	count := h.n.rej.counts[rejectFuture].Load()
	h.deliver(streamMsg(peerMember, 2, &pb.JobUpdate{Removed: "temps", Version: 7 + maxJobVersionStep + 1, Origin: peerMember}))
	require.Equal(t, count+1, h.n.rej.counts[rejectFuture].Load(), "far above every version known: refused")
	require.Equal(t, int64(7), version())

	h.deliver(streamMsg(peerMember, 3, &pb.JobUpdate{Removed: "temps", Version: 7 + maxJobVersionStep, Origin: peerMember}))
	require.Equal(t, int64(7+maxJobVersionStep), version(), "within the step: taken")
	next := h.n.localJobVersion("temps")
	require.Equal(t, int64(7+maxJobVersionStep+1), next, "the next real change is above it")
	h.n.mu.Lock()
	plausible := h.n.jobVersionPlausible(next)
	h.n.mu.Unlock()
	require.True(t, plausible, "and the other gateways take it")

	now := time.Now().UnixNano()
	h.deliver(streamMsg(peerMember, 4, &pb.JobUpdate{Job: job, Version: now, Origin: peerMember}))
	require.Equal(t, now, version(), "a deploy time from an older release near this clock is taken")
	require.Equal(t, now+1, h.n.localJobVersion("temps"))
}

// TestSenderOf: the sender read without decoding is the one the decoder
// sees: the last field 1, only of the bytes wire type.
func TestSenderOf(t *testing.T) {
	enc := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		require.NoError(t, err)
		return b
	}
	from, err := senderOf(enc(&pb.StreamMsg{From: "gw1#a", Seq: 3, Body: &pb.StreamMsg_CaughtUp{CaughtUp: &pb.CaughtUp{Partition: 2}}}))
	require.NoError(t, err)
	require.Equal(t, "gw1#a", from)
	// Two senders: the decoder keeps the last.
	data := append(enc(&pb.StreamMsg{From: "gw2#a"}), enc(&pb.StreamMsg{From: "gw1#a", Seq: 1})...)
	from, err = senderOf(data)
	require.NoError(t, err)
	var m pb.StreamMsg
	require.NoError(t, proto.Unmarshal(data, &m))
	require.Equal(t, m.From, from)
	require.Equal(t, "gw1#a", from)
	// A varint field 1 is an unknown field to the decoder.
	data = protowire.AppendVarint(protowire.AppendTag(enc(&pb.StreamMsg{From: "gw2#a"}), 1, protowire.VarintType), 7)
	from, err = senderOf(data)
	require.NoError(t, err)
	require.Equal(t, "gw2#a", from)
	_, err = senderOf(enc(&pb.StreamMsg{Seq: 1}))
	require.Error(t, err)
	_, err = senderOf([]byte{0x0a, 0x50, 'x'})
	require.Error(t, err)
}

// TestLinkGuardFilter: of a batch, only the envelopes the cluster sends,
// from the authenticated gateway, pass to protoactor.
func TestLinkGuardFilter(t *testing.T) {
	g := newLinkGuard(true, newRejections(discardLogger()), 1<<10)
	g.memberUp(peerMember, &pb.NodeMeta{RemoteAddr: "127.0.0.1:7001"})
	good := mustMarshal(t, streamMsg(peerMember, 1, &pb.CaughtUp{Partition: 1}))
	ack := mustMarshal(t, &pb.StreamAck{From: peerMember, Session: 1, Seq: 1})
	b := &remote.MessageBatch{
		TypeNames: []string{streamMsgType, streamAckType, "actor.PoisonPill"},
		Targets:   []string{nodeActor, heartbeatActor, "p/1"},
		Envelopes: []*remote.MessageEnvelope{
			{TypeId: 0, Target: 0, MessageData: good},
			{TypeId: 1, Target: 1, MessageData: ack},
			{TypeId: 9, Target: 0, MessageData: good},                                         // type index past the batch
			{TypeId: 0, Target: 9, MessageData: good},                                         // target index past the batch
			{TypeId: 0, Target: 0, Sender: 3, MessageData: good},                              // sender index past the batch
			{TypeId: 2, Target: 0, MessageData: nil},                                          // a type the cluster never sends
			{TypeId: 0, Target: 2, MessageData: good},                                         // another actor
			{TypeId: 0, Target: 0, SerializerId: 1, MessageData: good},                        // JSON
			{TypeId: 0, Target: 0, MessageData: make([]byte, 2<<10)},                          // oversized
			{TypeId: 0, Target: 0, MessageData: mustMarshal(t, streamMsg("gw1#abc", 1, nil))}, // claims another gateway
			{TypeId: 0, Target: 0, MessageData: mustMarshal(t, streamMsg("gw2#old", 1, nil))}, // not a live member
			nil,
		},
	}
	g.filter(b, "gw2", nil)
	require.Len(t, b.Envelopes, 2)
	require.Equal(t, good, b.Envelopes[0].MessageData)
	require.Equal(t, ack, b.Envelopes[1].MessageData)
	want := map[string]uint64{rejectMalformed: 4, rejectType: 3, rejectOversized: 1, rejectIdentity: 1, rejectNotMember: 1}
	require.Equal(t, want, g.rej.snapshot())

	// Without TLS the sender is not checked (there is no identity), the
	// structure is.
	plain := newLinkGuard(false, newRejections(discardLogger()), 1<<10)
	b = &remote.MessageBatch{TypeNames: []string{streamMsgType}, Targets: []string{nodeActor},
		Envelopes: []*remote.MessageEnvelope{{TypeId: 0, Target: 0, MessageData: good}, {TypeId: 0, Target: 5, MessageData: good}}}
	plain.filter(b, "", nil)
	require.Len(t, b.Envelopes, 1)
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return b
}

func linkOf(p *testutil.PKI, f certs.Files) *LinkTLS {
	return &LinkTLS{CertFile: f.Cert, KeyFile: f.Key, CAFile: p.CAFile()}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	b, _ := pem.Decode(data)
	c, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	return c
}

// TestGatewayCertificates: only a gateway certificate of the cluster CA
// names a gateway: not a device or admin certificate of the same CA with
// a gateway's name, not a gateway certificate of another CA; and a
// gateway refuses to start with a certificate naming another gateway.
func TestGatewayCertificates(t *testing.T) {
	pki := testutil.NewPKI(t)
	other := testutil.NewPKI(t)
	roots := x509.NewCertPool()
	roots.AddCert(pki.CA.Cert)
	gw := pki.Issue(t, "gw1", certs.Request{Kind: certs.Gateway, Name: "gw1"})
	name, err := verifyGatewayCert([]*x509.Certificate{readCert(t, gw.Cert)}, roots)
	require.NoError(t, err)
	require.Equal(t, "gw1", name)
	for _, c := range []struct {
		what  string
		files certs.Files
	}{
		{"device certificate named gw1", pki.Issue(t, "dev", certs.Request{Kind: certs.Device, Name: "gw1"})},
		{"admin certificate named gw1", pki.Issue(t, "adm", certs.Request{Kind: certs.Admin, Name: "gw1", Role: "operate"})},
		{"gateway certificate of another CA", other.Issue(t, "gw1", certs.Request{Kind: certs.Gateway, Name: "gw1"})},
	} {
		_, err := verifyGatewayCert([]*x509.Certificate{readCert(t, c.files.Cert)}, roots)
		require.Error(t, err, c.what)
	}
	rej := newRejections(discardLogger())
	srv, cli, err := loadLinkTLS(linkOf(pki, gw), "gw1", rej)
	require.NoError(t, err)
	require.Equal(t, uint16(tls.VersionTLS12), srv.MinVersion)
	require.Equal(t, tls.RequireAnyClientCert, srv.ClientAuth)
	require.NotNil(t, cli.VerifyConnection)
	_, _, err = loadLinkTLS(linkOf(pki, gw), "gw2", rej)
	require.ErrorContains(t, err, `names gateway "gw1"`)
	_, _, err = loadLinkTLS(&LinkTLS{CertFile: gw.Cert, KeyFile: gw.Key, CAFile: filepath.Join(other.Dir, "ca", "ca.crt")}, "gw1", rej)
	require.Error(t, err, "its own certificate must verify against the CA")
}

// TestSplitGroups: replication split to the link's message size keeps
// every entry once, in order, at its sequence number.
func TestSplitGroups(t *testing.T) {
	mk := func(p uint32, first uint64, k, size int) *pb.ReplGroup {
		g := &pb.ReplGroup{Partition: p, Epoch: 2, FirstSeq: first}
		for i := 0; i < k; i++ {
			g.Entries = append(g.Entries, &pb.LogEntry{Device: "d", Payload: make([]byte, size)})
		}
		return g
	}
	gs := []*pb.ReplGroup{mk(0, 10, 5, 400), mk(1, 1, 1, 5000), mk(2, 7, 3, 10)}
	parts := splitGroups(gs, 1000)
	require.Greater(t, len(parts), 2)
	seen := map[uint32][]uint64{}
	for _, part := range parts {
		size := 0
		for _, g := range part {
			for i, e := range g.Entries {
				seen[g.Partition] = append(seen[g.Partition], g.FirstSeq+uint64(i))
				size += entryBytes(e)
			}
		}
		require.True(t, size <= 1000 || len(part) == 1 && len(part[0].Entries) == 1, "part of %d bytes", size)
	}
	require.Equal(t, map[uint32][]uint64{0: {10, 11, 12, 13, 14}, 1: {1}, 2: {7, 8, 9}}, seen)
	require.Len(t, splitGroups(nil, 1000), 1)
}

// TestGossipKeyRotation: a gateway accepts gossip under its old keys and
// sends under its primary one; one with none of the others' keys cannot
// join (the middle step of a rotation, and a stranger).
func TestGossipKeyRotation(t *testing.T) {
	k1, k2, k3 := []byte(strings.Repeat("1", 16)), []byte(strings.Repeat("2", 32)), []byte(strings.Repeat("3", 16))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfgA := testConfig("gw-a", nil, k1)
	cfgA.OldKeys = [][]byte{k2}
	a, err := Join(ctx, cfgA)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Shutdown() })
	cfgB := testConfig("gw-b", []string{a.Addr()}, k2)
	cfgB.OldKeys = [][]byte{k1}
	b, err := Join(ctx, cfgB)
	require.NoError(t, err, "B sends under k2, which A accepts")
	t.Cleanup(func() { _ = b.Shutdown() })
	waitMembers(t, []string{"gw-a", "gw-b"}, a, b)

	cfgC := testConfig("gw-c", []string{a.Addr()}, k3)
	jctx, jcancel := context.WithTimeout(ctx, 3*time.Second)
	defer jcancel()
	c, err := Join(jctx, cfgC)
	if err == nil {
		_ = c.Shutdown()
	}
	require.Error(t, err, "a gateway without any of the cluster's keys joins nothing")

	_, err = Join(ctx, Config{Name: "x", Bind: "127.0.0.1:0", OldKeys: [][]byte{k1}, Logger: discardLogger()})
	require.ErrorContains(t, err, "old gossip keys without a gossip key")
	_, err = Join(ctx, Config{Name: "x", Bind: "127.0.0.1:0", SecretKey: k1, OldKeys: [][]byte{[]byte("short")}, Logger: discardLogger()})
	require.ErrorContains(t, err, "old gossip key 1 is 5 bytes")

	dir := t.TempDir()
	keyFile := filepath.Join(dir, "gossip.key")
	require.NoError(t, os.WriteFile(keyFile, []byte("MTExMTExMTExMTExMTExMQ==\n"), 0o600))
	primary, old, err := LoadGossipKeys("", keyFile, []string{"MjIyMjIyMjIyMjIyMjIyMg=="})
	require.NoError(t, err)
	require.Equal(t, k1, primary)
	require.Equal(t, [][]byte{[]byte(strings.Repeat("2", 16))}, old)
	_, _, err = LoadGossipKeys("MTExMTExMTExMTExMTExMQ==", keyFile, nil)
	require.Error(t, err, "inline and file both")
}

// TestCheckServer: a dialed server must be the member that advertises the
// address dialed; at an address no member advertises (acks go where a
// message said), any live member.
func TestCheckServer(t *testing.T) {
	g := newLinkGuard(true, newRejections(discardLogger()), 1<<20)
	g.memberUp("gw1#a", &pb.NodeMeta{RemoteAddr: "10.0.0.1:7947"})
	g.memberUp("gw2#b", &pb.NodeMeta{RemoteAddr: "10.0.0.2:7947"})
	require.NoError(t, g.checkServer("10.0.0.2:7947", "gw2"))
	require.ErrorContains(t, g.checkServer("10.0.0.2:7947", "gw1"), "not the member that advertises the address")
	require.NoError(t, g.checkServer("127.0.0.1:7947", "gw1"))
	require.ErrorContains(t, g.checkServer("127.0.0.1:7947", "gw3"), "not a member")
	g.memberDown("gw2#b")
	require.ErrorContains(t, g.checkServer("10.0.0.2:7947", "gw2"), "not a member")
}
