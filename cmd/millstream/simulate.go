package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/millstream/millstream/internal/sim"
)

const simulateLong = `Simulated factory devices publishing telemetry to an MQTT broker, with a
progress line (sent, rate, errors) every 5 seconds. With --load it is the
load generator: every connection publishes prebuilt payloads as fast as the
broker accepts them (QoS 1 with up to 1024 messages in flight).`

func newSimulateCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "simulate",
		Short: "Simulated devices publishing to an MQTT broker (or a load generator)",
		Long:  simulateLong,
		Args:  nArgs(0, "simulate takes no arguments"),
	}
	var cfg sim.Config
	var qos uint
	fs := c.Flags()
	fs.StringVar(&cfg.Broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL")
	fs.IntVar(&cfg.Devices, "devices", 10, "simulated devices")
	fs.Float64Var(&cfg.Rate, "rate", 1, "messages per second per device")
	fs.UintVar(&qos, "qos", 1, "MQTT QoS, 0 or 1")
	fs.IntVar(&cfg.Connections, "connections", 0, "MQTT connections (default min(devices, 4))")
	duration := fs.Duration("duration", 0, "stop after this long (0: until interrupted)")
	fs.BoolVar(&cfg.Load, "load", false, "load generator: publish as fast as the broker takes it (ignores --rate)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		return simulate(c.Context(), c.OutOrStdout(), cfg, qos, *duration)
	}
	return c
}

func simulate(ctx context.Context, stdout io.Writer, cfg sim.Config, qos uint, duration time.Duration) error {
	if qos > 1 {
		return fmt.Errorf("%w: --qos must be 0 or 1", errUsage)
	}
	cfg.QoS = byte(qos)
	cfg.Progress = stdout
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	st, err := sim.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sim: done: %d sent, %d errors\n", st.Sent, st.Errors)
	return nil
}
