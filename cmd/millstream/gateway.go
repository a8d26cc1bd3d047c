package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/millstream/millstream"
	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/internal/logging"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// startGateway starts a gateway (millstream.Start) with the command's
// version.
func startGateway(ctx context.Context, cfg *pb.GatewayConfig, log io.Writer, logger *slog.Logger) (*millstream.Gateway, error) {
	return startGatewayWith(ctx, cfg, log, logger, false)
}

func startGatewayWith(ctx context.Context, cfg *pb.GatewayConfig, log io.Writer, logger *slog.Logger, resetDamaged bool) (*millstream.Gateway, error) {
	return millstream.Start(ctx, millstream.Options{Config: cfg, Logger: logger, Output: log, ResetDamaged: resetDamaged, Version: version})
}

const gatewayLong = `Runs one gateway: the embedded MQTT broker (mqtt_listen), and the jobs of
the configuration, until interrupted (SIGTERM or Ctrl-C; a clustered
gateway hands its partitions off first).`

func newGatewayCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "gateway --config gateway.yaml",
		Short: "Run one gateway from a configuration file",
		Long:  gatewayLong,
		Args:  nArgs(0, "gateway takes no arguments (give the configuration with --config)"),
	}
	var o gatewayOptions
	fs := c.Flags()
	fs.StringVar(&o.path, "config", "", "gateway configuration (.yaml, .json, .textproto)")
	fs.BoolVarP(&o.check, "check", "t", false, "check the configuration and exit")
	fs.BoolVar(&o.printConfig, "print-config", false, "print the configuration the gateway would run with, every default filled in and secrets redacted, and exit")
	fs.BoolVar(&o.resetDamaged, "reset-damaged", false, "start partitions whose checkpoint or log is damaged without it (their state is lost; logged and counted)")
	fs.BoolVar(&o.insecure, "insecure", false, "allow listeners off loopback without TLS and authentication (warned about every minute)")
	o.log = addLogFlags(c, "info")
	c.RunE = func(c *cobra.Command, _ []string) error {
		return runGatewayCmd(c.Context(), c.OutOrStdout(), c.ErrOrStderr(), o)
	}
	return c
}

type gatewayOptions struct {
	path                          string
	check, resetDamaged, insecure bool
	printConfig                   bool
	log                           *logFlags
}

func runGatewayCmd(ctx context.Context, stdout, stderr io.Writer, o gatewayOptions) error {
	if o.path == "" {
		return fmt.Errorf("%w: --config is required", errUsage)
	}
	// Bad log flags are usage errors before anything is read or started.
	logger, err := o.log.logger(stderr)
	if err != nil {
		return err
	}
	cfg, err := config.LoadGatewayWith(o.path, func(g *pb.GatewayConfig) { g.Insecure = g.Insecure || o.insecure })
	if err != nil {
		return err
	}
	if o.printConfig {
		out, err := config.GatewayYAML(cfg)
		if err != nil {
			return err
		}
		_, err = stdout.Write(out)
		return err
	}
	if o.check {
		fmt.Fprintf(stdout, "%s: configuration is valid (%d jobs)\n", o.path, len(cfg.Jobs))
		return nil
	}
	rg, err := startGatewayWith(ctx, cfg, stdout, logger, o.resetDamaged)
	if err != nil {
		return err
	}
	logger.Info("gateway started", "name", cfg.Name, "mqtt", rg.BrokerAddr(), "admin", rg.AdminAddr(), "jobs", len(rg.Runtime().Jobs()), "partitions", cfg.Partitions)
	if exposed := config.Exposures(cfg); len(exposed) > 0 {
		go warnInsecure(ctx, logger, exposed, time.Minute)
	}
	<-ctx.Done()
	if rg.Node() != nil {
		// A planned stop: hand every partition off before exiting.
		drain, cancel := context.WithTimeout(context.Background(), drainTimeout)
		if err := rg.Node().Drain(drain); err != nil {
			logger.Error("drain incomplete; the other gateways take over the rest by failure detection", "error", err)
		}
		cancel()
	}
	stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rg.Close(stop)
	logger.Info("gateway stopped", "events", rg.Runtime().Stats().EventsIn)
	return nil
}

// warnInsecure repeats, until ctx ends, that the gateway runs with
// listeners exposed off loopback (--insecure): once is easy to miss in a
// log nobody reads at start.
func warnInsecure(ctx context.Context, logger *slog.Logger, exposed []string, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		for _, e := range exposed {
			logger.Warn("INSECURE: started with --insecure", "exposure", e)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// drainTimeout bounds the hand-off of a clustered gateway's partitions
// when it is stopped (SIGTERM, SIGINT).
const drainTimeout = 60 * time.Second

// logFlags are --log-format and --log-level of the commands that run a
// gateway: one logger (internal/logging) for every part of it.
type logFlags struct{ format, level string }

func addLogFlags(c *cobra.Command, level string) *logFlags {
	l := &logFlags{}
	c.Flags().StringVar(&l.format, "log-format", logging.FormatText, "log format: text or json")
	c.Flags().StringVar(&l.level, "log-level", level, "log level: debug, info, warn or error")
	_ = c.RegisterFlagCompletionFunc("log-format", cobra.FixedCompletions([]string{logging.FormatText, logging.FormatJSON}, cobra.ShellCompDirectiveNoFileComp))
	_ = c.RegisterFlagCompletionFunc("log-level", cobra.FixedCompletions([]string{"debug", "info", "warn", "error"}, cobra.ShellCompDirectiveNoFileComp))
	return l
}

// logger is the logger the flags ask for, writing to w; bad values are
// usage errors.
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	logger, err := logging.New(w, l.format, l.level)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return logger, nil
}
