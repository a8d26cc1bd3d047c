package benchmarks

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/millstream/millstream/actors"
	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/internal/sim"
	"github.com/millstream/millstream/internal/testutil"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.CleanupBinary()
	os.Exit(code)
}

// durableGateway is an in-process gateway with the embedded broker and the
// temperature-monitoring job; store nil: in memory.
type durableGateway struct {
	g      *actors.Gateway
	outs   *actors.Outputs
	broker *actors.Broker
	store  *state.Store
}

func temperatureJob(tb testing.TB) *pb.Job {
	job, err := config.LoadJob("../deployments/jobs/temperature-monitoring/job.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	for _, o := range job.Outputs {
		if f := o.GetFile(); f != nil {
			f.Path = filepath.Join(tb.TempDir(), "raw.jsonl")
		}
	}
	return job
}

func startDurable(tb testing.TB, job *pb.Job, cfg actors.Config, dir string, noSync bool, sink func(*actors.Outputs) actors.Sink) *durableGateway {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := &durableGateway{outs: actors.NewOutputs(nil, io.Discard)}
	if dir != "" {
		st, err := state.Open(dir, state.Config{Partitions: cfg.Partitions, NoSync: noSync, Logger: quiet})
		if err != nil {
			tb.Fatal(err)
		}
		d.store = st
		d.outs.EnableOutbox(st, quiet)
		cfg.Store = st
	}
	cfg.Logger = quiet
	var s actors.Sink = d.outs
	if sink != nil {
		s = sink(d.outs)
	}
	d.g = actors.New(cfg, s, nil)
	b, err := actors.StartBroker(d.g, actors.BrokerOptions{Listen: "127.0.0.1:0", MaxPayload: 1 << 16, Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	d.broker = b
	d.outs.SetPublisher(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.outs.Configure(job); err != nil {
		tb.Fatal(err)
	}
	if err := d.g.Deploy(ctx, job); err != nil {
		tb.Fatal(err)
	}
	if err := d.g.Recover(ctx); err != nil {
		tb.Fatal(err)
	}
	return d
}

func (d *durableGateway) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d.broker.Close()
	d.g.Close(ctx)
	d.outs.Close()
	if d.store != nil {
		d.store.Close()
	}
}

// BenchmarkDurableThroughput runs the temperature-monitoring job behind the
// embedded broker with the load generator (10,000 devices, 4 connections,
// QoS 1, up to 1024 in flight each) for 5 s, in memory and with durable
// state (fsync group commit, and the unsafe no-sync mode), and reports the
// messages per second the gateway ingested. Compare the modes as ratios
// within one run. Run with -benchtime 1x.
func BenchmarkDurableThroughput(b *testing.B) {
	for _, mode := range []string{"memory", "durable", "durable-nosync"} {
		b.Run("mode="+mode, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				dir := ""
				if mode != "memory" {
					dir = b.TempDir()
				}
				d := startDurable(b, temperatureJob(b), actors.Config{Partitions: 16}, dir, mode == "durable-nosync", nil)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				start := time.Now()
				st, err := sim.Run(ctx, sim.Config{Broker: "tcp://" + d.broker.Addr(), Devices: 10000, Connections: 4, QoS: 1, Load: true})
				elapsed := time.Since(start)
				cancel()
				if err != nil && ctx.Err() == nil {
					b.Fatal(err)
				}
				in := d.g.Stats().EventsIn
				if d.store != nil && os.Getenv("MILLSTREAM_BENCH_PEBBLE") != "" {
					b.Logf("pebble metrics:\n%s", d.store.Metrics())
				}
				d.close()
				b.ReportMetric(float64(in)/elapsed.Seconds(), "msg/s")
				b.ReportMetric(float64(st.Sent), "sent")
			}
		})
	}
}

// BenchmarkRecoveryTime measures how long a `millstream gateway` process
// takes to come back after kill -9 with 1,000,000 ingest log entries
// after its last checkpoint: the temperature-monitoring job (64
// partitions, checkpoints off) takes 1,000,000 QoS 1 messages from the
// load generator, the outbox drains, the process is killed, and the
// benchmark times a restart from exec to ready (store open, job deploy,
// replay of every entry). Run with -benchtime 1x.
func BenchmarkRecoveryTime(b *testing.B) {
	const entries = 1_000_000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		mqtt, admin := testutil.FreeAddr(b), testutil.FreeAddr(b)
		cfg := filepath.Join(dir, "gateway.yaml")
		jobYAML, err := os.ReadFile("../deployments/jobs/temperature-monitoring/job.yaml")
		if err != nil {
			b.Fatal(err)
		}
		job := strings.ReplaceAll(string(jobYAML), "data/temperature-monitoring/raw.jsonl", filepath.Join(dir, "raw.jsonl"))
		conf := fmt.Sprintf("name: recovery\nmqtt_listen: %s\nhttp_listen: %s\npartitions: 64\ndata_dir: %s\ndurability: {checkpoint_interval: 3600s}\njobs:\n%s",
			mqtt, admin, filepath.Join(dir, "data"), indentLines(job, "  - ", "    "))
		if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
			b.Fatal(err)
		}
		gw := testutil.StartGateway(b, cfg, admin)
		ctx, cancel := context.WithCancel(context.Background())
		var sent atomic.Uint64
		go func() {
			st, _ := sim.Run(ctx, sim.Config{Broker: "tcp://" + mqtt, Devices: 10000, Connections: 4, QoS: 1, Load: true})
			sent.Store(st.Sent)
		}()
		for eventsIn(b, admin) < entries {
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		time.Sleep(time.Second) // the generator's last acknowledgements
		for backlog(b, admin) > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		logged := eventsIn(b, admin)
		gw.Kill()
		b.StartTimer()
		start := time.Now()
		gw.Start()
		took := time.Since(start)
		b.StopTimer()
		replayed := strings.Count(gw.Logs(), "state recovered")
		gw.Stop()
		if replayed != 2 {
			b.Fatalf("want two recoveries in the log, found %d", replayed)
		}
		b.ReportMetric(took.Seconds(), "recovery-s")
		b.ReportMetric(float64(logged), "log-entries")
		b.Logf("recovery log: %s", lastLine(gw.Logs(), "state recovered"))
	}
}

func indentLines(s, first, rest string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		if i == 0 {
			lines[i] = first + lines[i]
		} else {
			lines[i] = rest + lines[i]
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

func lastLine(logs, substr string) string {
	lines := strings.Split(logs, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], substr) {
			return lines[i]
		}
	}
	return ""
}

func eventsIn(b *testing.B, admin string) uint64 {
	v, _ := scrape(b, admin, "millstream_events_in_total ")
	return uint64(v)
}

func backlog(b *testing.B, admin string) float64 {
	v, _ := scrape(b, admin, "millstream_outbox_rows{")
	return v
}

// scrape sums the values of the metric lines starting with prefix.
func scrape(b *testing.B, admin, prefix string) (float64, bool) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	found := false
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				sum += v
				found = true
			}
		}
	}
	return sum, found
}

// latencyOutputs records, for each alert row put in the outbox (durable or
// in memory), the time since the device published it (its sentNs field).
type latencyOutputs struct {
	*actors.Outputs
	mu  sync.Mutex
	lat []time.Duration
}

func (l *latencyOutputs) Encode(job, output string, ts int64, rec *value.Record, id string) (state.OutRow, bool) {
	l.record(rec)
	return l.Outputs.Encode(job, output, ts, rec, id)
}

func (l *latencyOutputs) record(rec *value.Record) {
	if v, ok := rec.Get("sentNs"); ok {
		d := time.Duration(time.Now().UnixNano() - v.Int())
		l.mu.Lock()
		l.lat = append(l.lat, d)
		l.mu.Unlock()
	}
}

// BenchmarkCheckpointPause measures what checkpoints add to alert latency:
// a durable gateway with 10,000 devices in open 10 s windows (the
// temperature-monitoring job plus an alert on every reading) takes 10,000
// msg/s over QoS 0 for 10 s, with checkpoints every second and with
// checkpoints off; it reports the p50, p99 and p999 latency from publish
// to the outbox. The latency includes the log's fsync, whose outliers on a
// shared disk can hide the checkpoints: sync=off runs the same without
// fsync to show the checkpoints' own cost, and durability=off the same job
// on the in-memory gateway. Run with -benchtime 1x.
func BenchmarkCheckpointPause(b *testing.B) {
	for _, mode := range []struct {
		name   string
		cp     time.Duration
		noSync bool
		memory bool
	}{
		{"durability=off", 0, false, true},
		{"sync=on/checkpoints=off", time.Hour, false, false}, {"sync=on/checkpoints=1s", time.Second, false, false},
		{"sync=off/checkpoints=off", time.Hour, true, false}, {"sync=off/checkpoints=1s", time.Second, true, false},
	} {
		cp := mode.cp
		b.Run(mode.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				job := temperatureJob(b)
				job.Query = `SELECT deviceId, AVG(temperature) AS avgTemp, COUNT(*) AS n INTO agg FROM IotHubInput GROUP BY deviceId, TumblingWindow(second, 10)
SELECT deviceId, temperature, sentNs INTO alerts FROM IotHubInput WHERE temperature > 0`
				job.Outputs = []*pb.JobOutput{
					{Name: "agg", Sink: &pb.JobOutput_Log{Log: &pb.LogSink{}}},
					{Name: "alerts", Sink: &pb.JobOutput_Log{Log: &pb.LogSink{}}},
				}
				var lo *latencyOutputs
				dir := b.TempDir()
				if mode.memory {
					dir = ""
				}
				d := startDurable(b, job, actors.Config{Partitions: 64, CheckpointInterval: cp}, dir, mode.noSync,
					func(o *actors.Outputs) actors.Sink { lo = &latencyOutputs{Outputs: o}; return lo })
				lat := publishAtRate(b, d.broker.Addr(), 10000, 10000, 10*time.Second)
				_ = lat
				cps := d.g.DurableStats().Checkpoints
				d.close()
				lo.mu.Lock()
				all := append([]time.Duration(nil), lo.lat...)
				lo.mu.Unlock()
				sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
				if len(all) == 0 {
					b.Fatal("no alerts")
				}
				q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
				b.ReportMetric(q(0.50), "p50-ms")
				b.ReportMetric(q(0.99), "p99-ms")
				b.ReportMetric(q(0.999), "p999-ms")
				b.ReportMetric(float64(len(all)), "alerts")
				b.ReportMetric(float64(cps), "checkpoints")
			}
		})
	}
}

// publishAtRate publishes rate msg/s (QoS 0) from devices devices over 4
// paho connections for d; every payload carries its send time.
func publishAtRate(b *testing.B, addr string, rate, devices int, d time.Duration) int {
	const conns = 4
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	var mu sync.Mutex
	sent := 0
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("rate-pub-%d", c)))
			if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				b.Errorf("connect: %v", tok.Error())
				return
			}
			defer pub.Disconnect(100)
			interval := time.Second * time.Duration(conns) / time.Duration(rate)
			next := time.Now()
			n := 0
			for ; time.Now().Before(deadline); n++ {
				dev := "device-" + strconv.Itoa((n*conns+c)%devices)
				payload := fmt.Appendf(nil, `{"deviceId":"%s","temperature":%d,"sentNs":%d}`, dev, 60+n%50, time.Now().UnixNano())
				pub.Publish("devices/"+dev+"/messages/events/", 0, false, payload)
				next = next.Add(interval)
				if s := time.Until(next); s > 0 {
					time.Sleep(s)
				}
			}
			mu.Lock()
			sent += n
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	time.Sleep(500 * time.Millisecond)
	return sent
}
