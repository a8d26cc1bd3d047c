package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/millstream/millstream/internal/certs"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// The cluster link: protoactor remote over gRPC between gateways.
//
// With TLS (NodeConfig.TLS) both ends present a gateway certificate of
// the cluster CA (internal/certs: common name and a DNS name are the
// gateway's name, server and client authentication) and check the
// other's: the server requires one from every client, the dialer checks
// the server's and that it names the member that advertises the address
// dialed. Host names are not checked: a gateway is who its certificate
// names, wherever it is reached.
//
// protoactor hands an actor no transport identity, so the link is guarded
// below it: a gRPC stream interceptor sees every batch of messages the
// peer sends before protoactor decodes it. Each envelope must be a
// StreamMsg or StreamAck for one of the two cluster actors, within the
// size the protocol sends, and (with TLS) claim as its sender (field 1,
// read with protowire without decoding the rest: a forwarded batch is
// decoded once, by protoactor) a live member of the gateway the peer's
// certificate names. Anything else is dropped and counted; the stream
// stays up, so a peer's good messages keep flowing. The actors then check
// every field of what got through (validate.go).

// LinkTLS are the PEM files of the cluster link's mutual TLS.
type LinkTLS struct {
	// CertFile and KeyFile: this gateway's certificate (chain) and key;
	// the certificate must name the gateway.
	CertFile, KeyFile string
	// CAFile: the cluster CA; every gateway's certificate must verify
	// against it, this one's too.
	CAFile string
}

const (
	// msgTargetBytes: senders split forwarded batches and replication so
	// that one stream message carries about this much (a single larger
	// event goes alone).
	msgTargetBytes = 1 << 20
	// DefaultMaxMessageBytes is the default of NodeConfig.MaxMessageBytes:
	// room for a split forwarded batch or replication message, a job
	// update (the admin API takes at most 4 MiB) and a safe checkpoint.
	DefaultMaxMessageBytes = 16 << 20
	// linkWriterBatch: stream messages per gRPC message (protoactor's
	// endpoint writer batch). It bounds a gRPC message to linkWriterBatch
	// stream messages, so the receive limit can be that many of the
	// largest (grpcLimit): with protoactor's default of 1000, a catch-up
	// of 1 MiB messages made gRPC messages of up to 1000 MiB. Every
	// stream message already carries many events, so small batches cost
	// little.
	linkWriterBatch = 4
)

// grpcLimit is the largest gRPC message of the link for stream messages
// of at most maxMsg bytes.
func grpcLimit(maxMsg int) int { return linkWriterBatch*maxMsg + 64<<10 }

const (
	streamMsgType = "millstream.v1.StreamMsg"
	streamAckType = "millstream.v1.StreamAck"
	// receiveMethod is the one RPC gateways use: protoactor's stream.
	receiveMethod = "/remote.Remoting/Receive"
)

// memberWatcher learns the live members from gossip events as they
// happen (Config.watch): the guard checks senders against memberlist's
// own view, not the node's, which lags by up to a loop round.
type memberWatcher interface {
	memberUp(name string, meta *pb.NodeMeta)
	memberDown(name string)
}

// linkGuard checks the peers and messages of the cluster link.
type linkGuard struct {
	tls    bool
	rej    *rejections
	maxMsg int

	mu      sync.RWMutex
	members map[string]string // live member name -> remote address
}

func newLinkGuard(tlsOn bool, rej *rejections, maxMsg int) *linkGuard {
	return &linkGuard{tls: tlsOn, rej: rej, maxMsg: maxMsg, members: map[string]string{}}
}

func (g *linkGuard) memberUp(name string, meta *pb.NodeMeta) {
	g.mu.Lock()
	g.members[name] = meta.GetRemoteAddr()
	g.mu.Unlock()
}

func (g *linkGuard) memberDown(name string) {
	g.mu.Lock()
	delete(g.members, name)
	g.mu.Unlock()
}

func (g *linkGuard) isMember(name string) bool {
	g.mu.RLock()
	_, ok := g.members[name]
	g.mu.RUnlock()
	return ok
}

// checkServer checks the gateway a dialed server's certificate names: the
// member that advertises the address dialed, or, for an address no
// member advertises (acks go to the address a message gave), a live
// member.
func (g *linkGuard) checkServer(addr, gateway string) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	advertised, named := false, false
	for name, a := range g.members {
		if a == addr {
			advertised = true
			if baseOf(name) == gateway {
				return nil
			}
		}
		named = named || baseOf(name) == gateway
	}
	switch {
	case advertised:
		return reject(rejectIdentity, "the server at %s presents gateway %q, not the member that advertises the address", addr, gateway)
	case !named:
		return reject(rejectNotMember, "the server at %s presents gateway %q, not a member", addr, gateway)
	}
	return nil
}

// loadLinkTLS reads the link's certificates: the server's and the
// dialer's TLS configurations. The gateway's own certificate must be a
// gateway certificate of the CA naming it.
func loadLinkTLS(c *LinkTLS, gateway string, rej *rejections) (server, client *tls.Config, err error) {
	if c.CertFile == "" || c.KeyFile == "" || c.CAFile == "" {
		return nil, nil, errors.New("cluster: tls needs cert_file, key_file and ca_file")
	}
	roots, err := certs.LoadPool(c.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: tls ca_file: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: tls cert_file/key_file: %w", err)
	}
	chain := make([]*x509.Certificate, 0, len(pair.Certificate))
	for _, der := range pair.Certificate {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("cluster: tls cert_file %s: %w", c.CertFile, err)
		}
		chain = append(chain, cert)
	}
	name, err := verifyGatewayCert(chain, roots)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: tls cert_file %s against ca_file %s: %w", c.CertFile, c.CAFile, err)
	}
	if name != gateway {
		return nil, nil, fmt.Errorf("cluster: tls cert_file %s names gateway %q; this gateway is %q", c.CertFile, name, gateway)
	}
	verify := func(cs tls.ConnectionState) error {
		_, err := verifyGatewayCert(cs.PeerCertificates, roots)
		if err != nil {
			rej.refuse(err)
		}
		return err
	}
	server = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		// The chain is verified by verify (VerifyConnection), which also
		// requires a gateway certificate: the CA signs admin and device
		// certificates too, and a device named like a gateway must not
		// pass for it.
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: verify,
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		// Not skipped: verify checks the chain against the CA; only the
		// host name check is left out (a gateway is who its certificate
		// names; linkCreds checks that against the member dialed).
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection:   verify,
	}
	return server, client, nil
}

// verifyGatewayCert verifies a peer's chain against the cluster CA and
// returns the gateway it names: the common name, which must also be a DNS
// name, in a certificate for both server and client authentication (as
// internal/certs issues gateway certificates).
func verifyGatewayCert(chain []*x509.Certificate, roots *x509.CertPool) (string, error) {
	if len(chain) == 0 {
		return "", reject(rejectIdentity, "no certificate")
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "", reject(rejectIdentity, "certificate %q: %v", leaf.Subject.CommonName, err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return "", reject(rejectIdentity, "certificate %q is not a gateway certificate: %v", leaf.Subject.CommonName, err)
	}
	name := leaf.Subject.CommonName
	if err := checkGatewayName(name); err != nil {
		return "", reject(rejectIdentity, "certificate: %v", err)
	}
	if !slices.Contains(leaf.DNSNames, name) {
		return "", reject(rejectIdentity, "certificate %q is not a gateway certificate (its name is not a DNS name)", name)
	}
	return name, nil
}

// gatewayOf is the gateway a verified TLS peer's certificate names.
func gatewayOf(ai credentials.AuthInfo) (string, error) {
	ti, ok := ai.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return "", reject(rejectIdentity, "no TLS peer certificate")
	}
	// verifyGatewayCert checked it during the handshake.
	return ti.State.PeerCertificates[0].Subject.CommonName, nil
}

// linkCreds are the dialer's TLS credentials: after the handshake the
// server must name the member dialed (grpc hands the dialer the address
// as the authority).
type linkCreds struct {
	credentials.TransportCredentials
	g *linkGuard
}

func (c *linkCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		return nil, nil, err
	}
	gw, err := gatewayOf(ai)
	if err == nil {
		err = c.g.checkServer(authority, gw)
	}
	if err != nil {
		conn.Close()
		c.g.rej.refuse(err, "peer", authority)
		return nil, nil, err
	}
	return conn, ai, nil
}

func (c *linkCreds) Clone() credentials.TransportCredentials {
	return &linkCreds{TransportCredentials: c.TransportCredentials.Clone(), g: c.g}
}

// unary refuses every unary RPC: gateways use none, and protoactor's
// (ListProcesses, GetProcessDiagnostics) panic.
func (g *linkGuard) unary(_ context.Context, _ any, info *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
	g.rej.refuse(reject(rejectType, "RPC %s", info.FullMethod))
	return nil, status.Error(codes.Unimplemented, "not served")
}

// stream guards protoactor's message stream; it recovers a panic of the
// handler (protoactor indexes its lookup tables with what the peer sent),
// which would otherwise end the process.
func (g *linkGuard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	if info.FullMethod != receiveMethod {
		g.rej.refuse(reject(rejectType, "RPC %s", info.FullMethod))
		return status.Error(codes.Unimplemented, "not served")
	}
	var from net.Addr
	gw := ""
	if p, ok := peer.FromContext(ss.Context()); ok {
		from = p.Addr
		if g.tls {
			if gw, err = gatewayOf(p.AuthInfo); err != nil {
				g.rej.refuse(err, "peer", from)
				return status.Error(codes.Unauthenticated, "no gateway certificate")
			}
		}
	} else if g.tls {
		return status.Error(codes.Unauthenticated, "no peer")
	}
	defer func() {
		if v := recover(); v != nil {
			g.rej.panicked("cluster link stream", v)
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	return handler(srv, &guardedStream{ServerStream: ss, g: g, gateway: gw, addr: from})
}

// guardedStream filters what protoactor reads from a peer.
type guardedStream struct {
	grpc.ServerStream
	g       *linkGuard
	gateway string // the peer's certificate's gateway ("" without TLS)
	addr    net.Addr
}

func (s *guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if rm, ok := m.(*remote.RemoteMessage); ok {
		if b := rm.GetMessageBatch(); b != nil {
			s.g.filter(b, s.gateway, s.addr)
		}
	}
	return nil
}

// filter drops the envelopes of a batch that fail checkEnvelope.
func (g *linkGuard) filter(b *remote.MessageBatch, gateway string, addr net.Addr) {
	keep := b.Envelopes[:0]
	for _, e := range b.Envelopes {
		if err := g.checkEnvelope(b, e, gateway); err != nil {
			g.rej.refuse(err, "peer", addr, "peer_gateway", gateway)
			continue
		}
		keep = append(keep, e)
	}
	clear(b.Envelopes[len(keep):])
	b.Envelopes = keep
}

// checkEnvelope checks one message of a batch before protoactor decodes
// and delivers it; gateway is the authenticated peer ("" without TLS).
func (g *linkGuard) checkEnvelope(b *remote.MessageBatch, e *remote.MessageEnvelope, gateway string) error {
	if e == nil {
		return reject(rejectMalformed, "empty envelope")
	}
	if e.TypeId < 0 || int(e.TypeId) >= len(b.TypeNames) || e.Target < 0 || int(e.Target) >= len(b.Targets) ||
		e.Sender < 0 || int(e.Sender) > len(b.Senders) || e.Sender > 0 && b.Senders[e.Sender-1] == nil {
		return reject(rejectMalformed, "envelope indexes past its batch")
	}
	if t := b.TypeNames[e.TypeId]; e.SerializerId != 0 || t != streamMsgType && t != streamAckType {
		return reject(rejectType, "message type %.64q (serializer %d)", t, e.SerializerId)
	}
	if t := b.Targets[e.Target]; t != nodeActor && t != heartbeatActor {
		return reject(rejectType, "target actor %.64q", t)
	}
	if len(e.MessageData) > g.maxMsg {
		return reject(rejectOversized, "message of %d bytes, at most %d", len(e.MessageData), g.maxMsg)
	}
	if !g.tls {
		return nil
	}
	from, err := senderOf(e.MessageData)
	if err != nil {
		return err
	}
	if baseOf(from) != gateway {
		return reject(rejectIdentity, "message claims sender %.64q; the peer's certificate names gateway %q", from, gateway)
	}
	if !g.isMember(from) {
		return reject(rejectNotMember, "sender %.64q is not a live member", from)
	}
	return nil
}

// senderOf reads the sender (field 1, "from", of StreamMsg and StreamAck)
// of an encoded message without decoding the rest. The last occurrence
// counts, as for the decoder; a field 1 of another wire type is an
// unknown field to the decoder, and ignored here too.
func senderOf(data []byte) (string, error) {
	from, found := "", false
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return "", reject(rejectMalformed, "message does not decode: %v", protowire.ParseError(n))
		}
		data = data[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(data)
			if n < 0 {
				return "", reject(rejectMalformed, "message does not decode: %v", protowire.ParseError(n))
			}
			from, found = string(v), true
			data = data[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, data)
		if n < 0 {
			return "", reject(rejectMalformed, "message does not decode: %v", protowire.ParseError(n))
		}
		data = data[n:]
	}
	if !found {
		return "", reject(rejectMalformed, "message without a sender")
	}
	return from, nil
}

// checkSizeOut reports whether a message this gateway is about to send
// fits the link (the receivers refuse larger ones): checkpoints are the
// one kind not split to size.
func (n *Node) checkSizeOut(what string, m proto.Message) bool {
	return n.fitsOut(what, proto.Size(m))
}

// fitsOut is checkSizeOut for a message already sized.
func (n *Node) fitsOut(what string, size int) bool {
	if size > n.maxMsg-1024 {
		if last := n.oversizeLogAt.Load(); time.Since(time.Unix(0, last)) < 10*time.Second || !n.oversizeLogAt.CompareAndSwap(last, time.Now().UnixNano()) {
			return false
		}
		n.log.Error("message too large for the cluster link; not sent (raise the gateway's max_payload_bytes or split the job's state)",
			"what", what, "bytes", size, "max", n.maxMsg)
		return false
	}
	return true
}
