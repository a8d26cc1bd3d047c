package deployments

// The deployment manifests (container, compose, systemd, Kubernetes,
// Grafana) are not code, so nothing else notices when they drift from the
// gateway: a renamed setting, a port changed on one side, a probe on a
// path the admin API does not serve, a grace period shorter than the
// drain, a dashboard over a metric that was renamed. These tests read
// them as the tools would (YAML, JSON, the Dockerfile's and the unit's
// instructions), load every gateway configuration with the real loader
// (so the exposure rules apply), and check each manifest against the
// configuration it runs and against the source: the admin API's routes,
// the metric names and the drain timeout are read from the repository's
// Go files at test time. No network, no docker, no cluster.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/millstream/millstream/internal/config"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// closeAllowance is how long a gateway may take to close after its drain
// (cmd/millstream/gateway.go closes with a 10 s deadline): a stop grace
// period must exceed the drain plus this.
const closeAllowance = 10 * time.Second

// repo is the repository root, seen from this package's directory (where
// go test runs).
const repo = ".."

// gatewayConfigs are the shipped gateway configurations, relative to
// deployments/; the Kubernetes one is a template, rendered and loaded in
// TestKubernetes.
var gatewayConfigs = []string{
	"single-gateway/gateway.yaml",
	"cluster/gw1.yaml", "cluster/gw2.yaml", "cluster/gw3.yaml",
	"container/gateway.yaml", "container/gateway-lab.yaml",
	"compose/gw1.yaml", "compose/gw2.yaml", "compose/gw3.yaml",
	"systemd/gateway.yaml",
}

// insecureConfigs may set insecure: true: the documented lab variants.
var insecureConfigs = map[string]bool{"container/gateway-lab.yaml": true}

// TestManifestsParse parses every YAML and JSON file under deployments/
// (all documents of each), so that none is broken, and checks that every
// gateway configuration and compose/Kubernetes manifest this package
// knows is among them.
func TestManifestsParse(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "secrets" || d.Name() == "data") {
			return filepath.SkipDir // made by the setup scripts, not shipped
		}
		switch filepath.Ext(path) {
		case ".yaml", ".yml":
			docs := yamlDocs(t, path)
			if len(docs) == 0 {
				t.Errorf("%s: no YAML document", path)
			}
			n++
		case ".json":
			var v any
			if err := json.Unmarshal(readFile(t, path), &v); err != nil {
				t.Errorf("%s: %v", path, err)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < len(gatewayConfigs)+5 {
		t.Errorf("parsed only %d manifest files under deployments/", n)
	}
}

// TestGatewayConfigsLoad loads every shipped gateway configuration with
// config.LoadGateway, which also applies the exposure rules (a listener
// off loopback without TLS and authentication is refused unless
// insecure), and checks that only the lab variant is insecure.
func TestGatewayConfigsLoad(t *testing.T) {
	for _, path := range gatewayConfigs {
		g := loadGateway(t, path)
		exposed := config.Exposures(g)
		if insecureConfigs[path] {
			if !g.Insecure || len(exposed) == 0 {
				t.Errorf("%s: the lab variant should be insecure with exposed listeners (insecure %v, exposures %q)", path, g.Insecure, exposed)
			}
			if !bytes.Contains(readFile(t, path), []byte("INSECURE")) {
				t.Errorf("%s: an insecure configuration must say so loudly (INSECURE) in a comment", path)
			}
			continue
		}
		if g.Insecure {
			t.Errorf("%s: sets insecure; every shipped configuration but the lab variant must be secure", path)
		}
		if len(exposed) > 0 {
			t.Errorf("%s: exposed listeners: %q", path, exposed)
		}
	}
	// The one-machine cluster: distinct names and ports.
	names, ports := map[string]string{}, map[string]string{}
	for _, path := range []string{"cluster/gw1.yaml", "cluster/gw2.yaml", "cluster/gw3.yaml"} {
		g := loadGateway(t, path)
		if g.Cluster == nil {
			t.Errorf("%s: no cluster section", path)
			continue
		}
		if p := names[g.Name]; p != "" {
			t.Errorf("%s and %s: both name the gateway %q", p, path, g.Name)
		}
		names[g.Name] = path
		for _, l := range listeners(g) {
			if p := ports[l.key()]; p != "" && p != path {
				t.Errorf("%s and %s: both listen on port %s", p, path, l.key())
			}
			ports[l.key()] = path
		}
	}
}

// TestSingleGateway checks the single-gateway example is standalone and
// on loopback (it runs without certificates).
func TestSingleGateway(t *testing.T) {
	g := loadGateway(t, "single-gateway/gateway.yaml")
	if g.Cluster != nil {
		t.Error("single-gateway/gateway.yaml has a cluster section")
	}
	for _, l := range listeners(g) {
		if !l.loopback {
			t.Errorf("single-gateway/gateway.yaml: %s %s is off loopback", l.setting, l.addr)
		}
	}
}

// --- gateway configurations ---

func loadGateway(t *testing.T, path string) *pb.GatewayConfig {
	t.Helper()
	g, err := config.LoadGateway(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	return g
}

// listener is one socket a gateway listens on.
type listener struct {
	setting  string // the configuration field
	addr     string
	host     string
	port     int
	proto    string // tcp or udp
	loopback bool
}

// key is "PORT/PROTO", as EXPOSE and Kubernetes name a port.
func (l listener) key() string { return fmt.Sprintf("%d/%s", l.port, l.proto) }

// listeners lists what a (defaulted) gateway configuration listens on:
// the embedded broker, its MQTTS listener, the admin API, and in a
// cluster gossip (TCP and UDP) and the cluster link.
func listeners(g *pb.GatewayConfig) []listener {
	var out []listener
	add := func(setting, addr string, protos ...string) {
		host, p, err := net.SplitHostPort(addr)
		port, perr := strconv.Atoi(p)
		if err != nil || perr != nil {
			panic(fmt.Sprintf("%s %q: not host:port", setting, addr))
		}
		for _, proto := range protos {
			out = append(out, listener{setting, addr, host, port, proto, config.IsLoopback(addr)})
		}
	}
	if g.MqttListen != config.EmbeddedBrokerOff {
		add("mqtt_listen", g.MqttListen, "tcp")
	}
	if a := g.GetMqtt().GetTlsListen(); a != "" {
		add("mqtt.tls_listen", a, "tcp")
	}
	add("http_listen", g.HttpListen, "tcp")
	if c := g.Cluster; c != nil {
		gossip, remote := c.GossipListen, c.RemoteListen
		if gossip == "" {
			gossip = "127.0.0.1:7946"
		}
		if remote == "" {
			remote = "127.0.0.1:7947"
		}
		add("cluster.gossip_listen", gossip, "tcp", "udp")
		add("cluster.remote_listen", remote, "tcp")
	}
	return out
}

// listenerOf returns the listener of a setting (its TCP one).
func listenerOf(t *testing.T, g *pb.GatewayConfig, setting string) listener {
	t.Helper()
	for _, l := range listeners(g) {
		if l.setting == setting && l.proto == "tcp" {
			return l
		}
	}
	t.Fatalf("gateway %s: no %s", g.Name, setting)
	return listener{}
}

// exposedPorts are the "PORT/PROTO" a gateway listens on off loopback:
// what a container must publish.
func exposedPorts(g *pb.GatewayConfig) map[string]bool {
	out := map[string]bool{}
	for _, l := range listeners(g) {
		if !l.loopback {
			out[l.key()] = true
		}
	}
	return out
}

// fileSettings are the files a gateway configuration names (certificates,
// keys, credentials), by setting.
func fileSettings(g *pb.GatewayConfig) map[string]string {
	out := map[string]string{}
	tlsFiles := func(prefix string, t *pb.ServerTLS) {
		for k, v := range map[string]string{"cert_file": t.GetCertFile(), "key_file": t.GetKeyFile(), "ca_file": t.GetCaFile()} {
			if v != "" {
				out[prefix+"."+k] = v
			}
		}
	}
	tlsFiles("admin.tls", g.GetAdmin().GetTls())
	tlsFiles("mqtt.tls", g.GetMqtt().GetTls())
	tlsFiles("cluster.tls", g.GetCluster().GetTls())
	for k, v := range map[string]string{"admin.tokens_file": g.GetAdmin().GetTokensFile(),
		"mqtt.password_file": g.GetMqtt().GetPasswordFile(), "cluster.gossip_key_file": g.GetCluster().GetGossipKeyFile()} {
		if v != "" {
			out[k] = v
		}
	}
	return out
}

// adminScheme is the scheme of a gateway's admin API.
func adminScheme(g *pb.GatewayConfig) string {
	if g.GetAdmin().GetTls().GetCertFile() != "" {
		return "https"
	}
	return "http"
}

// checkProbeURL checks a health check's URL against a gateway: the admin
// API's scheme and port, a GET route it serves, and the paths allowed.
func checkProbeURL(t *testing.T, where string, g *pb.GatewayConfig, scheme string, port int, path string, allowed ...string) {
	t.Helper()
	admin := listenerOf(t, g, "http_listen")
	if !strings.EqualFold(scheme, adminScheme(g)) {
		t.Errorf("%s: probes over %s, the admin API of %s serves %s", where, scheme, g.Name, adminScheme(g))
	}
	if port != admin.port {
		t.Errorf("%s: probes port %d, the admin API of %s listens on %s", where, port, g.Name, admin.addr)
	}
	if !adminRoutes(t)[path] {
		t.Errorf("%s: the admin API serves no GET %s", where, path)
	}
	if !slices.Contains(allowed, path) {
		t.Errorf("%s: probes %s, want one of %v", where, path, allowed)
	}
}

// --- facts read from the source ---

// sourceCache holds sourceFiles' answer (the tests do not run in
// parallel).
var sourceCache map[string]string

// sourceFiles are the non-test Go files of the packages a gateway runs.
func sourceFiles(t *testing.T) map[string]string {
	t.Helper()
	if sourceCache != nil {
		return sourceCache
	}
	out := map[string]string{}
	for _, dir := range []string{"actors", "cluster", "cmd/millstream", "internal", "state"} {
		err := filepath.WalkDir(filepath.Join(repo, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			out[path] = string(readFile(t, path))
			return nil
		})
		if err != nil {
			t.Fatalf("read the source: %v", err)
		}
	}
	sourceCache = out
	return out
}

var routeRE = regexp.MustCompile(`"GET (/[^" {]*)"`)

// adminRoutes are the GET paths the admin API registers (actors/admin).
func adminRoutes(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for path, src := range sourceFiles(t) {
		if filepath.Base(filepath.Dir(path)) != "admin" || !strings.Contains(path, "actors") {
			continue
		}
		for _, m := range routeRE.FindAllStringSubmatch(src, -1) {
			out[m[1]] = true
		}
	}
	if !out["/healthz"] || !out["/metrics"] {
		t.Fatalf("found no /healthz or /metrics among the admin API's routes %v: has actors/admin moved?", out)
	}
	return out
}

var drainRE = regexp.MustCompile(`drainTimeout\s*=\s*(\d+)\s*\*\s*time\.Second`)

// drainTimeout is how long SIGTERM may drain a clustered gateway
// (cmd/millstream: const drainTimeout).
func drainTimeout(t *testing.T) time.Duration {
	t.Helper()
	for _, src := range sourceFiles(t) {
		if m := drainRE.FindStringSubmatch(src); m != nil {
			n, _ := strconv.Atoi(m[1])
			return time.Duration(n) * time.Second
		}
	}
	t.Fatal("no drainTimeout = N * time.Second in cmd/millstream: how long does SIGTERM drain now?")
	return 0
}

// checkGrace checks that a stop grace period covers the drain and close.
func checkGrace(t *testing.T, where string, grace time.Duration) {
	t.Helper()
	if need := drainTimeout(t) + closeAllowance; grace <= need {
		t.Errorf("%s: %v to stop; a clustered gateway drains for up to %v and closes for up to %v: give it more than %v",
			where, grace, drainTimeout(t), closeAllowance, need)
	}
}

var (
	metricRE = regexp.MustCompile(`(?:NewDesc\(\s*|Name:\s*)"(millstream_[a-z0-9_]+)"`)
	labelsRE = regexp.MustCompile(`\[\]string\{([^}]*)\}`)
	quotedRE = regexp.MustCompile(`"([a-z_]+)"`)
)

// metrics maps each metric the gateway defines (prometheus.NewDesc and
// the Opts of histograms and counters) to the labels that may follow it
// in its definition.
func metrics(t *testing.T) map[string]map[string]bool {
	t.Helper()
	out := map[string]map[string]bool{}
	for _, src := range sourceFiles(t) {
		for _, loc := range metricRE.FindAllStringSubmatchIndex(src, -1) {
			name := src[loc[2]:loc[3]]
			labels := map[string]bool{}
			// The label list ends the definition: look a few lines on.
			rest := src[loc[1]:min(len(src), loc[1]+600)]
			if end := strings.Index(rest, "\n\tdesc"); end >= 0 {
				rest = rest[:end]
			}
			if m := labelsRE.FindStringSubmatch(rest); m != nil {
				for _, q := range quotedRE.FindAllStringSubmatch(m[1], -1) {
					labels[q[1]] = true
				}
			}
			out[name] = labels
		}
	}
	if len(out) < 20 {
		t.Fatalf("found only %d metric definitions in the source: has the way metrics are defined changed?", len(out))
	}
	return out
}

// --- file helpers ---

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, path)))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// get walks decoded YAML or JSON: a string steps into a map, an int into
// a list; nil when a step is missing.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func getS(v any, path ...any) string {
	switch x := get(v, path...).(type) {
	case string:
		return x
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}

func getL(v any, path ...any) []any {
	l, _ := get(v, path...).([]any)
	return l
}

func getInt(v any, path ...any) int {
	n, err := strconv.Atoi(getS(v, path...))
	if err != nil {
		return -1
	}
	return n
}

// under says whether file lies in dir (or is dir).
func under(file, dir string) bool {
	rel, err := filepath.Rel(dir, file)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
