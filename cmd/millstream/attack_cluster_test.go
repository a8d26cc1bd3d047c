package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/remote"
	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/millstream/millstream/internal/certs"
	"github.com/millstream/millstream/internal/testutil"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Attacks on the link between gateways (issue 12), by a client in this
// process speaking protoactor remote's gRPC protocol to real gateway
// processes on loopback.

// startSecureCluster starts n gateways whose link is mutual TLS with
// certificates of pki and whose gossip is encrypted.
func startSecureCluster(t *testing.T, n int, pki *testutil.PKI) *testCluster {
	t.Helper()
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("gw%d", i)
		pki.Issue(t, name, certs.Request{Kind: certs.Gateway, Name: name})
	}
	key := make([]byte, 32)
	_, err := rand.Read(key)
	require.NoError(t, err)
	keyFile := filepath.Join(pki.Dir, "gossip.key")
	require.NoError(t, os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600))
	extra := fmt.Sprintf("  tls: {cert_file: %q, key_file: %q, ca_file: %q}\n  gossip_key_file: %q",
		filepath.Join(pki.Dir, "{name}.crt"), filepath.Join(pki.Dir, "{name}.key"), pki.CAFile(), keyFile)
	c := newTestCluster(t, extra)
	for i := 0; i < n; i++ {
		c.add()
	}
	c.waitSettled(c.gws, 30*time.Second)
	return c
}

// linkClient is a client of a gateway's cluster link.
type linkClient struct {
	conn   *grpc.ClientConn
	stream remote.Remoting_ReceiveClient
	cancel context.CancelFunc
}

// dialLink connects to a gateway's remote address as protoactor does (nil
// cfg: plain gRPC) and waits for its answer to the connect request.
func dialLink(t *testing.T, addr string, cfg *tls.Config) (_ *linkClient, err error) {
	t.Helper()
	creds := insecure.NewCredentials()
	if cfg != nil {
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	c := &linkClient{conn: conn, cancel: cancel}
	t.Cleanup(c.close)
	// A refused connection is closed at once: gRPC would keep dialing.
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	if c.stream, err = remote.NewRemotingClient(conn).Receive(ctx); err != nil {
		return nil, err
	}
	err = c.stream.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectRequest{ConnectRequest: &remote.ConnectRequest{
		ConnectionType: &remote.ConnectRequest_ServerConnection{ServerConnection: &remote.ServerConnection{MemberId: "attacker", Address: "127.0.0.1:1"}}}}})
	if err != nil {
		return nil, err
	}
	resp, err := c.stream.Recv()
	if err != nil {
		return nil, err
	}
	if resp.GetConnectResponse() == nil {
		return nil, fmt.Errorf("no connect response: %v", resp)
	}
	return c, nil
}

func (c *linkClient) close() {
	c.cancel()
	c.conn.Close()
}

// send sends messages to a gateway actor in one batch.
func (c *linkClient) send(t *testing.T, target string, msgs ...proto.Message) {
	t.Helper()
	b := &remote.MessageBatch{Targets: []string{target}}
	types := map[string]int32{}
	for _, m := range msgs {
		name := string(proto.MessageName(m))
		id, ok := types[name]
		if !ok {
			id = int32(len(b.TypeNames))
			types[name] = id
			b.TypeNames = append(b.TypeNames, name)
		}
		data, err := proto.Marshal(m)
		require.NoError(t, err)
		b.Envelopes = append(b.Envelopes, &remote.MessageEnvelope{TypeId: id, Target: 0, MessageData: data})
	}
	c.sendBatch(t, b)
}

func (c *linkClient) sendBatch(t *testing.T, b *remote.MessageBatch) {
	t.Helper()
	require.NoError(t, c.stream.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_MessageBatch{MessageBatch: b}}))
}

// linkView is what an attack must leave as it was on a gateway: who
// serves each partition at which epoch, and the jobs.
type linkView struct {
	servers []string
	epochs  []uint64
	jobs    string
}

func viewOf(t *testing.T, g *clusterGateway) linkView {
	t.Helper()
	st, err := g.status(t)
	require.NoError(t, err)
	var v linkView
	for _, p := range st.Partitions {
		v.servers = append(v.servers, p.Server)
		v.epochs = append(v.epochs, p.Epoch)
	}
	jobs, err := httpGet("http://" + g.admin + "/v1/jobs")
	require.NoError(t, err)
	// The jobs as deployed, without the live state estimate and work
	// time of their actors (they move as the readings of the test's load
	// come in, and with every tick).
	v.jobs = liveJobFields.ReplaceAllString(string(jobs), "")
	return v
}

var liveJobFields = regexp.MustCompile(`"(stateBytes|workSeconds)":[0-9.e+-]+,?`)

func rejected(t *testing.T, g *clusterGateway) map[string]uint64 {
	t.Helper()
	st, err := g.status(t)
	require.NoError(t, err)
	if st.Counters.Rejected == nil {
		return map[string]uint64{}
	}
	return st.Counters.Rejected
}

// waitRejected waits until g counted want more refusals per reason than
// in before, and checks it counted no other.
func waitRejected(t *testing.T, g *clusterGateway, before, want map[string]uint64) {
	t.Helper()
	waitRejectedAtLeast(t, g, before, want)
	time.Sleep(200 * time.Millisecond) // anything more on its way
	got := rejected(t, g)
	for reason, k := range got {
		require.Equal(t, before[reason]+want[reason], k, "refusals for %s (before %v, now %v)", reason, before, got)
	}
}

// waitRejectedAtLeast waits until g counted at least want more refusals
// per reason than in before.
func waitRejectedAtLeast(t *testing.T, g *clusterGateway, before, want map[string]uint64) {
	t.Helper()
	require.Eventually(t, func() bool {
		got := rejected(t, g)
		for reason, k := range want {
			if got[reason] < before[reason]+k {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "refusals: before %v, want %v more", before, want)
}

// memberOf is the member name of gateway name as g sees it, and its
// remote address.
func memberOf(t *testing.T, g *clusterGateway, name string) (string, string) {
	t.Helper()
	st, err := g.status(t)
	require.NoError(t, err)
	for _, m := range st.Members {
		if m.Gateway == name {
			return m.Name, m.Remote
		}
	}
	t.Fatalf("%s does not see %s", g.name, name)
	return "", ""
}

func requireUp(t *testing.T, g *clusterGateway) {
	t.Helper()
	_, err := httpGet("http://" + g.admin + "/readyz")
	require.NoError(t, err, "%s is not up", g.name)
	logs := g.gw.Logs()
	require.NotContains(t, logs, "panic:", "%s panicked", g.name)
	require.NotContains(t, logs, "recovered from a panic", "%s panicked (recovered)", g.name)
}

var attackSession uint64 = uint64(time.Now().UnixNano())

// attackMsg is a stream message from member (the first of a new session,
// so the gateway takes it rather than waiting for earlier ones).
func attackMsg(from, addr string, body isStreamBody) *pb.StreamMsg {
	attackSession++
	m := &pb.StreamMsg{From: from, Addr: addr, Session: attackSession, Seq: 1}
	body.set(m)
	return m
}

type isStreamBody interface{ set(*pb.StreamMsg) }

type handOff struct{ *pb.HandOff }
type replLog struct{ *pb.ReplLog }
type forward struct{ *pb.ForwardBatch }
type jobUpdate struct{ *pb.JobUpdate }
type statusReply struct{ *pb.StatusReply }

func (b handOff) set(m *pb.StreamMsg)   { m.Body = &pb.StreamMsg_Handoff{Handoff: b.HandOff} }
func (b replLog) set(m *pb.StreamMsg)   { m.Body = &pb.StreamMsg_Log{Log: b.ReplLog} }
func (b forward) set(m *pb.StreamMsg)   { m.Body = &pb.StreamMsg_Forward{Forward: b.ForwardBatch} }
func (b jobUpdate) set(m *pb.StreamMsg) { m.Body = &pb.StreamMsg_Job{Job: b.JobUpdate} }
func (b statusReply) set(m *pb.StreamMsg) {
	m.Body = &pb.StreamMsg_StatusReply{StatusReply: b.StatusReply}
}

func forgedJob(name string) *pb.Job {
	return &pb.Job{Name: name, Query: "SELECT deviceId, temperature INTO alarms FROM readings",
		Inputs:  []*pb.JobInput{{Name: "readings", Topic: "devices/+/messages/events"}},
		Outputs: []*pb.JobOutput{{Name: "alarms", Sink: &pb.JobOutput_Log{Log: &pb.LogSink{Prefix: name}}}}}
}

func jobExists(g *clusterGateway, name string) bool {
	_, err := httpGet("http://" + g.admin + "/v1/jobs/" + name)
	return err == nil
}

// TestClusterLinkAttacks (issue 12): two gateways whose link is mutual
// TLS (and gossip encrypted) forward events and spread a job. Then an
// attacker on the network: cannot connect without a certificate, with one
// of another CA or with a device certificate of the cluster CA; with a
// member's certificate, cannot claim another sender, and cannot change
// anything with malformed or out-of-range messages (HandOff{partition:
// 100000} used to kill a gateway) or a job version from the future. The
// gateways stay up, unchanged, count every refusal, and still work.
func TestClusterLinkAttacks(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two gateway processes; runs without -short")
	}
	pki := testutil.NewPKI(t)
	c := startSecureCluster(t, 2, pki)
	gw1, gw2 := c.gws[0], c.gws[1]
	gw1Member, gw1Remote := memberOf(t, gw2, "gw1")
	gw2Member, gw2Remote := memberOf(t, gw1, "gw2")
	gw2Files := certs.Files{Cert: filepath.Join(pki.Dir, "gw2.crt"), Key: filepath.Join(pki.Dir, "gw2.key")}

	t.Run("events forwarded and a job deployed over mutual TLS", func(t *testing.T) {
		const rounds = 200
		s, want := clusterInput(t, 6, rounds)
		c.runClusterLoad(s, rounds, func(int) {})
		c.waitOutputs(want, s.base.Add(30*time.Minute), time.Minute)
		require.Positive(t, c.counters(c.gws).Forwarded, "events went from gateway to gateway")
		require.NoError(t, adminCall(http.MethodPost, "http://"+gw1.admin+"/v1/jobs", `name: extra
query: SELECT deviceId, temperature INTO alarms FROM readings WHERE temperature > 100
inputs: [{name: readings, topic: "devices/+/messages/events"}]
outputs: [{name: alarms, log: {prefix: extra}}]
`))
		require.Eventually(t, func() bool { return jobExists(gw2, "extra") }, 10*time.Second, 50*time.Millisecond, "the job reached gw2")
		for _, g := range c.gws {
			require.Empty(t, rejected(t, g), "%s refused a message of the cluster itself", g.name)
		}
	})

	t.Run("no certificate, another CA, a device certificate", func(t *testing.T) {
		before := rejected(t, gw1)
		_, err := dialLink(t, gw1Remote, nil)
		require.Error(t, err, "plain gRPC")
		_, err = dialLink(t, gw1Remote, pki.ClientTLS(t, nil))
		require.Error(t, err, "TLS without a client certificate")
		other := testutil.NewPKI(t)
		otherFiles := other.Issue(t, "gw2", certs.Request{Kind: certs.Gateway, Name: "gw2"})
		_, err = dialLink(t, gw1Remote, pki.ClientTLS(t, &otherFiles))
		require.Error(t, err, "a gateway certificate of another CA")
		device := pki.Issue(t, "device-gw2", certs.Request{Kind: certs.Device, Name: "gw2"})
		_, err = dialLink(t, gw1Remote, pki.ClientTLS(t, &device))
		require.Error(t, err, "a device certificate of the cluster CA named like a gateway")
		// At least: gRPC may try a refused connection again before it is
		// closed.
		waitRejectedAtLeast(t, gw1, before, map[string]uint64{"identity": 2})
		// The real one connects.
		_, err = dialLink(t, gw1Remote, pki.ClientTLS(t, &gw2Files))
		require.NoError(t, err)
	})

	t.Run("a rogue gossip member without the key", func(t *testing.T) {
		// On a plain cluster, three short joins of a made-up member once
		// fenced the only real gateway for good.
		for i := 0; i < 3; i++ {
			cfg := memberlist.DefaultLANConfig()
			cfg.Name = fmt.Sprintf("rogue#%d", i)
			cfg.BindAddr, cfg.BindPort = "127.0.0.1", 0
			cfg.LogOutput = io.Discard
			ml, err := memberlist.Create(cfg)
			require.NoError(t, err)
			_, err = ml.Join([]string{c.seed})
			require.Error(t, err, "gossip without the key is refused")
			require.NoError(t, ml.Shutdown())
		}
		for _, g := range c.gws {
			st, err := g.status(t)
			require.NoError(t, err)
			require.False(t, st.Fenced, "%s fenced by a rogue member", g.name)
			require.ElementsMatch(t, []string{"gw1", "gw2"}, st.Known, "%s counts only the real gateways", g.name)
			for _, m := range st.Members {
				require.NotContains(t, m.Name, "rogue")
			}
		}
	})

	t.Run("a member's certificate claiming another sender", func(t *testing.T) {
		link, err := dialLink(t, gw1Remote, pki.ClientTLS(t, &gw2Files))
		require.NoError(t, err)
		before, view := rejected(t, gw1), viewOf(t, gw1)
		now := time.Now().UnixNano()
		// As gw1 itself, as a gateway that is not a member, and as gw2
		// under an incarnation that is not live.
		link.send(t, "millstream-cluster",
			attackMsg(gw1Member, gw2Remote, jobUpdate{&pb.JobUpdate{Job: forgedJob("forged1"), Version: now, Origin: gw1Member}}),
			attackMsg("gw3#abc", gw2Remote, jobUpdate{&pb.JobUpdate{Job: forgedJob("forged2"), Version: now, Origin: "gw3#abc"}}),
			attackMsg("gw2#zzz", gw2Remote, jobUpdate{&pb.JobUpdate{Job: forgedJob("forged3"), Version: now, Origin: "gw2#zzz"}}),
			&pb.StreamAck{From: gw1Member, Session: 1, Seq: 1})
		// As itself, relaying a deploy in the name of gw1, which is live.
		link.send(t, "millstream-cluster", attackMsg(gw2Member, gw2Remote, jobUpdate{&pb.JobUpdate{Job: forgedJob("forged4"), Version: now, Origin: gw1Member}}))
		waitRejected(t, gw1, before, map[string]uint64{"identity": 4, "not_member": 1})
		for _, name := range []string{"forged1", "forged2", "forged3", "forged4"} {
			require.False(t, jobExists(gw1, name), name)
			require.False(t, jobExists(gw2, name), name)
		}
		require.Equal(t, view, viewOf(t, gw1))
		requireUp(t, gw1)
	})

	t.Run("malformed and out-of-range messages", func(t *testing.T) {
		link, err := dialLink(t, gw1Remote, pki.ClientTLS(t, &gw2Files))
		require.NoError(t, err)
		before, view := rejected(t, gw1), viewOf(t, gw1)
		entries := make([]*pb.LogEntry, 5000)
		for i := range entries {
			entries[i] = &pb.LogEntry{Input: "readings", Device: "d", Payload: []byte("{}"), Origin: gw2Member, OriginSeq: uint64(i + 1)}
		}
		link.send(t, "millstream-cluster",
			attackMsg(gw2Member, gw2Remote, handOff{&pb.HandOff{Partition: 100000}}),
			attackMsg(gw2Member, gw2Remote, handOff{&pb.HandOff{Partition: 1, Epoch: math.MaxUint64}}),
			attackMsg(gw2Member, gw2Remote, replLog{&pb.ReplLog{Groups: []*pb.ReplGroup{{Partition: 1, Epoch: 1 << 40, FirstSeq: math.MaxUint64, Entries: entries[:2]}}}}),
			attackMsg(gw2Member, gw2Remote, forward{&pb.ForwardBatch{Partition: 1, Id: 1, Entries: entries}}),
			attackMsg(gw2Member, gw2Remote, statusReply{&pb.StatusReply{Id: 1, Partitions: make([]*pb.PartitionHolding, 100000)}}))
		// protoactor's own lookups, indexed with what the peer sent, and
		// messages it would deliver to any actor.
		good, err := proto.Marshal(attackMsg(gw2Member, gw2Remote, handOff{&pb.HandOff{Partition: 100000}}))
		require.NoError(t, err)
		link.sendBatch(t, &remote.MessageBatch{TypeNames: []string{"millstream.v1.StreamMsg", "actor.PoisonPill"}, Targets: []string{"millstream-cluster", "p/1"},
			Envelopes: []*remote.MessageEnvelope{
				{TypeId: 7, Target: 0, MessageData: good},
				{TypeId: 0, Target: 5, MessageData: good},
				{TypeId: 0, Target: 0, Sender: 9, MessageData: good},
				{TypeId: 1, Target: 0},
				{TypeId: 0, Target: 1, MessageData: good},
			}})
		_, err = remote.NewRemotingClient(link.conn).ListProcesses(context.Background(), &remote.ListProcessesRequest{Pattern: "x"})
		require.Error(t, err, "protoactor's ListProcesses panicked")
		waitRejected(t, gw1, before, map[string]uint64{"out_of_range": 5, "malformed": 3, "unexpected_type": 3})
		require.Equal(t, view, viewOf(t, gw1))
		requireUp(t, gw1)
	})

	t.Run("a job version from the future", func(t *testing.T) {
		link, err := dialLink(t, gw1Remote, pki.ClientTLS(t, &gw2Files))
		require.NoError(t, err)
		before := rejected(t, gw1)
		future := time.Now().Add(time.Hour).UnixNano()
		link.send(t, "millstream-cluster",
			attackMsg(gw2Member, gw2Remote, jobUpdate{&pb.JobUpdate{Job: forgedJob("future"), Version: future, Origin: gw2Member}}),
			attackMsg(gw2Member, gw2Remote, jobUpdate{&pb.JobUpdate{Removed: "temps", Version: math.MaxInt64, Origin: gw2Member}}))
		waitRejected(t, gw1, before, map[string]uint64{"future_version": 2})
		require.False(t, jobExists(gw1, "future"))
		require.True(t, jobExists(gw1, "temps"), "a removal from the future removed the job")
		requireUp(t, gw1)
	})

	// Still one cluster: a job deployed through gw2 reaches gw1, and
	// removed through gw1 leaves gw2.
	require.NoError(t, adminCall(http.MethodPost, "http://"+gw2.admin+"/v1/jobs", `name: after
query: SELECT deviceId INTO alarms FROM readings
inputs: [{name: readings, topic: "devices/+/messages/events"}]
outputs: [{name: alarms, log: {prefix: after}}]
`))
	require.Eventually(t, func() bool { return jobExists(gw1, "after") }, 10*time.Second, 50*time.Millisecond)
	require.NoError(t, adminCall(http.MethodDelete, "http://"+gw1.admin+"/v1/jobs/after", ""))
	require.Eventually(t, func() bool { return !jobExists(gw2, "after") }, 10*time.Second, 50*time.Millisecond)
	c.waitSettled(c.gws, 10*time.Second)
	requireUp(t, gw2)
}

// TestClusterPlainLinkSurvivesBadMessages: without TLS (loopback), a
// gateway still refuses malformed messages instead of dying: one
// HandOff{partition: 100000} was enough (index out of range on a
// goroutine), and so were protoactor's own lookups and RPCs.
func TestClusterPlainLinkSurvivesBadMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a gateway process; runs without -short")
	}
	c := newTestCluster(t, "  quorum: none")
	g := c.add()
	c.waitSettled(c.gws, 30*time.Second)
	st, err := g.status(t)
	require.NoError(t, err)
	var remoteAddr string
	for _, m := range st.Members {
		remoteAddr = m.Remote
	}
	link, err := dialLink(t, remoteAddr, nil)
	require.NoError(t, err)
	before, view := rejected(t, g), viewOf(t, g)
	link.send(t, "millstream-cluster", attackMsg("evil#1", "127.0.0.1:1", handOff{&pb.HandOff{Partition: 100000}}))
	link.sendBatch(t, &remote.MessageBatch{TypeNames: []string{"millstream.v1.StreamMsg"}, Targets: []string{"millstream-cluster"},
		Envelopes: []*remote.MessageEnvelope{{TypeId: 3, Target: 0}, {TypeId: 0, Target: 2}}})
	_, err = remote.NewRemotingClient(link.conn).GetProcessDiagnostics(context.Background(), &remote.GetProcessDiagnosticsRequest{})
	require.Error(t, err)
	waitRejected(t, g, before, map[string]uint64{"out_of_range": 1, "malformed": 2, "unexpected_type": 1})
	require.Equal(t, view, viewOf(t, g))
	requireUp(t, g)
}
