package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"google.golang.org/protobuf/proto"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Config configures a gateway's membership. Zero fields take the defaults
// in comments.
type Config struct {
	// Name identifies the gateway in the cluster; it must be unique.
	Name string
	// Bind is the gossip address, TCP and UDP (default 127.0.0.1:7946;
	// port 0 picks a free one).
	Bind string
	// Advertise is the address others reach this gateway at (default Bind).
	Advertise string
	// Seeds are gossip addresses of gateways to join through; none: this
	// gateway starts a cluster.
	Seeds []string
	// SecretKey encrypts gossip (AES, 16, 24 or 32 bytes); empty: plain.
	SecretKey []byte
	// OldKeys are also accepted on incoming gossip, never used to send:
	// the keys being rotated in or out (see "Rotating the gossip key").
	OldKeys [][]byte
	// Meta is gossiped to the other gateways (at most 512 bytes encoded).
	Meta *pb.NodeMeta
	// Failure detection (defaults: memberlist's LAN settings, which detect
	// a dead gateway in about 6-7 s; DESIGN.md section 5).
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	GossipInterval time.Duration
	SuspicionMult  int
	// Logger (default slog.Default()); memberlist's lines come with
	// component=gossip, at the level their prefix names.
	Logger *slog.Logger
	// Admit, if set, decides from a gateway's metadata whether it may be a
	// member: an error keeps it out of this gateway's view (logged once
	// per gateway) and makes a Join through it fail with that error.
	Admit func(meta *pb.NodeMeta) error
	// StartAlone: when no seed answers, start gossip alone (SeedError says
	// why) instead of failing; the caller retries the seeds.
	StartAlone bool
	// iso: fault injection (fault.go); nil in production.
	iso *isolation
	// watch, if set, learns of members as memberlist does (the cluster
	// link's guard).
	watch memberWatcher
}

// Rotating the gossip key. Gossip is encrypted with the primary key
// (cluster.gossip_key or gossip_key_file) and accepted under it or any of
// cluster.gossip_old_keys; a gateway that holds none of a packet's key
// drops the packet. To replace key A by key B without a split, one
// rolling restart per step, each finished on every gateway before the
// next starts:
//
//  1. add B to gossip_old_keys (primary A): every gateway accepts B;
//  2. make B the primary and move A to gossip_old_keys: gateways send
//     under B, and still accept A from those not restarted yet;
//  3. remove A from gossip_old_keys.
//
// To turn encryption on in a running cluster, stop it and start every
// gateway with the key (a plain gateway and an encrypting one do not
// understand each other).

// Member is a gateway as the membership sees it.
type Member struct {
	Name string
	Addr string // gossip address
	Meta *pb.NodeMeta
}

// Membership is this gateway's view of the cluster.
type Membership struct {
	ml      *memberlist.Memberlist
	seedErr error
	meta    *metaDelegate
	changes chan struct{}
	logger  *slog.Logger
}

// Join starts gossip and joins the seeds (if any). It returns once the
// gateway has joined at least one seed, or with an error naming every seed
// that failed (with StartAlone: alone, the error in SeedError).
func Join(ctx context.Context, cfg Config) (*Membership, error) {
	if cfg.Name == "" {
		return nil, errors.New("cluster: a member name is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	meta, err := proto.Marshal(cfg.Meta)
	if err != nil {
		return nil, fmt.Errorf("cluster: encode node metadata: %w", err)
	}
	if len(meta) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("cluster: node metadata is %d bytes, at most %d", len(meta), memberlist.MetaMaxSize)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	bind := cfg.Bind
	if bind == "" {
		bind = "127.0.0.1:7946"
	}
	host, port, err := splitHostPort(bind)
	if err != nil {
		return nil, fmt.Errorf("cluster: bind %q: %w", bind, err)
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = host, port
	if cfg.Advertise != "" {
		if mc.AdvertiseAddr, mc.AdvertisePort, err = splitHostPort(cfg.Advertise); err != nil {
			return nil, fmt.Errorf("cluster: advertise %q: %w", cfg.Advertise, err)
		}
	}
	if len(cfg.SecretKey) > 0 || len(cfg.OldKeys) > 0 {
		kr, err := keyring(cfg.SecretKey, cfg.OldKeys)
		if err != nil {
			return nil, err
		}
		mc.Keyring = kr
	}
	if cfg.ProbeInterval > 0 {
		mc.ProbeInterval = cfg.ProbeInterval
	}
	if cfg.ProbeTimeout > 0 {
		mc.ProbeTimeout = cfg.ProbeTimeout
	}
	if cfg.GossipInterval > 0 {
		mc.GossipInterval = cfg.GossipInterval
	}
	if cfg.SuspicionMult > 0 {
		mc.SuspicionMult = cfg.SuspicionMult
	}
	m := &Membership{changes: make(chan struct{}, 1), logger: cfg.Logger, meta: &metaDelegate{meta: meta}}
	mc.Delegate = m.meta
	mc.Events = eventDelegate{m: m, watch: cfg.watch}
	if cfg.Admit != nil {
		g := &gatekeeper{admit: cfg.Admit, logger: cfg.Logger, refused: map[string]string{}}
		mc.Merge, mc.Alive = g, g
	}
	mc.Logger = log.New(slogWriter{cfg.Logger.With("component", "gossip")}, "", 0)
	if cfg.iso != nil {
		ft, err := newFaultTransport(cfg.iso, mc.BindAddr, mc.BindPort, mc.Logger)
		if err != nil {
			return nil, fmt.Errorf("cluster: start gossip on %s: %w", bind, err)
		}
		if mc.BindPort == 0 {
			mc.BindPort = ft.GetAutoBindPort()
			if cfg.Advertise == "" {
				mc.AdvertisePort = mc.BindPort
			}
		}
		mc.Transport = ft
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("cluster: start gossip on %s: %w", bind, err)
	}
	m.ml = ml
	if len(cfg.Seeds) > 0 {
		done := make(chan error, 1)
		go func() {
			_, err := ml.Join(cfg.Seeds)
			done <- err
		}()
		select {
		case err = <-done:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			err = fmt.Errorf("cluster: join %v: %w", cfg.Seeds, err)
			if cfg.StartAlone && ctx.Err() == nil {
				m.seedErr = err
				return m, nil
			}
			_ = ml.Shutdown()
			return nil, err
		}
	}
	return m, nil
}

// LoadGossipKeys decodes the gossip keys of a gateway's configuration:
// the primary key, base64, inline or in a file (cluster.gossip_key,
// gossip_key_file), and the old keys (gossip_old_keys, base64).
func LoadGossipKeys(inline, file string, old []string) (primary []byte, olds [][]byte, err error) {
	if file != "" {
		if inline != "" {
			return nil, nil, errors.New("cluster: gossip_key and gossip_key_file are both set; keep one")
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, nil, fmt.Errorf("cluster: gossip_key_file: %w", err)
		}
		inline = strings.TrimSpace(string(data))
	}
	if inline != "" {
		if primary, err = base64.StdEncoding.DecodeString(inline); err != nil {
			return nil, nil, fmt.Errorf("cluster: gossip key: %w", err)
		}
	}
	for i, k := range old {
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(k))
		if err != nil {
			return nil, nil, fmt.Errorf("cluster: gossip_old_keys[%d]: %w", i, err)
		}
		olds = append(olds, key)
	}
	return primary, olds, nil
}

// keyring is memberlist's keyring of the primary gossip key and the old
// ones.
func keyring(primary []byte, old [][]byte) (*memberlist.Keyring, error) {
	if len(primary) == 0 {
		return nil, errors.New("cluster: old gossip keys without a gossip key: the key encrypts, old keys are only accepted")
	}
	for i, k := range append([][]byte{primary}, old...) {
		switch len(k) {
		case 16, 24, 32:
		default:
			what := "gossip key"
			if i > 0 {
				what = fmt.Sprintf("old gossip key %d", i)
			}
			return nil, fmt.Errorf("cluster: %s is %d bytes: it must be 16, 24 or 32", what, len(k))
		}
	}
	kr, err := memberlist.NewKeyring(old, primary)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip keys: %w", err)
	}
	return kr, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return host, port, nil
}

// SeedError is why no seed answered when Join started alone (nil when one
// did, or there were none).
func (m *Membership) SeedError() error { return m.seedErr }

// Rejoin contacts gateways at addrs (gossip addresses) to merge views
// again; it returns how many answered.
func (m *Membership) Rejoin(addrs []string) (int, error) { return m.ml.Join(addrs) }

// Addr is the gossip address this gateway listens on (the port is known
// after Join when Bind asked for port 0).
func (m *Membership) Addr() string {
	n := m.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Members lists the live gateways, this one included, by name. A member
// whose metadata does not decode is listed without it (and logged).
func (m *Membership) Members() []Member {
	var out []Member
	for _, n := range m.ml.Members() {
		mem := Member{Name: n.Name, Addr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))}
		meta := &pb.NodeMeta{}
		if err := proto.Unmarshal(n.Meta, meta); err != nil {
			m.logger.Warn("member metadata does not decode", "member", n.Name, "error", err)
		} else {
			mem.Meta = meta
		}
		out = append(out, mem)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Names lists the live gateways' names, sorted.
func (m *Membership) Names() []string {
	var out []string
	for _, mem := range m.Members() {
		out = append(out, mem.Name)
	}
	return out
}

// Changes is signalled (coalesced) when a gateway joins, leaves, fails or
// changes its metadata.
func (m *Membership) Changes() <-chan struct{} { return m.changes }

// Leave tells the others this gateway is leaving (spreads in about 0.3 s)
// and stops gossip.
func (m *Membership) Leave(timeout time.Duration) error {
	err := m.ml.Leave(timeout)
	return errors.Join(err, m.ml.Shutdown())
}

// LeaveOnly tells the others this gateway is leaving but keeps gossip
// running, so the gateway still sees the others while it hands off.
func (m *Membership) LeaveOnly(timeout time.Duration) error { return m.ml.Leave(timeout) }

// Shutdown stops gossip without a goodbye: the others find out by failure
// detection (as after a crash).
func (m *Membership) Shutdown() error { return m.ml.Shutdown() }

func (m *Membership) changed() {
	select {
	case m.changes <- struct{}{}:
	default:
	}
}

// UpdateMeta gossips new metadata for this gateway.
func (m *Membership) UpdateMeta(meta *pb.NodeMeta, timeout time.Duration) error {
	data, err := proto.Marshal(meta)
	if err != nil {
		return fmt.Errorf("cluster: encode node metadata: %w", err)
	}
	if len(data) > memberlist.MetaMaxSize {
		return fmt.Errorf("cluster: node metadata is %d bytes, at most %d", len(data), memberlist.MetaMaxSize)
	}
	m.meta.mu.Lock()
	m.meta.meta = data
	m.meta.mu.Unlock()
	return m.ml.UpdateNode(timeout)
}

type metaDelegate struct {
	mu   sync.Mutex
	meta []byte
}

func (d *metaDelegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.meta[:min(len(d.meta), limit)]
}
func (*metaDelegate) NotifyMsg([]byte)                       {}
func (*metaDelegate) GetBroadcasts(int, int) [][]byte        { return nil }
func (*metaDelegate) LocalState(bool) []byte                 { return nil }
func (*metaDelegate) MergeRemoteState(buf []byte, join bool) {}

type eventDelegate struct {
	m     *Membership
	watch memberWatcher
}

func (e eventDelegate) NotifyJoin(n *memberlist.Node) {
	e.up(n)
	e.m.changed()
}

func (e eventDelegate) NotifyLeave(n *memberlist.Node) {
	if e.watch != nil {
		e.watch.memberDown(n.Name)
	}
	e.m.changed()
}

func (e eventDelegate) NotifyUpdate(n *memberlist.Node) {
	e.up(n)
	e.m.changed()
}

func (e eventDelegate) up(n *memberlist.Node) {
	if e.watch == nil {
		return
	}
	meta := &pb.NodeMeta{}
	if proto.Unmarshal(n.Meta, meta) != nil {
		meta = nil // Members logs it
	}
	e.watch.memberUp(n.Name, meta)
}

// slogWriter turns memberlist's log lines ("[WARN] memberlist: ...")
// into records of the level their prefix names, without the prefix.
type slogWriter struct{ l *slog.Logger }

// memberlistLevels are memberlist's prefixes; a line without one (none
// are known) is debug.
var memberlistLevels = []struct {
	prefix string
	level  slog.Level
}{{"[ERR]", slog.LevelError}, {"[ERROR]", slog.LevelError}, {"[WARN]", slog.LevelWarn}, {"[INFO]", slog.LevelInfo}, {"[DEBUG]", slog.LevelDebug}}

func (w slogWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	level := slog.LevelDebug
	for _, l := range memberlistLevels {
		if rest, ok := strings.CutPrefix(line, l.prefix); ok {
			line, level = strings.TrimSpace(rest), l.level
			break
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	w.l.Log(context.Background(), level, line)
	return len(p), nil
}

var _ io.Writer = slogWriter{}

// gatekeeper applies Config.Admit to gateways joining through this one
// (memberlist's merge) and to those it hears of by gossip (alive).
type gatekeeper struct {
	admit   func(*pb.NodeMeta) error
	logger  *slog.Logger
	mu      sync.Mutex
	refused map[string]string // gateway -> last reason logged
}

func (g *gatekeeper) check(n *memberlist.Node) error {
	meta := &pb.NodeMeta{}
	if err := proto.Unmarshal(n.Meta, meta); err != nil {
		return nil // listed without metadata (Members logs it)
	}
	err := g.admit(meta)
	if err != nil {
		g.mu.Lock()
		if g.refused[n.Name] != err.Error() {
			g.refused[n.Name] = err.Error()
			g.logger.Error("gateway refused as a member of the cluster", "member", n.Name, "error", err)
		}
		g.mu.Unlock()
	}
	return err
}

func (g *gatekeeper) NotifyAlive(n *memberlist.Node) error { return g.check(n) }

func (g *gatekeeper) NotifyMerge(peers []*memberlist.Node) error {
	for _, n := range peers {
		if err := g.check(n); err != nil {
			return fmt.Errorf("gateway %s: %w", n.Name, err)
		}
	}
	return nil
}
