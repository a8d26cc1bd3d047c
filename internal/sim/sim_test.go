package sim_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/actors"
	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/internal/sim"
)

// TestSimulatorDeliversEveryMessage runs both publishing modes against a
// gateway with the embedded broker: every message the simulator counts as
// sent (QoS 1, acknowledged) is ingested, none twice.
func TestSimulatorDeliversEveryMessage(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	g := actors.New(actors.Config{Partitions: 4, Logger: quiet}, nil, nil)
	b, err := actors.StartBroker(g, actors.BrokerOptions{Listen: "127.0.0.1:0", MaxPayload: 1 << 16, Logger: quiet})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	job, err := config.ParseJob("job.yaml", []byte("name: j\nquery: SELECT deviceId INTO o FROM t\ninputs: [{name: t}]\noutputs: [{name: o, log: {}}]\n"))
	require.NoError(t, err)
	require.NoError(t, g.Deploy(ctx, job))

	var progress bytes.Buffer
	run, stop := context.WithTimeout(ctx, 700*time.Millisecond)
	st, err := sim.Run(run, sim.Config{Broker: "tcp://" + b.Addr(), Devices: 50, Rate: 100, QoS: 1, Progress: &progress, ProgressEvery: 200 * time.Millisecond})
	stop()
	require.NoError(t, err)
	require.NotZero(t, st.Sent)
	require.Zero(t, st.Errors)
	require.Contains(t, progress.String(), "sim: ")

	run, stop = context.WithTimeout(ctx, 300*time.Millisecond)
	load, err := sim.Run(run, sim.Config{Broker: "tcp://" + b.Addr(), Devices: 1000, QoS: 1, Load: true, Connections: 2})
	stop()
	require.NoError(t, err)
	require.Greater(t, load.Sent, uint64(1000))
	require.NoError(t, g.Drain(ctx))
	require.Equal(t, st.Sent+load.Sent, g.Stats().EventsIn)
	require.NoError(t, b.Close())
	require.NoError(t, g.Close(ctx))
}
