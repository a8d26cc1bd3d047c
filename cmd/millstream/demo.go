package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/spf13/cobra"

	"github.com/millstream/millstream/deployments"
	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/internal/sim"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

const demoLong = `One command, nothing else to install: starts a gateway with its embedded
MQTT broker, simulated devices publishing temperature, humidity, pressure
and vibration, and the temperature-monitoring job of the seed document
(CRITICAL alerts above 100, per-device aggregates over 10-second tumbling
windows, all raw readings to a local file). Alerts and aggregates are
printed as they happen; devices or other tools may connect to the broker.
Stop it with Ctrl-C (or --duration).`

func newDemoCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "demo",
		Short: "A gateway, simulated devices and a sample job: one command",
		Long:  demoLong,
		Args:  nArgs(0, "demo takes no arguments"),
	}
	var o demoOptions
	fs := c.Flags()
	fs.IntVar(&o.devices, "devices", 20, "simulated devices")
	fs.Float64Var(&o.rate, "rate", 2, "messages per second per device")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: until interrupted)")
	fs.StringVar(&o.listen, "mqtt", "127.0.0.1:1883", "embedded MQTT broker address (port 0 picks a free one)")
	fs.StringVar(&o.admin, "http", "127.0.0.1:8080", "admin API and /metrics address (port 0 picks a free one)")
	fs.StringVar(&o.data, "data", "millstream-demo", "directory for the raw-data file and the gateway's durable state")
	fs.IntVar(&o.spikeEvery, "spike-every", 200, "about one reading in this many is a temperature spike")
	// Errors only by default: the demo's own lines are what it shows.
	o.log = addLogFlags(c, "error")
	c.RunE = func(c *cobra.Command, _ []string) error {
		return demo(c.Context(), c.OutOrStdout(), c.ErrOrStderr(), o)
	}
	return c
}

type demoOptions struct {
	devices, spikeEvery int
	rate                float64
	duration            time.Duration
	listen, admin, data string
	log                 *logFlags
}

func demo(ctx context.Context, stdout, stderr io.Writer, o demoOptions) error {
	logger, err := o.log.logger(stderr)
	if err != nil {
		return err
	}
	job, err := demoJob(o.data)
	if err != nil {
		return err
	}
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	var outMu sync.Mutex
	out := lockedWriter{w: stdout, mu: &outMu}
	rg, err := startGateway(ctx, &pb.GatewayConfig{Name: "demo", DataDir: o.data, MqttListen: o.listen, HttpListen: o.admin, Partitions: 8, Jobs: []*pb.Job{job}}, out, logger)
	if err != nil {
		return fmt.Errorf("demo: %w (is the port taken? try --mqtt 127.0.0.1:0 --http 127.0.0.1:0)", err)
	}
	broker := "tcp://" + rg.BrokerAddr()
	fmt.Fprintf(out, "millstream demo: embedded MQTT broker on %s; admin API and metrics on http://%s; %d simulated devices at %.1f msg/s each\n", broker, rg.AdminAddr(), o.devices, o.rate)
	fmt.Fprintf(out, "millstream demo: job %q: ALERT lines are CRITICAL readings, AGG lines the 10 s aggregates (topic millstream/%s/IotHubOutput), raw data in %s\n",
		job.Name, job.Name, filepath.Join(o.data, "raw.jsonl"))

	// Print the aggregates the job publishes upstream, as a subscriber would.
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID("millstream-demo-viewer"))
	if tok := sub.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		sub.Subscribe("millstream/#", 1, func(_ paho.Client, m paho.Message) {
			fmt.Fprintf(out, "AGG %s\n", m.Payload())
		}).WaitTimeout(5 * time.Second)
		defer sub.Disconnect(250)
	}

	var wg sync.WaitGroup
	wg.Add(2)
	var simErr error
	go func() {
		defer wg.Done()
		_, simErr = sim.Run(ctx, sim.Config{Broker: broker, Devices: o.devices, Rate: o.rate, QoS: 1, SpikeEvery: o.spikeEvery})
	}()
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				st := rg.Runtime().Stats()
				fmt.Fprintf(out, "millstream demo: %d events in, %d rows out, %d dead-lettered\n", st.EventsIn, st.RowsOut, st.DeadLettered)
			}
		}
	}()
	wg.Wait()
	stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A demo ends its input: close the open windows so their aggregates show.
	_ = rg.Runtime().Drain(stop)
	_ = rg.Runtime().FlushWindows(stop)
	time.Sleep(200 * time.Millisecond) // let the viewer print the last aggregates
	st := rg.Runtime().Stats()
	rg.Close(stop)
	fmt.Fprintf(out, "millstream demo: stopped: %d events in, %d rows out, %d dead-lettered\n", st.EventsIn, st.RowsOut, st.DeadLettered)
	if simErr != nil && !errors.Is(simErr, context.Canceled) {
		return simErr
	}
	return nil
}

// demoJob loads the embedded temperature-monitoring job and points its file
// output into dir.
func demoJob(dir string) (*pb.Job, error) {
	data, err := deployments.Jobs.ReadFile("jobs/temperature-monitoring/job.yaml")
	if err != nil {
		return nil, err
	}
	job, err := config.ParseJob("temperature-monitoring.yaml", data)
	if err != nil {
		return nil, err
	}
	for _, o := range job.Outputs {
		if f := o.GetFile(); f != nil {
			f.Path = filepath.Join(dir, filepath.Base(f.Path))
		}
	}
	return job, nil
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
