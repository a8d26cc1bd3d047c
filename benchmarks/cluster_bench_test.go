package benchmarks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/millstream/millstream/cluster"
	"github.com/millstream/millstream/internal/certs"
	"github.com/millstream/millstream/internal/sim"
	"github.com/millstream/millstream/internal/testutil"
)

// benchCluster is a cluster of `millstream gateway` processes running the
// temperature-monitoring job, on loopback.
type benchCluster struct {
	b    *testing.B
	dir  string
	seed string
	gws  []*benchGateway
	// ca, if set, makes the link between gateways mutual TLS with
	// certificates it issues (cluster.tls).
	ca *certs.Authority
}

type benchGateway struct {
	name, mqtt, admin string
	gw                *testutil.Gateway
}

// add starts a gateway; failure is "tuned" (LAN settings of the README)
// or "default" (memberlist's).
func (c *benchCluster) add(failure string) *benchGateway {
	b := c.b
	i := len(c.gws) + 1
	g := &benchGateway{name: fmt.Sprintf("gw%d", i), mqtt: testutil.FreeAddr(b), admin: testutil.FreeAddr(b)}
	dir := filepath.Join(c.dir, g.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	gossip, remote := testutil.FreeAddr(b), testutil.FreeAddr(b)
	seeds := "[]"
	if c.seed == "" {
		c.seed = gossip
	} else {
		seeds = "[" + c.seed + "]"
	}
	detect := ""
	if failure == "tuned" {
		detect = "\n  probe_interval: 0.2s\n  probe_timeout: 0.1s\n  suspicion_mult: 2"
	}
	jobYAML, err := os.ReadFile("../deployments/jobs/temperature-monitoring/job.yaml")
	if err != nil {
		b.Fatal(err)
	}
	job := strings.ReplaceAll(string(jobYAML), "data/temperature-monitoring/raw.jsonl", filepath.Join(dir, "raw.jsonl"))
	if c.ca != nil {
		detect += c.linkTLS(g.name, dir)
	}
	conf := fmt.Sprintf("name: %s\nmqtt_listen: %s\nhttp_listen: %s\npartitions: 64\ndata_dir: %s\ncluster:\n  gossip_listen: %s\n  remote_listen: %s\n  seeds: %s%s\njobs:\n%s",
		g.name, g.mqtt, g.admin, filepath.Join(dir, "data"), gossip, remote, seeds, detect, indentLines(job, "  - ", "    "))
	cfg := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	g.gw = testutil.StartGateway(b, cfg, g.admin)
	c.gws = append(c.gws, g)
	return g
}

// linkTLS writes the CA and a gateway certificate into dir and returns the
// cluster.tls lines naming them.
func (c *benchCluster) linkTLS(name, dir string) string {
	ca, err := c.ca.WriteCA(filepath.Join(dir, "ca"))
	if err != nil {
		c.b.Fatal(err)
	}
	f, err := c.ca.WriteIssued(dir, name, certs.Request{Kind: certs.Gateway, Name: name, Validity: time.Hour})
	if err != nil {
		c.b.Fatal(err)
	}
	return fmt.Sprintf("\n  tls: {cert_file: %q, key_file: %q, ca_file: %q}", f.Cert, f.Key, ca.Cert)
}

func (g *benchGateway) status(b *testing.B) (cluster.Status, bool) {
	var st cluster.Status
	resp, err := http.Get("http://" + g.admin + "/v1/cluster")
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return st, false
	}
	return st, json.Unmarshal(body, &st) == nil
}

// served waits until g sees members members and every partition served
// by one of them other than gone, and returns how long that took.
func (c *benchCluster) served(g *benchGateway, members int, gone string, within time.Duration) time.Duration {
	start := time.Now()
	for time.Since(start) < within {
		if st, ok := g.status(c.b); ok && len(st.Members) == members {
			all := true
			for _, p := range st.Partitions {
				if p.Server == "" || gone != "" && strings.HasPrefix(p.Server, gone+"#") {
					all = false
					break
				}
			}
			if all {
				return time.Since(start)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.b.Fatalf("partitions not all served after %v:\n%s", within, c.gws[0].gw.Logs())
	return 0
}

// load runs the load generator against every gateway's broker (QoS 1)
// until ctx ends; the returned function waits for it and gives the
// acknowledged messages.
func (c *benchCluster) load(ctx context.Context, gws []*benchGateway, rate float64) func() uint64 {
	var wg sync.WaitGroup
	var sent atomic.Uint64
	for i, g := range gws {
		wg.Add(1)
		go func(i int, g *benchGateway) {
			defer wg.Done()
			cfg := sim.Config{Broker: "tcp://" + g.mqtt, Devices: 1000, Connections: 2, QoS: 1, Seed: int64(i + 1)}
			if rate > 0 {
				cfg.Rate = rate
			} else {
				cfg.Load = true
			}
			st, _ := sim.Run(ctx, cfg)
			sent.Add(st.Sent)
		}(i, g)
	}
	return func() uint64 {
		wg.Wait()
		return sent.Load()
	}
}

// BenchmarkClusterFailover measures the fail-over time: from kill -9 of
// one of three gateways, under a steady load through all three, to every
// partition served again, as another gateway sees it. failure=tuned uses
// the LAN settings of the README (probe 200 ms, timeout 100 ms,
// suspicion multiplier 2), failure=default memberlist's LAN defaults.
// Run with -benchtime 1x (each run starts three processes).
func BenchmarkClusterFailover(b *testing.B) {
	for _, failure := range []string{"tuned", "default"} {
		b.Run("failure="+failure, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				c := &benchCluster{b: b, dir: b.TempDir()}
				for j := 0; j < 3; j++ {
					c.add(failure)
				}
				c.served(c.gws[0], 3, "", time.Minute)
				ctx, cancel := context.WithCancel(context.Background())
				wait := c.load(ctx, c.gws, 1) // 1,000 messages a second per gateway
				time.Sleep(3 * time.Second)
				c.gws[1].gw.Kill()
				b.StartTimer()
				took := c.served(c.gws[0], 2, "gw2", time.Minute)
				b.StopTimer()
				cancel()
				wait()
				b.ReportMetric(took.Seconds(), "failover-s")
				for _, g := range []*benchGateway{c.gws[0], c.gws[2]} {
					b.Logf("%s: %s", g.name, lastLine(g.gw.Logs(), "why=take-over"))
				}
				for _, g := range c.gws {
					g.gw.Kill()
				}
			}
		})
	}
}

// BenchmarkClusterThroughput measures QoS 1 messages per second that 1, 2
// and 3 gateways on this machine take together under the load generator
// (one generator per gateway, as fast as acknowledgements come), and the
// CPU time all gateway processes spend per message. With two or more
// gateways every message is logged on its partition's gateway and
// replicated to a second one, and about (n-1)/n of the messages are
// forwarded from the gateway that received them. "-mtls" runs the link
// between gateways over mutual TLS (cluster.tls), against the plain link
// of the same run.
func BenchmarkClusterThroughput(b *testing.B) {
	for _, run := range []struct {
		n    int
		mtls bool
	}{{1, false}, {2, false}, {2, true}, {3, false}, {3, true}} {
		name := fmt.Sprintf("gateways=%d", run.n)
		if run.mtls {
			name += "-mtls" // no comma: the name goes into a YAML flow map (TempDir)
		}
		n := run.n
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				c := &benchCluster{b: b, dir: b.TempDir()}
				if run.mtls {
					ca, err := certs.NewCA("bench cluster CA", time.Hour)
					if err != nil {
						b.Fatal(err)
					}
					c.ca = ca
				}
				for j := 0; j < n; j++ {
					c.add("tuned")
				}
				c.served(c.gws[0], n, "", time.Minute)
				cpu0 := c.cpuSeconds()
				const d = 10 * time.Second
				ctx, cancel := context.WithTimeout(context.Background(), d)
				profiled := c.profile(n, d-2*time.Second)
				b.StartTimer()
				start := time.Now()
				sent := c.load(ctx, c.gws, 0)()
				took := time.Since(start)
				<-profiled
				b.StopTimer()
				cancel()
				cpu := c.cpuSeconds() - cpu0
				b.ReportMetric(float64(sent)/took.Seconds(), "msg/s")
				b.ReportMetric(cpu/float64(sent)*1e6, "cpu-us/msg")
				for _, g := range c.gws {
					g.gw.Kill()
				}
			}
		})
	}
}

// profile writes a CPU profile of the first gateway, taken for d, to
// $MILLSTREAM_BENCH_PROFILE/gw1-gateways=N.pprof when the variable is set
// (go tool pprof reads it). The channel closes when it is written.
func (c *benchCluster) profile(n int, d time.Duration) <-chan struct{} {
	done := make(chan struct{})
	dir := os.Getenv("MILLSTREAM_BENCH_PROFILE")
	if dir == "" {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", c.gws[0].admin, int(d.Seconds()))
		resp, err := http.Get(url)
		if err != nil {
			c.b.Logf("profile: %v", err)
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, fmt.Sprintf("gw1-gateways=%d.pprof", n)), data, 0o644)
		}
		if err != nil {
			c.b.Logf("profile: %v", err)
		}
	}()
	return done
}

// cpuSeconds is the user and system CPU time of the gateway processes.
func (c *benchCluster) cpuSeconds() float64 {
	var total float64
	for _, g := range c.gws {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", g.gw.Pid()))
		if err != nil {
			c.b.Fatal(err)
		}
		// Fields after the command name (which is in parentheses).
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
		utime, _ := strconv.ParseFloat(f[11], 64)
		stime, _ := strconv.ParseFloat(f[12], 64)
		total += (utime + stime) / 100 // clock ticks (USER_HZ = 100)
	}
	return total
}
