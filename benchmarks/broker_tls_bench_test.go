package benchmarks

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/millstream/millstream/actors"
	"github.com/millstream/millstream/internal/certs"
	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/internal/mqttwire"
)

// BenchmarkBrokerTLS measures the embedded broker's cost per message over
// plain MQTT, over MQTTS, and over MQTTS with device certificates (so
// authentication and an ACL check per publish): a publisher process
// (this test binary again, so its CPU is not the gateway's) sends QoS 1
// messages on 4 connections, 256 in flight each, to an in-memory gateway
// whose job reads the device topic and keeps no row (path=ingest), or to
// a topic no job reads (path=unrouted: the broker alone). It reports the
// wall time per message, msg/s, and the CPU time per message of the
// gateway process (broker and job) and of the publisher. Messages per
// run: MILLSTREAM_BENCH_MSGS (default 200,000). Run with -benchtime 1x;
// the machine's other load shows in the spread of -count runs.
func BenchmarkBrokerTLS(b *testing.B) {
	msgs := 200_000
	if s := os.Getenv("MILLSTREAM_BENCH_MSGS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		msgs = n
	}
	pki := benchPKI(b)
	for _, path := range []string{"ingest", "unrouted"} {
		for _, mode := range []string{"plain", "tls", "tls-device-cert"} {
			b.Run("path="+path+"/transport="+mode, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					r := runBrokerBench(b, pki, mode, path, msgs)
					b.ReportMetric(float64(r.wall.Nanoseconds())/float64(msgs), "ns/msg")
					b.ReportMetric(float64(msgs)/r.wall.Seconds(), "msg/s")
					b.ReportMetric(float64(r.gatewayCPU.Nanoseconds())/float64(msgs), "gateway-cpu-ns/msg")
					b.ReportMetric(float64(r.publisherCPU.Nanoseconds())/float64(msgs), "publisher-cpu-ns/msg")
				}
			})
		}
	}
}

type benchCerts struct {
	dir    string
	ca     string
	server certs.Files
}

func benchPKI(b *testing.B) benchCerts {
	dir := b.TempDir()
	ca, err := certs.NewCA("bench CA", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	caFiles, err := ca.WriteCA(dir)
	if err != nil {
		b.Fatal(err)
	}
	server, err := ca.WriteIssued(dir, "gateway", certs.Request{Kind: certs.Gateway, Name: "gateway"})
	if err != nil {
		b.Fatal(err)
	}
	for c := range brokerBenchConns {
		if _, err := ca.WriteIssued(dir, benchDevice(c), certs.Request{Kind: certs.Device, Name: benchDevice(c)}); err != nil {
			b.Fatal(err)
		}
	}
	return benchCerts{dir: dir, ca: caFiles.Cert, server: server}
}

const (
	brokerBenchConns  = 4
	brokerBenchWindow = 256
)

func benchDevice(conn int) string { return fmt.Sprintf("bench-%d", conn) }

type brokerBenchResult struct{ wall, gatewayCPU, publisherCPU time.Duration }

func runBrokerBench(b *testing.B, pki benchCerts, mode, path string, msgs int) brokerBenchResult {
	job, err := config.ParseJob("job.yaml", []byte("name: j\nquery: SELECT deviceId, temperature INTO o FROM t WHERE temperature > 1000\ninputs: [{name: t}]\noutputs: [{name: o, log: {}}]\n"))
	if err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	outs := actors.NewOutputs(nil, io.Discard)
	defer outs.Close()
	g := actors.New(actors.Config{Partitions: 8, Logger: quiet}, outs, nil)
	opts := actors.BrokerOptions{Listen: "127.0.0.1:0", TLSListen: "127.0.0.1:0", CertFile: pki.server.Cert, KeyFile: pki.server.Key, Logger: quiet}
	if mode == "tls-device-cert" {
		opts.CAFile = pki.ca
	}
	broker, err := actors.StartBroker(g, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer broker.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	defer g.Close(ctx)
	if err := outs.Configure(job); err != nil {
		b.Fatal(err)
	}
	if err := g.Deploy(ctx, job); err != nil {
		b.Fatal(err)
	}
	addr := broker.Addr()
	if mode != "plain" {
		addr = broker.TLSAddr()
	}
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBrokerBenchPublisher$", "-test.bench=^$", "-test.count=1")
	cmd.Env = append(os.Environ(), "MILLSTREAM_BENCH_PUBLISHER="+strings.Join([]string{mode, path, addr, pki.ca, pki.dir, strconv.Itoa(msgs)}, ","))
	cmd.Stderr = os.Stderr
	before := selfCPU(b)
	out, err := cmd.Output()
	gatewayCPU := selfCPU(b) - before
	if err != nil {
		b.Fatalf("publisher: %v\n%s", err, out)
	}
	_, wallText, ok := strings.Cut(string(out), "published in ")
	if !ok {
		b.Fatalf("publisher said: %s", out)
	}
	wall, err := time.ParseDuration(strings.Fields(wallText)[0])
	if err != nil {
		b.Fatal(err)
	}
	if err := g.Drain(ctx); err != nil {
		b.Fatal(err)
	}
	if path == "ingest" && g.Stats().EventsIn != uint64(msgs) || path == "unrouted" && broker.Unrouted() != uint64(msgs) {
		b.Fatalf("%d messages sent, %d ingested, %d unrouted", msgs, g.Stats().EventsIn, broker.Unrouted())
	}
	return brokerBenchResult{wall: wall, gatewayCPU: gatewayCPU, publisherCPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
}

// selfCPU is the user and system CPU time of this process so far.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestBrokerBenchPublisher is BenchmarkBrokerTLS's publisher process;
// it does nothing unless MILLSTREAM_BENCH_PUBLISHER is set to
// "mode,path,addr,ca file,cert dir,messages".
func TestBrokerBenchPublisher(t *testing.T) {
	spec := os.Getenv("MILLSTREAM_BENCH_PUBLISHER")
	if spec == "" {
		t.Skip("BenchmarkBrokerTLS's publisher process")
	}
	f := strings.Split(spec, ",")
	if len(f) != 6 {
		t.Fatalf("MILLSTREAM_BENCH_PUBLISHER=%q", spec)
	}
	mode, path, addr, caFile, dir := f[0], f[1], f[2], f[3], f[4]
	msgs, err := strconv.Atoi(f[5])
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, brokerBenchConns)
	for c := range conns {
		conns[c], err = dialBench(mode, addr, caFile, dir, c)
		if err != nil {
			t.Fatal(err)
		}
		defer conns[c].Close()
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for c, conn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := msgs / len(conns)
			if c < msgs%len(conns) {
				n++
			}
			topic := "devices/" + benchDevice(c) + "/messages/events/"
			if path == "unrouted" {
				topic = "devices/" + benchDevice(c) + "/status" // no job reads it
			}
			errs <- publishQoS1(conn, topic, n)
		}()
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	fmt.Printf("published in %s\n", took)
}

// dialBench connects and sends CONNECT as device benchDevice(conn).
func dialBench(mode, addr, caFile, dir string, conn int) (net.Conn, error) {
	var c net.Conn
	var err error
	if mode == "plain" {
		c, err = net.Dial("tcp", addr)
	} else {
		pem, rerr := os.ReadFile(caFile)
		if rerr != nil {
			return nil, rerr
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		conf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if mode == "tls-device-cert" {
			base := filepath.Join(dir, benchDevice(conn))
			cert, cerr := tls.LoadX509KeyPair(base+".crt", base+".key")
			if cerr != nil {
				return nil, cerr
			}
			conf.Certificates = []tls.Certificate{cert}
		}
		c, err = tls.Dial("tcp", addr, conf)
	}
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(mqttwire.Connect(benchDevice(conn), 60)); err != nil {
		c.Close()
		return nil, err
	}
	h, body, err := mqttwire.ReadPacket(bufio.NewReader(c))
	if err != nil || !mqttwire.ConnackOK(append([]byte{h, byte(len(body))}, body...)) {
		c.Close()
		return nil, fmt.Errorf("CONNECT %s refused (%x %x): %v", benchDevice(conn), h, body, err)
	}
	return c, nil
}

// publishQoS1 sends n QoS 1 messages, at most brokerBenchWindow
// unacknowledged, and returns once every PUBACK is in.
func publishQoS1(c net.Conn, topic string, n int) error {
	slots := make(chan struct{}, brokerBenchWindow)
	acked := make(chan error, 1)
	go func() {
		r := bufio.NewReader(c)
		for i := 0; i < n; i++ {
			h, _, err := mqttwire.ReadPacket(r)
			if err != nil {
				acked <- fmt.Errorf("%s: PUBACK %d of %d: %w", topic, i, n, err)
				return
			}
			if h != 0x40 {
				acked <- fmt.Errorf("%s: packet %#x, want PUBACK", topic, h)
				return
			}
			<-slots
		}
		acked <- nil
	}()
	w := bufio.NewWriterSize(c, 64<<10)
	payload := []byte(`{"deviceId":"bench","temperature":21.5,"pressure":1013.2}`)
	pkt, idAt := mqttwire.AppendPublish(nil, topic, payload, 1, 1)
	for i := 0; i < n; i++ {
		select {
		case slots <- struct{}{}:
		default:
			// Window full: send what is buffered, then wait for a PUBACK.
			if err := w.Flush(); err != nil {
				return err
			}
			slots <- struct{}{}
		}
		binary.BigEndian.PutUint16(pkt[idAt:], uint16(i%65535+1)) // never 0; ids in flight are distinct
		if _, err := w.Write(pkt); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return <-acked
}
