// Package millstream runs a Millstream gateway inside a Go program. It is
// the one way a gateway starts: the millstream command's gateway and demo
// subcommands call Start too. Start fills in every default of the
// configuration (internal/config/defaults.go, the one place they are
// written), validates it, opens the store, starts the embedded broker,
// the admin API and the cluster node where configured, deploys the jobs
// and recovers every partition before it takes input.
//
//	cfg, err := millstream.LoadConfig("gateway.yaml")
//	...
//	gw, err := millstream.Start(ctx, millstream.Options{Config: cfg, Logger: slog.Default()})
//	...
//	defer gw.Close(context.Background())
package millstream

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/millstream/millstream/actors"
	"github.com/millstream/millstream/actors/admin"
	"github.com/millstream/millstream/cluster"
	"github.com/millstream/millstream/internal/config"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// Options are what Start needs; only Config is required.
type Options struct {
	// Config is the gateway's configuration, as LoadConfig reads it or
	// built in code. Start (or Validate) fills in its defaults in place.
	Config *pb.GatewayConfig
	// Logger receives every part's logs (runtime, broker, cluster,
	// Pebble); nil: slog.Default().
	Logger *slog.Logger
	// Output is where the jobs' "log" outputs write rows; nil: discarded.
	Output io.Writer
	// ResetDamaged starts partitions whose checkpoint or log cannot be
	// read without it (their state is lost; logged and counted) instead
	// of refusing to start.
	ResetDamaged bool
	// Version is what the gateway reports to its cluster; "" is "dev".
	Version string
}

// ErrNoConfig: Options without a Config.
var ErrNoConfig = errors.New("millstream: Options.Config is required")

// Validate fills in the configuration's defaults and checks it: every
// error names the field (and, for a file LoadConfig read, its line and
// column). Start calls it.
func (o *Options) Validate() error {
	if o.Config == nil {
		return ErrNoConfig
	}
	config.EnsureGatewayDefaults(o.Config)
	return config.ValidateGateway(o.Config)
}

// LoadConfig reads a gateway configuration file (.yaml, .json or
// .textproto), with its defaults filled in and checked; errors carry the
// line and column.
func LoadConfig(path string) (*pb.GatewayConfig, error) { return config.LoadGateway(path) }

// Start starts a gateway as o says and returns once it takes input: the
// store is open, the jobs are deployed and every partition recovered. On
// error everything it started is stopped again.
func Start(ctx context.Context, o Options) (*Gateway, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	cfg, logger, log, resetDamaged := o.Config, o.Logger, o.Output, o.ResetDamaged
	if logger == nil {
		logger = slog.Default()
	}
	if log == nil {
		log = io.Discard
	}
	outs := actors.NewOutputs(nil, log)
	roots, err := dataRoots(cfg)
	if err != nil {
		return nil, err
	}
	outs.SetDataRoots(roots)
	gcfg := actors.Config{Partitions: int(cfg.Partitions), Name: cfg.Name, Logger: logger, SequenceField: cfg.SequenceField, ResetDamaged: resetDamaged,
		Clustered: cfg.Cluster != nil, MaxPayloadBytes: int(cfg.MaxPayloadBytes), DataRoots: roots}
	sec, adminTLS, err := adminSecurity(cfg)
	if err != nil {
		return nil, err
	}
	rg := &Gateway{outs: outs}
	if d := cfg.Durability; d == nil || !d.Disabled {
		dir := filepath.Join(cfg.DataDir, "state")
		st, err := state.Open(dir, state.Config{Partitions: int(cfg.Partitions), NoSync: d.GetNoSync(), Logger: logger})
		if err != nil {
			if errors.Is(err, state.ErrCorrupt) {
				return nil, fmt.Errorf("%w\n"+damagedHelp, err, dir, dir, dir, dir, dir)
			}
			return nil, err
		}
		rg.stateDir = dir
		rg.store = st
		// Before anything reads the job catalog (the cluster node does
		// when it starts): a store from before versions has its jobs
		// moved into it.
		if moved, err := st.MigrateJobCatalog(cfg.Name); err != nil {
			st.Close()
			return nil, err
		} else if moved > 0 {
			logger.Info("jobs of the catalog kept before version counters moved into the job catalog", "jobs", moved)
		}
		outs.EnableOutbox(st, logger)
		gcfg.Store = st
		if d != nil {
			gcfg.SyncInterval = d.SyncInterval.AsDuration()
			gcfg.CheckpointInterval = d.CheckpointInterval.AsDuration()
			gcfg.MaxStoreBytes = d.MaxStoreBytes
			if d.MinFreeBytes != nil {
				// An explicit 0 turns the floor off... as far as the guard
				// goes: Pebble still ends the process on a full disk.
				gcfg.MinFreeBytes = max(d.GetMinFreeBytes(), 1)
			}
		}
		if d.GetNoSync() {
			logger.Warn("durability.no_sync is on: acknowledged events can be lost in a crash or power loss")
		}
	}
	var deadStore *state.DeadLetterStore
	if rg.store != nil {
		var err error
		deadStore, err = rg.store.OpenDeadLetters(state.DeadLetterLimits{MaxEntries: int(cfg.DeadLetters.GetMaxEntries()), MaxBytes: int64(cfg.DeadLetters.GetMaxBytes())})
		if err != nil {
			rg.Close(ctx)
			return nil, err
		}
	}
	rg.dead = actors.NewDeadLetters(deadStore, cfg.DeadLetters.GetTopic(), logger)
	g := actors.New(gcfg, outs, rg.dead)
	rg.g = g
	if cfg.MqttListen != config.EmbeddedBrokerOff {
		opts := actors.BrokerOptionsFrom(cfg)
		opts.Logger = logger
		b, err := actors.StartBroker(g, opts)
		if err != nil {
			rg.Close(ctx)
			return nil, err
		}
		rg.broker = b
		outs.SetPublisher(b)
		g.SetPublisher(b)
		rg.dead.SetPublisher(b)
	}
	if cfg.Upstream != nil {
		up, err := actors.ConnectExternal(cfg.Upstream, nil, nil, logger)
		if err != nil {
			rg.Close(ctx)
			return nil, err
		}
		rg.external = append(rg.external, up)
		outs.SetPublisher(up)
		rg.dead.SetPublisher(up)
	}
	var ln net.Listener
	if cfg.HttpListen != "" {
		var err error
		if ln, err = net.Listen("tcp", cfg.HttpListen); err != nil {
			rg.Close(ctx)
			return nil, fmt.Errorf("admin API listen %s: %w", cfg.HttpListen, err)
		}
		rg.addr = ln.Addr().String()
	}
	if c := cfg.Cluster; c != nil {
		node, err := startNode(ctx, cfg, g, outs, rg.broker != nil && cfg.Upstream == nil, rg.addr, o.Version, logger)
		if err != nil {
			if ln != nil {
				ln.Close()
			}
			rg.Close(ctx)
			return nil, err
		}
		rg.node = node
	}
	if ln != nil {
		api := admin.New(g, outs, rg.broker)
		api.SetDeadLetters(rg.dead)
		if node := rg.node; node != nil {
			api.SetCluster(node)
			if err := api.Register(node); err != nil {
				logger.Error("cluster metrics not registered", "error", err)
			}
			api.AddReadiness("cluster", func() string {
				if node.Fenced() {
					return "fenced: this gateway does not hear from a majority of its cluster (or still waits for a seed), so it serves no partition"
				}
				return ""
			})
		}
		// Input brokers are connected after the jobs are back; the check
		// reads the list when asked.
		api.AddReadiness("input", func() string {
			var down, unsubscribed []string
			connected := rg.inputs()
			for _, e := range connected {
				switch {
				case !e.Connected():
					down = append(down, e.URL())
				case !e.Subscribed():
					unsubscribed = append(unsubscribed, e.URL())
				}
			}
			for _, b := range cfg.Brokers[len(connected):] {
				down = append(down, b.Url)
			}
			if len(down) > 0 {
				return "input broker unreachable: " + strings.Join(down, ", ")
			}
			if len(unsubscribed) > 0 {
				// Messages the broker takes before the subscription exists
				// reach no session of this gateway.
				return "not subscribed on the input broker yet: " + strings.Join(unsubscribed, ", ")
			}
			return ""
		})
		if err := api.Secure(sec); err != nil {
			ln.Close()
			rg.Close(ctx)
			return nil, err
		}
		rg.http = &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
			TLSConfig: adminTLS, ErrorLog: api.ServerErrorLog()}
		// Shutdown waits for handlers to return; the console's live
		// streams return only when told.
		rg.http.RegisterOnShutdown(api.CloseStreams)
		rg.adminURL = "http://" + rg.addr
		if adminTLS != nil {
			rg.adminURL = "https://" + rg.addr
		}
		if adminTLS != nil {
			go func() { _ = rg.http.ServeTLS(ln, "", "") }()
		} else {
			go func() { _ = rg.http.Serve(ln) }()
		}
	}
	// Jobs deployed through the admin API before a restart (the job
	// catalog, state/jobs.go), then the configured ones (which win over a
	// catalog job of the same name).
	if rg.store != nil {
		jobs, err := rg.store.CatalogJobs()
		if err != nil {
			rg.Close(ctx)
			return nil, err
		}
		for _, j := range jobs {
			if i := slices.IndexFunc(cfg.Jobs, func(c *pb.Job) bool { return c.Name == j.Name }); i >= 0 {
				if !proto.Equal(cfg.Jobs[i], j) && cfg.Cluster == nil {
					// Said plainly: the job's state from the API's version
					// is dropped next (its partitions log that it does not
					// match), which reads like damage otherwise.
					logger.Warn("job deployed through the admin API is replaced by the configuration file's job of the same name",
						"job", j.Name)
				}
				continue
			}
			if err := outs.Configure(j); err != nil {
				rg.Close(ctx)
				return nil, err
			}
			if err := g.Deploy(ctx, j); err != nil {
				rg.Close(ctx)
				return nil, fmt.Errorf("job %q from the store's catalog: %w", j.Name, err)
			}
		}
	}
	for _, j := range cfg.Jobs {
		if err := outs.Configure(j); err != nil {
			rg.Close(ctx)
			return nil, err
		}
		if err := g.Deploy(ctx, j); err != nil {
			rg.Close(ctx)
			return nil, err
		}
	}
	if rg.node != nil {
		// Jobs deployed or removed through the admin API of any gateway
		// win over the file and the catalog (C12).
		rg.node.SyncJobs(ctx)
	}
	if err := g.Recover(ctx); err != nil {
		rg.Close(ctx)
		if errors.Is(err, state.ErrCorrupt) {
			d := rg.stateDir
			return nil, fmt.Errorf("%w\n"+damagedHelp, err, d, d, d, d, d)
		}
		return nil, err
	}
	if rg.node != nil {
		// The jobs are deployed: partitions may be served now.
		rg.node.StartServing()
	}
	// Subscribe to external brokers once the jobs (and so their topics) exist.
	for i, b := range cfg.Brokers {
		if cfg.Cluster != nil && b.SharedGroup == "" {
			// The gateways of a cluster split the input (README, "Cluster").
			b.SharedGroup = "millstream"
		}
		if b.ClientId == "" {
			// A stable id gives the gateway a persistent session on the
			// broker: what it had not acknowledged when it stopped is
			// delivered again when it is back.
			b.ClientId = fmt.Sprintf("millstream-%s-%d", cfg.Name, i)
		}
		e, err := actors.ConnectExternal(b, g, g.Topics, logger)
		if err != nil {
			rg.Close(ctx)
			return nil, err
		}
		rg.external = append(rg.external, e)
		rg.extMu.Lock()
		rg.inputBrokers = append(rg.inputBrokers, e)
		rg.extMu.Unlock()
	}
	return rg, nil
}

// Runtime is the gateway's runtime: partitions, jobs, ingest.
func (rg *Gateway) Runtime() *actors.Gateway { return rg.g }

// Outputs are the gateway's outputs and their drainers.
func (rg *Gateway) Outputs() *actors.Outputs { return rg.outs }

// Node is the gateway's cluster node; nil when standalone.
func (rg *Gateway) Node() *cluster.Node { return rg.node }

// AdminAddr is the admin API's address (host:port; empty without it).
func (rg *Gateway) AdminAddr() string { return rg.addr }

// AdminURL is the admin API's base URL, http or https.
func (rg *Gateway) AdminURL() string { return rg.adminURL }

// Drain hands every partition of a clustered gateway off to the others
// (a planned stop); a standalone gateway has nothing to hand off.
func (rg *Gateway) Drain(ctx context.Context) error {
	if rg.node == nil {
		return nil
	}
	return rg.node.Drain(ctx)
}

// Gateway is a running gateway: its runtime, embedded broker, outputs,
// store, admin API and, in a cluster, its node.
type Gateway struct {
	g        *actors.Gateway
	broker   *actors.Broker
	external []*actors.External
	// inputBrokers: the external brokers read from (not upstream), for
	// /readyz, which may ask while they are being connected.
	extMu        sync.Mutex
	inputBrokers []*actors.External
	outs         *actors.Outputs
	dead         *actors.DeadLetters
	store        *state.Store // nil with durability off
	stateDir     string
	http         *http.Server
	addr         string        // admin API address
	adminURL     string        // http(s)://addr, set before the server starts
	node         *cluster.Node // nil: standalone
}

// damagedHelp says how to recover from damaged state (README, "Damaged state").
const damagedHelp = `the gateway's state under %s is damaged. To recover:
  1. Keep a copy: cp -a %s %s.damaged
  2. Start with --reset-damaged: partitions whose checkpoint or log cannot be
     read start without it; their open windows and unreplayed events are
     lost, and each is logged and counted (millstream_state_events_total{kind="damaged_reset"}).
  3. If the store cannot be opened at all, move it aside (mv %s %s.damaged)
     and start again: every partition starts empty and undelivered rows are lost.
See README, "Damaged state"`

// inputs returns the external brokers the gateway reads from.
func (rg *Gateway) inputs() []*actors.External {
	rg.extMu.Lock()
	defer rg.extMu.Unlock()
	return slices.Clone(rg.inputBrokers)
}

// Close stops the gateway: the admin API, input, the broker, the runtime
// (its last commits and checkpoints), the cluster node, the outputs and
// the store, in that order. It does not hand partitions off first: call
// Drain for a planned stop of a clustered gateway.
func (rg *Gateway) Close(ctx context.Context) {
	if rg.http != nil {
		_ = rg.http.Shutdown(ctx)
	}
	if rg.node != nil {
		// Events still being forwarded are not acknowledged: their
		// publishers send them again, to another gateway.
		rg.node.AbortForwards()
	}
	for _, e := range rg.external {
		e.Close()
	}
	if rg.broker != nil {
		_ = rg.broker.Close()
	}
	if rg.g != nil {
		_ = rg.g.Close(ctx)
	}
	if rg.node != nil {
		// After the gateway: its last commits wait for the replicas.
		_ = rg.node.Close()
	}
	_ = rg.outs.Close()
	if rg.store != nil {
		_ = rg.store.Close()
	}
}

// dataRoots are the directories jobs' files must lie under: data_roots,
// or data_dir. The files the configuration's own jobs name are allowed
// too, exactly: whoever wrote them could as well have listed their
// directories, and a job given to the gateway on its command line keeps
// working. Jobs deployed through the admin API get nothing more.
func dataRoots(cfg *pb.GatewayConfig) (*actors.DataRoots, error) {
	dirs := cfg.DataRoots
	if len(dirs) == 0 {
		dirs = []string{cfg.DataDir}
	}
	var files []string
	for _, j := range cfg.Jobs {
		for _, in := range j.Inputs {
			if in.ReferenceFile != "" {
				files = append(files, in.ReferenceFile)
			}
		}
		for _, o := range j.Outputs {
			if f := o.GetFile(); f != nil {
				files = append(files, f.Path)
			}
			for _, v := range o.GetHttp().GetHeaders() {
				if p, ok := strings.CutPrefix(v, "file:"); ok {
					files = append(files, p)
				}
			}
		}
	}
	return actors.NewDataRoots(dirs, files)
}

// adminSecurity is the admin API's security from cfg.admin.
func adminSecurity(cfg *pb.GatewayConfig) (admin.Security, *tls.Config, error) {
	a := cfg.Admin
	sec := admin.Security{TokensFile: a.GetTokensFile(), Origins: a.GetAllowedOrigins(), Pprof: a.GetPprof(),
		Hosts: []string{cfg.Name}}
	if h, _, err := net.SplitHostPort(cfg.HttpListen); err == nil && h != "" {
		sec.Hosts = append(sec.Hosts, h)
	}
	if h, err := os.Hostname(); err == nil {
		short, _, _ := strings.Cut(h, ".")
		sec.Hosts = append(sec.Hosts, h, short)
	}
	tc, err := admin.ServerTLS(a)
	if err != nil {
		return sec, nil, err
	}
	if tc != nil {
		sec.ClientCerts = tc.ClientCAs != nil
		// The names in the certificate are names clients reach it by.
		if leaf, err := x509.ParseCertificate(tc.Certificates[0].Certificate[0]); err == nil {
			sec.Hosts = append(sec.Hosts, leaf.DNSNames...)
		}
	}
	// Off loopback without TLS and authentication: refused by
	// config.ValidateGateway unless insecure (config.Exposures).
	return sec, tc, nil
}

// startNode joins the cluster of cfg.Cluster. With embedded set (MQTT
// outputs publish on the gateway's embedded broker), cluster.relay_outputs
// makes those outputs cluster-wide: rows go to the other gateways' brokers
// too, and theirs come to this one's (README, "Cluster-wide outputs").
// With an upstream broker every subscriber there sees every row already.
func startNode(ctx context.Context, cfg *pb.GatewayConfig, g *actors.Gateway, outs *actors.Outputs, embedded bool, httpAddr, version string, logger *slog.Logger) (*cluster.Node, error) {
	c := cfg.Cluster
	ncfg := cluster.NodeConfig{
		Gateway: cfg.Name, RemoteAddr: c.RemoteListen, HTTPAddr: httpAddr, Version: cmp.Or(version, "dev"),
		Replicas: int(c.Replicas), Quorum: c.Quorum, MinorityInput: c.MinorityInput, Lease: c.Lease.AsDuration(), HandOffWait: c.HandOffWait.AsDuration(),
		OnJob: outs.Configure, Logger: logger, DeferServing: true,
		Membership: cluster.Config{Bind: c.GossipListen, Advertise: c.GossipAdvertise, Seeds: c.Seeds,
			ProbeInterval: c.ProbeInterval.AsDuration(), ProbeTimeout: c.ProbeTimeout.AsDuration(),
			GossipInterval: c.GossipInterval.AsDuration(), SuspicionMult: int(c.SuspicionMult)},
	}
	if ncfg.RemoteAddr == "" {
		ncfg.RemoteAddr = "127.0.0.1:7947"
	}
	relay := embedded && c.GetRelayOutputs()
	if relay {
		ncfg.Relay, ncfg.RelayQueueBytes = outs, int64(c.RelayQueueBytes)
	}
	if t := c.Tls; t != nil {
		ncfg.TLS = &cluster.LinkTLS{CertFile: t.CertFile, KeyFile: t.KeyFile, CAFile: t.CaFile}
	}
	// The largest event the gateway takes must fit one message between
	// gateways (forwarded alone).
	ncfg.MaxMessageBytes = max(cluster.DefaultMaxMessageBytes, int(cfg.MaxPayloadBytes)+1<<20)
	var err error
	if ncfg.Membership.SecretKey, ncfg.Membership.OldKeys, err = cluster.LoadGossipKeys(c.GossipKey, c.GossipKeyFile, c.GossipOldKeys); err != nil {
		return nil, err
	}
	node, err := cluster.Start(ctx, ncfg, g)
	if err == nil && relay {
		outs.SetRelay(node)
	}
	return node, err
}

// BrokerAddr is the embedded MQTT broker's address (empty without it).
func (rg *Gateway) BrokerAddr() string {
	if rg.broker == nil {
		return ""
	}
	return rg.broker.Addr()
}
