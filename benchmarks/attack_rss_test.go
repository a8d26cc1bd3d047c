package benchmarks

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/millstream/millstream/internal/mqttwire"
	"github.com/millstream/millstream/internal/testutil"
)

// The RSS of a gateway under the hostile inputs of issue 13, after their
// fixes: every attack gets a fresh durable gateway process on loopback,
// whose VmRSS and VmHWM (/proc/PID/status) are read before, at the end
// (VmHWM: the peak) and a few seconds after, with whether /readyz still
// answers 200. Off by default (it takes minutes and a few hundred MB):
//
//	go test ./benchmarks -run TestAttackRSS -attack.rss -v -timeout 30m
//
// -attack.only runs the attacks whose names match a regular expression.
// The table it prints is the one in RESULTS.md ("Hostile input: RSS
// under attack").
var (
	attackRSS  = flag.Bool("attack.rss", false, "run TestAttackRSS (gateway processes under hostile input; minutes)")
	attackOnly = flag.String("attack.only", "", "run only the attacks matching this regular expression")
	attackHeap = flag.String("attack.heap", "", "save each gateway's heap profile after its attack in this directory (turns admin.pprof on)")
)

// rssLimit is what no attack may take a gateway past.
const rssLimit = 1 << 30

type procMem struct{ rss, hwm int64 } // bytes

func readProcMem(t *testing.T, pid int) procMem {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read /proc status of the gateway: %v", err)
	}
	var m procMem
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.rss = kb << 10
		case "VmHWM:":
			m.hwm = kb << 10
		}
	}
	return m
}

// attackGW is one gateway process under attack.
type attackGW struct {
	t           *testing.T
	gw          *testutil.Gateway
	mqtt, admin string
	dir         string
}

func (g *attackGW) url(path string) string { return "http://" + g.admin + path }

// do makes one admin request and returns its status and (cut) body.
func (g *attackGW) do(method, path, ctype, body string) (int, string) {
	req, err := http.NewRequest(method, g.url(path), strings.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	c := &http.Client{Timeout: 60 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (g *attackGW) deploy(job string) (int, string) {
	return g.do("PUT", "/v1/jobs", "application/yaml", job)
}

// ready is /readyz's status and first line, and each job's stopped
// reason from /v1/jobs.
func (g *attackGW) ready() string {
	code, body := g.do("GET", "/readyz", "", "")
	s := fmt.Sprintf("readyz %d", code)
	if code != 200 {
		s += " " + cut(strings.TrimSpace(body), 80)
	}
	code, body = g.do("GET", "/v1/jobs", "", "")
	var jobs struct {
		Jobs []struct {
			Name    string `json:"name"`
			Stopped string `json:"stopped"`
		} `json:"jobs"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &jobs) != nil {
		return s + fmt.Sprintf("; /v1/jobs %d", code)
	}
	for _, j := range jobs.Jobs {
		if j.Stopped != "" {
			s += fmt.Sprintf("; job %s stopped", j.Name)
		}
	}
	return s
}

func (g *attackGW) metric(name string) float64 {
	_, body := g.do("GET", "/metrics", "", "")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	return err == nil && !strings.Contains(string(b), "State:\tZ")
}

// mqttConn is a raw MQTT 3.1.1 connection.
type mqttConn struct {
	net.Conn
	r *bufio.Reader
}

// dialMQTT connects with client id id; clean false keeps the session.
func dialMQTT(addr, id string, clean bool) (*mqttConn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	pkt := mqttwire.Connect(id, 0)
	if !clean {
		pkt[9] &^= 0x02 // connect flags: keep the session
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(pkt); err != nil {
		c.Close()
		return nil, err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		c.Close()
		return nil, fmt.Errorf("no CONNACK: %w", err)
	}
	if !mqttwire.ConnackOK(ack) {
		c.Close()
		return nil, fmt.Errorf("CONNACK refused: % x", ack)
	}
	_ = c.SetDeadline(time.Time{})
	return &mqttConn{Conn: c, r: bufio.NewReader(c)}, nil
}

// publish writes QoS 0 publishes through a buffer.
type publisher struct {
	c   *mqttConn
	w   *bufio.Writer
	buf []byte
}

func newPublisher(c *mqttConn) *publisher {
	return &publisher{c: c, w: bufio.NewWriterSize(c, 256<<10)}
}

func (p *publisher) pub(topic string, payload []byte, retain bool) error {
	p.buf, _ = mqttwire.AppendPublish(p.buf[:0], topic, payload, 0, 0)
	if retain {
		p.buf[0] |= 1
	}
	_, err := p.w.Write(p.buf)
	return err
}

func (p *publisher) flush() error { return p.w.Flush() }

func cut(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func mib(b int64) string { return fmt.Sprintf("%.0f", float64(b)/(1<<20)) }

// rssAttack is one attack: jobs deployed at start (gateway config YAML)
// and what it does; run returns what the gateway answered.
type rssAttack struct {
	name string
	jobs string
	run  func(t *testing.T, g *attackGW) string
}

const (
	attackTopic = "devices/%s/messages/events"
	// quietJob reads the telemetry (so that events reach the partitions
	// and the device registry) and writes almost nothing.
	quietJob = `  - name: quiet
    query: SELECT deviceId, v INTO o FROM telemetry WHERE v < 0
    inputs: [{name: telemetry, topic: "devices/+/messages/events"}]
    outputs: [{name: o, file: {path: %q}}]
`
)

func TestAttackRSS(t *testing.T) {
	if !*attackRSS {
		t.Skip("measures gateway processes under attack for minutes; run with -attack.rss")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc")
	}
	t.Cleanup(testutil.CleanupBinary)
	only := regexp.MustCompile(*attackOnly)
	var rows []string
	for _, a := range rssAttacks() {
		if !only.MatchString(a.name) {
			continue
		}
		t.Run(strings.ReplaceAll(a.name, " ", "_"), func(t *testing.T) {
			rows = append(rows, runRSSAttack(t, a))
		})
	}
	t.Logf("\n| attack | gateway answered | RSS before MiB | peak (VmHWM) MiB | RSS after MiB | up, ready after |\n| --- | --- | --- | --- | --- | --- |\n%s", strings.Join(rows, "\n"))
}

func runRSSAttack(t *testing.T, a rssAttack) string {
	dir := t.TempDir()
	g := &attackGW{t: t, mqtt: testutil.FreeAddr(t), admin: testutil.FreeAddr(t), dir: dir}
	cfg := filepath.Join(dir, "gw.yaml")
	jobs := strings.ReplaceAll(a.jobs, "OUT", filepath.Join(dir, "data", "out.jsonl"))
	if jobs != "" {
		jobs = "jobs:\n" + jobs
	}
	if *attackHeap != "" {
		jobs = "admin: {pprof: true}\n" + jobs
	}
	yaml := fmt.Sprintf("name: rss\nmqtt_listen: %s\nhttp_listen: %s\ndata_dir: %s\npartitions: 4\n%s",
		g.mqtt, g.admin, filepath.Join(dir, "data"), jobs)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	g.gw = testutil.StartGateway(t, cfg, g.admin)
	time.Sleep(time.Second) // settle
	pid := g.gw.Pid()
	before := readProcMem(t, pid)

	// Sample VmRSS as well: VmHWM alone cannot say when the peak was.
	var peakRSS atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				if m := regexp.MustCompile(`VmRSS:\s+(\d+)`).FindSubmatch(b); m != nil {
					kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
					if kb<<10 > peakRSS.Load() {
						peakRSS.Store(kb << 10)
					}
				}
			}
		}
	}()
	start := time.Now()
	answer := a.run(t, g)
	took := time.Since(start)
	close(stop)
	wg.Wait()

	status := "**down**"
	var peak, after procMem
	if processAlive(pid) {
		peak = readProcMem(t, pid)
		time.Sleep(5 * time.Second)
		after = readProcMem(t, pid)
		status = "up, " + g.ready()
		if *attackHeap != "" {
			_, prof := g.do("GET", "/debug/pprof/heap", "", "")
			name := regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(a.name, "_") + ".heap"
			if err := os.WriteFile(filepath.Join(*attackHeap, name), []byte(prof), 0o644); err != nil {
				t.Error(err)
			}
		}
	} else {
		t.Errorf("%s: the gateway died:\n%s", a.name, tail(g.gw.Logs(), 3000))
	}
	if peak.hwm > rssLimit {
		t.Errorf("%s: peak RSS %s MiB, over 1 GiB", a.name, mib(peak.hwm))
	}
	if !strings.Contains(status, "readyz 200") {
		t.Errorf("%s: not ready after the attack: %s\n%s", a.name, status, tail(g.gw.Logs(), 3000))
	}
	t.Logf("%s (%.1f s): %s\nbefore %+v peak %+v (sampled VmRSS %s MiB) after %+v; %s\nlog tail:\n%s",
		a.name, took.Seconds(), answer, before, peak, mib(peakRSS.Load()), after, status, tail(g.gw.Logs(), 1500))
	g.gw.Kill()
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s |", a.name, strings.ReplaceAll(answer, "|", "\\|"),
		mib(before.rss), mib(peak.hwm), mib(after.rss), status)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// apiErr is the error of an admin API answer, cut.
func apiErr(code int, body string) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(body), &e) == nil && e.Error != "" {
		body = e.Error
	}
	return fmt.Sprintf("%d %s", code, cut(body, 110))
}

func rssAttacks() []rssAttack {
	quiet := fmt.Sprintf(quietJob, "OUT")
	return []rssAttack{
		{name: "1 YAML alias bomb, self alias", run: func(t *testing.T, g *attackGW) string {
			laughs := "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
			prev := "a"
			for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
				laughs += n + ": &" + n + " [" + strings.Repeat("*"+prev+",", 8) + "*" + prev + "]\n"
				prev = n
			}
			c1, b1 := g.deploy(laughs)
			c2, b2 := g.deploy("a: &x [*x]")
			return fmt.Sprintf("bomb (%d B): %s; `a: &x [*x]`: %s", len(laughs), apiErr(c1, b1), apiErr(c2, b2))
		}},
		{name: "2 query v+v+…", run: func(t *testing.T, g *attackGW) string {
			job := func(terms int) string {
				return "name: big\nquery: SELECT " + strings.Repeat("v+", terms) + "v AS s INTO o FROM telemetry\n" +
					"inputs: [{name: telemetry}]\noutputs: [{name: o, log: {}}]\n"
			}
			big := job(1_300_000)
			c1, b1 := g.deploy(big)
			under := job((1<<20 - 200) / 2) // just under the 1 MiB body limit: reaches the parser
			c2, b2 := g.deploy(under)
			one := readProcMem(t, g.gw.Pid()).hwm
			var wg sync.WaitGroup
			codes := make([]string, 8)
			for i := range codes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					code, _ := g.deploy(under)
					codes[i] = strconv.Itoa(code)
				}()
			}
			wg.Wait()
			return fmt.Sprintf("%.1f MB: %s; %.2f MB: %s (peak %s MiB); 8 of it in parallel: %s",
				float64(len(big))/1e6, apiErr(c1, b1), float64(len(under))/1e6, apiErr(c2, b2), mib(one), summarize(codes))
		}},
		{name: "3 HoppingWindow(day 7, hop 1 µs)", jobs: quiet, run: func(t *testing.T, g *attackGW) string {
			job := func(hop string) string {
				return "name: hop\nquery: SELECT deviceId, COUNT(*) AS n INTO o FROM telemetry GROUP BY deviceId, HoppingWindow(Duration(day,7), Hop(" + hop + "))\n" +
					"inputs: [{name: telemetry, topic: \"devices/+/messages/events\"}]\noutputs: [{name: o, log: {}}]\n"
			}
			c1, b1 := g.deploy(job("microsecond,1"))
			// The finest hop the limit lets through: 19,507 windows per event.
			c2, b2 := g.deploy(job("second,31"))
			c, err := dialMQTT(g.mqtt, "hopper", true)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			p := newPublisher(c)
			for i := 0; i < 50; i++ { // 50 devices: 975k windows
				id := fmt.Sprintf("dev-%03d", i)
				_ = p.pub(fmt.Sprintf(attackTopic, id), []byte(fmt.Sprintf(`{"deviceId":%q,"v":1}`, id)), false)
			}
			_ = p.flush()
			time.Sleep(8 * time.Second) // two budget checks
			return fmt.Sprintf("hop 1 µs: %s; hop 31 s: %s, then 50 devices' messages: %s", apiErr(c1, b1), apiErr(c2, b2), jobState(g, "hop"))
		}},
		{name: "4 PATINDEX on 60k, REPLICATE('ab', 2^62)", jobs: quiet, run: func(t *testing.T, g *attackGW) string {
			out := filepath.Join(g.dir, "data", "pat.jsonl")
			c1, b1 := g.deploy(fmt.Sprintf("name: pat\nquery: SELECT deviceId, PATINDEX('%%a%%b', x) AS p INTO o FROM telemetry\n"+
				"inputs: [{name: telemetry, topic: \"devices/+/messages/events\"}]\noutputs: [{name: o, file: {path: %q}}]\n", out))
			c2, b2 := g.deploy("name: rep\nquery: SELECT deviceId, LEN(REPLICATE('ab', 4611686018427387904)) AS r INTO o FROM telemetry\n" +
				"inputs: [{name: telemetry, topic: \"devices/+/messages/events\"}]\noutputs: [{name: o, log: {}}]\n")
			c3, b3 := g.deploy("name: rep2\nquery: SELECT deviceId, LEN(REPLICATE(x, n)) AS r INTO o FROM telemetry\n" +
				"inputs: [{name: telemetry, topic: \"devices/+/messages/events\"}]\noutputs: [{name: o, log: {}}]\n")
			c, err := dialMQTT(g.mqtt, "pat", true)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			p := newPublisher(c)
			sent := time.Now()
			_ = p.pub(fmt.Sprintf(attackTopic, "pat"), []byte(`{"deviceId":"pat","n":4611686018427387904,"x":"`+strings.Repeat("a", 60_000)+`"}`), false)
			_ = p.flush()
			var took time.Duration
			for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
				if b, _ := os.ReadFile(out); len(b) > 0 {
					took = time.Since(sent)
					break
				}
			}
			time.Sleep(2 * time.Second)
			_, dl := g.do("GET", "/v1/deadletters", "", "")
			return fmt.Sprintf("PATINDEX job: %s, its row %v after the publish; REPLICATE('ab', 2^62): %s; REPLICATE(x, 2^62) per event: %s, dead letters: %s",
				apiErr(c1, b1), took.Round(time.Millisecond), apiErr(c2, b2), apiErr(c3, b3), cut(reasons(dl), 120))
		}},
		{name: "5 raw 250 MB publish, then 8 in parallel", run: func(t *testing.T, g *attackGW) string {
			one := hugePublish(g.mqtt, "big-0")
			var wg sync.WaitGroup
			res := make([]string, 8)
			for i := range res {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res[i] = hugePublish(g.mqtt, fmt.Sprintf("big-%d", i+1))
				}()
			}
			wg.Wait()
			return fmt.Sprintf("one: %s; 8 parallel: %s", one, summarize(res))
		}},
		{name: "6a 8,000 connections, then past max_connections", run: func(t *testing.T, g *attackGW) string {
			var conns []*mqttConn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			refused := map[string]int{}
			var firstRefusal int
			for i := 0; i < 10_200; i++ {
				c, err := dialMQTT(g.mqtt, fmt.Sprintf("c%05d", i), false)
				if err != nil {
					if len(refused) == 0 {
						firstRefusal = i
					}
					refused[cut(err.Error(), 40)]++
					continue
				}
				conns = append(conns, c)
				if i == 7_999 {
					t.Logf("8,000 connections: %+v", readProcMem(t, g.gw.Pid()))
				}
			}
			n := len(conns)
			for _, c := range conns {
				c.Close()
			}
			conns = nil
			time.Sleep(2 * time.Second)
			return fmt.Sprintf("%d of 10,200 accepted, refusals from #%d: %v; connections open after close: %v, refused (limit): %v", n, firstRefusal, refused,
				g.metric("millstream_mqtt_connections"), g.metric(`millstream_mqtt_connect_refused_total{reason="limit"}`))
		}},
		{name: "6b 1,500 retained 200 KiB messages", run: func(t *testing.T, g *attackGW) string {
			c, err := dialMQTT(g.mqtt, "retainer", true)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			p := newPublisher(c)
			payload := []byte(strings.Repeat("r", 200<<10))
			for i := 0; i < 1500; i++ {
				if err := p.pub(fmt.Sprintf("plant/retained/%04d", i), payload, true); err != nil {
					return fmt.Sprintf("publish %d: %v", i, err)
				}
			}
			_ = p.flush()
			time.Sleep(3 * time.Second)
			return fmt.Sprintf("all taken; retained dropped: %v", g.metric("millstream_mqtt_retained_dropped_total"))
		}},
		{name: "7a COUNT(DISTINCT) 400k keys, max_state_bytes 16 MiB", jobs: distinctJob(16 << 20), run: distinctAttack},
		{name: "7b COUNT(DISTINCT) 400k keys, default budget", jobs: distinctJob(0), run: distinctAttack},
		{name: "7c control: the same 400k messages, no COUNT(DISTINCT)", jobs: quiet, run: func(t *testing.T, g *attackGW) string {
			distinctFlood(t, g)
			time.Sleep(5 * time.Second)
			return "taken: " + jobState(g, "quiet")
		}},
		{name: "8a /v1/devices, 100k devices", jobs: quiet, run: func(t *testing.T, g *attackGW) string {
			publishDevices(t, g, 100_000, 4, 20)
			code, body := g.do("GET", "/v1/devices", "", "")
			codeMax, bodyMax := g.do("GET", "/v1/devices?limit=5000", "", "")
			// Walk every page.
			pages, n := 0, 0
			after := ""
			for {
				code, body := g.do("GET", "/v1/devices?limit=5000&after="+after, "", "")
				var page struct {
					Devices []json.RawMessage `json:"devices"`
					Next    string            `json:"next"`
				}
				if code != 200 || json.Unmarshal([]byte(body), &page) != nil {
					break
				}
				pages++
				n += len(page.Devices)
				if page.Next == "" {
					break
				}
				after = page.Next
			}
			return fmt.Sprintf("default page: %d, %d KB; limit=5000: %d, %d KB; all %d devices in %d pages", code, len(body)/1000, codeMax, len(bodyMax)/1000, n, pages)
		}},
		{name: "8b 4,000 devices sending 200 KiB payloads", jobs: quiet, run: func(t *testing.T, g *attackGW) string {
			publishDevices(t, g, 4_000, 4, 200<<10)
			code, body := g.do("GET", "/v1/devices?limit=1", "", "")
			return fmt.Sprintf("all taken; /v1/devices?limit=1: %d %s", code, cut(body, 80))
		}},
	}
}

// reasons lists the reasons of a /v1/deadletters answer.
func reasons(body string) string {
	var dl struct {
		DeadLetters []struct {
			Reason string `json:"reason"`
		} `json:"deadLetters"`
	}
	if json.Unmarshal([]byte(body), &dl) != nil || len(dl.DeadLetters) == 0 {
		return cut(body, 120)
	}
	var r []string
	for _, d := range dl.DeadLetters {
		r = append(r, d.Reason)
	}
	return strings.Join(r, "; ")
}

func summarize(res []string) string {
	count := map[string]int{}
	var order []string
	for _, r := range res {
		if count[r] == 0 {
			order = append(order, r)
		}
		count[r]++
	}
	var out []string
	for _, r := range order {
		out = append(out, fmt.Sprintf("%d× %s", count[r], r))
	}
	return strings.Join(out, ", ")
}

// hugePublish connects and streams a PUBLISH that claims 250 MB, and
// says how much the gateway read before it closed the connection.
func hugePublish(addr, id string) string {
	c, err := dialMQTT(addr, id, true)
	if err != nil {
		return "connect: " + err.Error()
	}
	defer c.Close()
	const claimed = 250_000_000
	topic := fmt.Sprintf(attackTopic, id)
	hdr := mqttwire.AppendRemaining([]byte{0x30}, claimed)
	hdr = append(hdr, byte(len(topic)>>8), byte(len(topic)))
	hdr = append(hdr, topic...)
	_ = c.SetWriteDeadline(time.Now().Add(60 * time.Second))
	sent, err := c.Write(hdr)
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = 'x'
	}
	for err == nil && sent < claimed {
		var n int
		n, err = c.Write(chunk[:min(len(chunk), claimed-sent)])
		sent += n
	}
	if err == nil {
		return "all 250 MB taken"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Sprintf("stalled after %d MB", sent>>20)
	}
	return fmt.Sprintf("closed after %.1f MB sent", float64(sent)/1e6)
}

func distinctJob(budget int) string {
	b := ""
	if budget > 0 {
		b = fmt.Sprintf("    max_state_bytes: %d\n", budget)
	}
	return `  - name: distinct
    query: SELECT COUNT(DISTINCT x) AS n INTO o FROM telemetry GROUP BY TumblingWindow(hour, 1)
    inputs: [{name: telemetry, topic: "devices/+/messages/events"}]
    outputs: [{name: o, file: {path: "OUT"}}]
` + b
}

// distinctAttack sends 400k distinct keys from 4 devices.
func distinctAttack(t *testing.T, g *attackGW) string {
	distinctFlood(t, g)
	// Until every event is in (or the job stopped), then two budget checks.
	for end := time.Now().Add(120 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		_, body := g.do("GET", "/v1/jobs/distinct", "", "")
		if strings.Contains(g.ready(), "stopped") || strings.Contains(body, fmt.Sprintf(`"EventsIn":%d`, distinctKeys)) {
			break
		}
	}
	time.Sleep(5 * time.Second)
	return jobState(g, "distinct")
}

const distinctKeys = 400_000

// distinctFlood publishes distinctKeys QoS 0 messages, each with its own
// key x, from 4 devices at once.
func distinctFlood(t *testing.T, g *attackGW) {
	const keys, devices = distinctKeys, 4
	var wg sync.WaitGroup
	for d := 0; d < devices; d++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("counter-%d", d)
			c, err := dialMQTT(g.mqtt, id, true)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			p := newPublisher(c)
			topic := fmt.Sprintf(attackTopic, id)
			for k := d; k < keys; k += devices {
				if err := p.pub(topic, []byte(fmt.Sprintf(`{"deviceId":%q,"x":"key-%07d"}`, id, k)), false); err != nil {
					t.Error(err)
					return
				}
			}
			_ = p.flush()
		}()
	}
	wg.Wait()
}

// jobState is a job's status (from the /v1/jobs listing, which keeps a
// stopped job) and its events in (/v1/jobs/{name}).
func jobState(g *attackGW, name string) string {
	_, list := g.do("GET", "/v1/jobs", "", "")
	var jobs struct {
		Jobs []struct {
			Name       string `json:"name"`
			StateBytes int64  `json:"stateBytes"`
			Budget     int64  `json:"budgetBytes"`
			Stopped    string `json:"stopped"`
		} `json:"jobs"`
	}
	_ = json.Unmarshal([]byte(list), &jobs)
	events := "?"
	if code, body := g.do("GET", "/v1/jobs/"+name, "", ""); code == http.StatusOK {
		var j struct {
			Counters struct{ EventsIn uint64 } `json:"counters"`
		}
		_ = json.Unmarshal([]byte(body), &j)
		events = strconv.FormatUint(j.Counters.EventsIn, 10)
	}
	for _, j := range jobs.Jobs {
		if j.Name != name {
			continue
		}
		if j.Stopped != "" {
			return fmt.Sprintf("%s events in, job %s", events, cut(j.Stopped, 90))
		}
		return fmt.Sprintf("%s events in, job running, state estimate %s MiB of %s MiB", events, mib(j.StateBytes), mib(j.Budget))
	}
	return "job " + name + " not listed"
}

// publishDevices publishes one message of size bytes from each of n
// devices over conns connections.
func publishDevices(t *testing.T, g *attackGW, n, conns, size int) {
	var wg sync.WaitGroup
	pad := strings.Repeat("p", size)
	for k := 0; k < conns; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialMQTT(g.mqtt, fmt.Sprintf("fleet-%d", k), true)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			p := newPublisher(c)
			for i := k; i < n; i += conns {
				id := fmt.Sprintf("d%06d", i)
				if err := p.pub(fmt.Sprintf(attackTopic, id), []byte(fmt.Sprintf(`{"deviceId":%q,"v":1,"pad":%q}`, id, pad)), false); err != nil {
					t.Error(err)
					return
				}
			}
			_ = p.flush()
		}()
	}
	wg.Wait()
	time.Sleep(5 * time.Second)
}
