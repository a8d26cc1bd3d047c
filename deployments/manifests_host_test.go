package deployments

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd   string // upper case
	args  string
	stage int // index of the FROM it follows
}

func dockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	var out []instruction
	stage := -1
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, path)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		cur.Reset()
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, instruction{cmd, strings.TrimSpace(args), stage})
	}
	return out
}

// execForm decodes a JSON-array (exec form) argument.
func execForm(t *testing.T, where, args string) []string {
	t.Helper()
	var l []string
	if err := json.Unmarshal([]byte(args), &l); err != nil {
		t.Fatalf("%s %s: want the exec form [\"...\"]: %v", where, args, err)
	}
	return l
}

var goVersionRE = regexp.MustCompile(`(?m)^go (\d+\.\d+)`)

// TestDockerfile checks the image: a static, reproducible build with the
// Go of go.mod, a non-root numeric user, the state volume at the data
// directory, EXPOSE equal to the ports the container configurations
// listen on off loopback, a HEALTHCHECK on the admin API, SIGTERM, and a
// default command that runs the configuration it copies in.
func TestDockerfile(t *testing.T) {
	const path = "container/Dockerfile"
	ins := dockerfile(t, path)
	last := 0
	for _, in := range ins {
		last = max(last, in.stage)
	}
	if last < 1 {
		t.Fatalf("%s: want a multi-stage build (a build stage and a runtime stage)", path)
	}
	final := map[string][]string{}
	var build []string
	for _, in := range ins {
		if in.stage == last {
			final[in.cmd] = append(final[in.cmd], in.args)
		} else if in.cmd == "FROM" || in.cmd == "RUN" {
			build = append(build, in.args)
		}
	}
	buildText := strings.Join(build, "\n")

	goMod := goVersionRE.FindSubmatch(readFile(t, filepath.Join(repo, "go.mod")))
	if goMod == nil {
		t.Fatal("go.mod: no go line")
	}
	if want := "golang:" + string(goMod[1]); !strings.Contains(buildText, want+" ") {
		t.Errorf("%s: the build stage should be FROM %s (go.mod says go %s)", path, want, goMod[1])
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/millstream"} {
		if !strings.Contains(buildText, want) {
			t.Errorf("%s: the build stage does not use %s", path, want)
		}
	}

	one := func(cmd string) string {
		t.Helper()
		if len(final[cmd]) != 1 {
			t.Fatalf("%s: want one %s in the runtime stage, have %q", path, cmd, final[cmd])
		}
		return final[cmd][0]
	}
	user, _, _ := strings.Cut(one("USER"), ":")
	if uid, err := strconv.Atoi(user); err != nil || uid == 0 {
		t.Errorf("%s: USER %s: want a numeric non-root uid (Kubernetes' runAsNonRoot can only check a number)", path, user)
	}
	if got := one("STOPSIGNAL"); got != "SIGTERM" {
		t.Errorf("%s: STOPSIGNAL %s: SIGTERM drains a clustered gateway", path, got)
	}

	// The default configuration: copied to where CMD reads it.
	def := loadGateway(t, "container/gateway.yaml")
	var copied string
	for _, c := range final["COPY"] {
		f := strings.Fields(c)
		if len(f) >= 2 && f[0] == "deployments/container/gateway.yaml" {
			copied = f[len(f)-1]
		}
		if !strings.HasPrefix(f[0], "--from") {
			if _, err := os.Stat(filepath.Join(repo, f[0])); err != nil {
				t.Errorf("%s: COPY %s: %v", path, f[0], err)
			}
		}
	}
	cmd := execForm(t, path+" CMD", one("CMD"))
	if len(cmd) != 3 || cmd[0] != "gateway" || cmd[1] != "--config" || cmd[2] != copied || copied == "" {
		t.Errorf("%s: CMD %q should run \"gateway --config\" on the configuration copied in (%q)", path, cmd, copied)
	}
	if ep := execForm(t, path+" ENTRYPOINT", one("ENTRYPOINT")); len(ep) != 1 || filepath.Base(ep[0]) != "millstream" {
		t.Errorf("%s: ENTRYPOINT %q: want the millstream binary", path, ep)
	}

	// State: the volume and working directory are the data directory.
	if v := strings.Trim(one("VOLUME"), `[]" `); v != def.DataDir {
		t.Errorf("%s: VOLUME %s, but container/gateway.yaml keeps its state in %s", path, v, def.DataDir)
	}
	if w := one("WORKDIR"); w != def.DataDir {
		t.Errorf("%s: WORKDIR %s: relative job paths should resolve in the data directory %s", path, w, def.DataDir)
	}

	// EXPOSE: exactly the ports the container configurations open off
	// loopback.
	expose := map[string]bool{}
	for _, p := range strings.Fields(one("EXPOSE")) {
		if !strings.Contains(p, "/") {
			p += "/tcp"
		}
		expose[p] = true
	}
	listened := map[string]string{}
	containerConfigs := map[string]*pb.GatewayConfig{}
	for _, p := range []string{"container/gateway.yaml", "container/gateway-lab.yaml", "compose/gw1.yaml", "compose/gw2.yaml", "compose/gw3.yaml"} {
		containerConfigs[p] = loadGateway(t, p)
	}
	for name, g := range renderKubernetes(t).configs {
		containerConfigs["kubernetes "+name] = g
	}
	for where, g := range containerConfigs {
		for p := range exposedPorts(g) {
			listened[p] = where
			if !expose[p] {
				t.Errorf("%s: %s listens on %s off loopback, which EXPOSE does not list", path, where, p)
			}
		}
	}
	for p := range expose {
		if listened[p] == "" {
			t.Errorf("%s: EXPOSE %s, which no container configuration listens on", path, p)
		}
	}

	// HEALTHCHECK: the URL in MILLSTREAM_HEALTH_URL, on the default
	// configuration's admin API (and the lab variant's, as its comment
	// says to set it).
	hc := one("HEALTHCHECK")
	if !strings.Contains(hc, "$MILLSTREAM_HEALTH_URL") {
		t.Fatalf("%s: HEALTHCHECK %s should probe $MILLSTREAM_HEALTH_URL", path, hc)
	}
	var healthURL string
	for _, e := range final["ENV"] {
		if v, ok := strings.CutPrefix(e, "MILLSTREAM_HEALTH_URL="); ok {
			healthURL = v
		}
	}
	checkURL(t, path+" HEALTHCHECK", def, healthURL, "/healthz", "/readyz")
	lab := regexp.MustCompile(`MILLSTREAM_HEALTH_URL=(\S+)`).FindSubmatch(readFile(t, "container/gateway-lab.yaml"))
	if lab == nil {
		t.Fatal("container/gateway-lab.yaml: its comment should say which MILLSTREAM_HEALTH_URL to run it with")
	}
	checkURL(t, "container/gateway-lab.yaml's docker run", loadGateway(t, "container/gateway-lab.yaml"), string(lab[1]), "/healthz", "/readyz")
}

// checkURL checks a probe given as a URL against a gateway.
func checkURL(t *testing.T, where string, g *pb.GatewayConfig, raw string, allowed ...string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Port() == "" {
		t.Fatalf("%s: probe URL %q: want scheme://host:port/path", where, raw)
	}
	port, _ := strconv.Atoi(u.Port())
	checkProbeURL(t, where, g, u.Scheme, port, u.Path, allowed...)
	return u
}

// unit is a systemd unit file: section, key, every value in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, path)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: %q is not KEY=VALUE in a section", path, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// last is a setting's effective value (the last assignment).
func (u unit) last(section, key string) (string, bool) {
	v := u[section][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// TestSystemdUnit checks the service runs the shipped configuration from
// its configuration directory, keeps state in its state directory, gives
// the drain time to finish, and keeps its hardening.
func TestSystemdUnit(t *testing.T) {
	const path = "systemd/millstream.service"
	u := parseUnit(t, path)
	svc := func(key string) string {
		t.Helper()
		v, ok := u.last("Service", key)
		if !ok {
			t.Errorf("%s: [Service] has no %s", path, key)
		}
		return v
	}

	start := strings.Fields(svc("ExecStart"))
	i := slices.Index(start, "--config")
	if len(start) < 4 || filepath.Base(start[0]) != "millstream" || start[1] != "gateway" || i < 0 || i+1 >= len(start) {
		t.Fatalf("%s: ExecStart %q: want millstream gateway --config PATH", path, start)
	}
	cfgPath := start[i+1]
	if want := "/etc/" + svc("ConfigurationDirectory") + "/" + filepath.Base("systemd/gateway.yaml"); cfgPath != want {
		t.Errorf("%s: ExecStart reads %s; the shipped systemd/gateway.yaml installs as %s (ConfigurationDirectory)", path, cfgPath, want)
	}
	if pre, ok := u.last("Service", "ExecStartPre"); ok && !strings.Contains(pre, "--config "+cfgPath) {
		t.Errorf("%s: ExecStartPre %s checks another configuration than ExecStart's %s", path, pre, cfgPath)
	}
	g := loadGateway(t, "systemd/gateway.yaml")
	if want := "/var/lib/" + svc("StateDirectory"); g.DataDir != want {
		t.Errorf("systemd/gateway.yaml: data_dir %s, but the unit's StateDirectory (the only place it may write) is %s", g.DataDir, want)
	}
	if w := svc("WorkingDirectory"); w != g.DataDir {
		t.Errorf("%s: WorkingDirectory %s: relative job paths should resolve in the data directory %s", path, w, g.DataDir)
	}
	for _, l := range listeners(g) {
		if !l.loopback {
			t.Errorf("systemd/gateway.yaml: %s %s off loopback; the unit ships no certificates", l.setting, l.addr)
		}
	}

	stop, err := time.ParseDuration(strings.ReplaceAll(svc("TimeoutStopSec"), "sec", "s"))
	if err != nil {
		if n, err2 := strconv.Atoi(svc("TimeoutStopSec")); err2 == nil {
			stop = time.Duration(n) * time.Second
		} else {
			t.Fatalf("%s: TimeoutStopSec %q: %v", path, svc("TimeoutStopSec"), err)
		}
	}
	checkGrace(t, path+" TimeoutStopSec", stop)
	if v, ok := u.last("Service", "KillSignal"); ok && v != "SIGTERM" {
		t.Errorf("%s: KillSignal %s: SIGTERM drains the gateway", path, v)
	}

	for key, want := range map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"CapabilityBoundingSet": "", "Restart": "on-failure", "DynamicUser": "yes",
	} {
		if got := svc(key); got != want {
			t.Errorf("%s: %s=%s, want %s=%s", path, key, got, key, want)
		}
	}
	if svc("LimitNOFILE") == "" {
		t.Errorf("%s: LimitNOFILE is empty", path)
	}
	if fams := svc("RestrictAddressFamilies"); !strings.Contains(fams, "AF_INET") || !strings.Contains(fams, "AF_INET6") {
		t.Errorf("%s: RestrictAddressFamilies=%s lacks AF_INET or AF_INET6", path, fams)
	}
	if !slices.Contains(u["Service"]["SystemCallFilter"], "@system-service") {
		t.Errorf("%s: no SystemCallFilter=@system-service", path)
	}
	if _, ok := u.last("Install", "WantedBy"); !ok {
		t.Errorf("%s: no [Install] WantedBy", path)
	}
}
