package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/millstream/millstream/actors"
	"github.com/millstream/millstream/internal/config"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// runningGateway is a gateway with its embedded broker and outputs.
type runningGateway struct {
	g        *actors.Gateway
	broker   *actors.Broker
	external []*actors.External
	outs     *actors.Outputs
	http     *http.Server
	addr     string // admin API address
}

// startGateway starts a gateway, its embedded broker and the configured jobs.
func startGateway(ctx context.Context, cfg *pb.GatewayConfig, log io.Writer, logger *slog.Logger) (*runningGateway, error) {
	config.EnsureGatewayDefaults(cfg)
	if err := config.ValidateGateway(cfg); err != nil {
		return nil, err
	}
	outs := actors.NewOutputs(nil, log)
	g := actors.New(actors.Config{Partitions: int(cfg.Partitions), Logger: logger}, outs, nil)
	rg := &runningGateway{g: g, outs: outs}
	if cfg.MqttListen != config.EmbeddedBrokerOff {
		b, err := actors.StartBroker(cfg.MqttListen, g, int(cfg.MaxPayloadBytes), logger)
		if err != nil {
			_ = g.Close(ctx)
			return nil, err
		}
		rg.broker = b
		outs.SetPublisher(b)
		g.SetPublisher(b)
	}
	if cfg.Upstream != nil {
		up, err := actors.ConnectExternal(cfg.Upstream, nil, nil, logger)
		if err != nil {
			rg.close(ctx)
			return nil, err
		}
		rg.external = append(rg.external, up)
		outs.SetPublisher(up)
	}
	if cfg.HttpListen != "" {
		ln, err := net.Listen("tcp", cfg.HttpListen)
		if err != nil {
			rg.close(ctx)
			return nil, fmt.Errorf("admin API listen %s: %w", cfg.HttpListen, err)
		}
		rg.addr = ln.Addr().String()
		rg.http = &http.Server{Handler: actors.NewAdmin(g, outs, rg.broker).Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = rg.http.Serve(ln) }()
	}
	for _, j := range cfg.Jobs {
		if err := outs.Configure(j); err != nil {
			rg.close(ctx)
			return nil, err
		}
		if err := g.Deploy(ctx, j); err != nil {
			rg.close(ctx)
			return nil, err
		}
	}
	// Subscribe to external brokers once the jobs (and so their topics) exist.
	for _, b := range cfg.Brokers {
		e, err := actors.ConnectExternal(b, g, g.Topics, logger)
		if err != nil {
			rg.close(ctx)
			return nil, err
		}
		rg.external = append(rg.external, e)
	}
	return rg, nil
}

func (rg *runningGateway) close(ctx context.Context) {
	if rg.http != nil {
		_ = rg.http.Shutdown(ctx)
	}
	for _, e := range rg.external {
		e.Close()
	}
	if rg.broker != nil {
		_ = rg.broker.Close()
	}
	_ = rg.g.Close(ctx)
	_ = rg.outs.Close()
}

const gatewayHelp = `gateway --config gateway.yaml

Runs one gateway: the embedded MQTT broker (mqtt_listen), and the jobs of
the configuration, until interrupted.`

func gatewayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gateway", stderr, gatewayHelp)
	path := fs.String("config", "", "gateway configuration (.yaml, .json, .textproto)")
	check := fs.Bool("t", false, "check the configuration and exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return fmt.Errorf("%w: --config is required", errUsage)
	}
	cfg, err := config.LoadGateway(*path)
	if err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(stdout, "%s: configuration is valid (%d jobs)\n", *path, len(cfg.Jobs))
		return nil
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	rg, err := startGateway(ctx, cfg, stdout, logger)
	if err != nil {
		return err
	}
	logger.Info("gateway started", "name", cfg.Name, "mqtt", rg.brokerAddr(), "admin", rg.addr, "jobs", len(cfg.Jobs), "partitions", cfg.Partitions)
	<-ctx.Done()
	stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rg.close(stop)
	logger.Info("gateway stopped", "events", rg.g.Stats().EventsIn)
	return nil
}

func (rg *runningGateway) brokerAddr() string {
	if rg.broker == nil {
		return ""
	}
	return rg.broker.Addr()
}
