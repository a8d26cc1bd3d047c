package deployments

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// image is what the Dockerfile's runtime stage fixes: where the default
// command reads its configuration, and the uid it runs as.
func image(t *testing.T) (configPath string, uid int) {
	t.Helper()
	for _, in := range dockerfile(t, "container/Dockerfile") {
		switch in.cmd {
		case "CMD":
			if cmd := execForm(t, "CMD", in.args); len(cmd) == 3 {
				configPath = cmd[2]
			}
		case "USER":
			u, _, _ := strings.Cut(in.args, ":")
			uid, _ = strconv.Atoi(u)
		}
	}
	return configPath, uid
}

// TestCompose checks compose.yaml against the gateway configurations it
// mounts: published ports, the state volume, the mounted certificates
// and credentials, the health check, the stop grace period, each
// gateway's fixed address and seeds, and the broker they read.
func TestCompose(t *testing.T) {
	const path = "compose/compose.yaml"
	docs := yamlDocs(t, path)
	if len(docs) != 1 {
		t.Fatalf("%s: want one document", path)
	}
	c := docs[0]
	services, _ := get(c, "services").(map[string]any)
	imageConfig, _ := image(t)
	setup := string(readFile(t, "compose/setup.sh"))
	mosquittoConf := string(readFile(t, "compose/mosquitto.conf"))

	gateways := map[string]*pb.GatewayConfig{}
	for _, name := range sortedKeys(services) {
		s := services[name]
		var cfgPath string
		mounts := map[string]string{} // target -> source
		for _, v := range getL(s, "volumes") {
			f := strings.Split(fmt.Sprint(v), ":")
			if len(f) < 2 {
				t.Fatalf("%s: service %s: volume %q: want SOURCE:TARGET", path, name, v)
			}
			mounts[f[1]] = f[0]
			if f[1] == imageConfig {
				cfgPath = filepath.Join("compose", f[0])
			}
		}
		if cfgPath == "" {
			continue // not a gateway
		}
		where := path + " service " + name
		if getS(s, "command") != "" {
			t.Errorf("%s: overrides the image's command; mount its configuration at %s instead", where, imageConfig)
		}
		g := loadGateway(t, cfgPath)
		gateways[name] = g

		// State on a named volume at data_dir.
		if src, ok := mounts[g.DataDir]; !ok {
			t.Errorf("%s: nothing mounted at data_dir %s", where, g.DataDir)
		} else if _, declared := asMap(get(c, "volumes"))[src]; !declared {
			t.Errorf("%s: %s is mounted at data_dir but is not a declared volume", where, src)
		}
		// Certificates and credentials: in directories mounted from what
		// setup.sh writes.
		for setting, file := range fileSettings(g) {
			found := false
			for target, src := range mounts {
				if under(file, target) && target != "/" {
					found = true
					dir, ok := strings.CutPrefix(src, "./secrets/")
					if !ok || !strings.Contains(setup, `"$out/`+dir+`"`) {
						t.Errorf("%s: %s %s is mounted from %s, which setup.sh does not write", where, setting, file, src)
					}
				}
			}
			if !found {
				t.Errorf("%s: %s %s is in no mounted directory", where, setting, file)
			}
		}

		// Published ports: the container's side is a port the gateway
		// listens on off loopback; devices and operators need MQTTS and the
		// admin API.
		exposed := exposedPorts(g)
		published := map[string]bool{}
		for _, p := range getL(s, "ports") {
			f := strings.Split(fmt.Sprint(p), ":")
			cp := f[len(f)-1]
			if !strings.Contains(cp, "/") {
				cp += "/tcp"
			}
			published[cp] = true
			if !exposed[cp] {
				t.Errorf("%s: publishes %s, which gw %s does not listen on off loopback (%v)", where, cp, g.Name, sortedKeys(exposed))
			}
		}
		for _, setting := range []string{"mqtt.tls_listen", "http_listen"} {
			if l := listenerOf(t, g, setting); !published[l.key()] {
				t.Errorf("%s: %s %s is not published", where, setting, l.addr)
			}
		}

		// Health: /readyz?exclude=cluster on the admin API, trusting its CA.
		test := getL(s, "healthcheck", "test")
		var probe *url.URL
		for i, a := range test {
			as := fmt.Sprint(a)
			if strings.HasPrefix(as, "http://") || strings.HasPrefix(as, "https://") {
				probe = checkURL(t, where+" healthcheck", g, as, "/readyz")
			}
			if as == "--cacert" && i+1 < len(test) && fmt.Sprint(test[i+1]) != g.GetAdmin().GetTls().GetCaFile() {
				t.Errorf("%s: healthcheck trusts %s, the admin API's CA is %s", where, test[i+1], g.GetAdmin().GetTls().GetCaFile())
			}
		}
		if probe == nil {
			t.Errorf("%s: healthcheck %q probes no URL", where, test)
		} else if !slices.Contains(probe.Query()["exclude"], "cluster") {
			t.Errorf("%s: healthcheck %s: a restarting member is fenced until the others are back, and they wait for it: use ?exclude=cluster", where, probe)
		}

		grace, err := time.ParseDuration(getS(s, "stop_grace_period"))
		if err != nil {
			t.Errorf("%s: stop_grace_period %q: %v", where, getS(s, "stop_grace_period"), err)
		}
		checkGrace(t, where+" stop_grace_period", grace)
		if sig := getS(s, "stop_signal"); sig != "" && sig != "SIGTERM" {
			t.Errorf("%s: stop_signal %s: SIGTERM drains the gateway", where, sig)
		}
		for dep := range asMap(get(s, "depends_on")) {
			if services[dep] == nil {
				t.Errorf("%s: depends on %s, which is no service", where, dep)
			}
		}

		// The cluster addresses are the container's fixed address.
		nets := asMap(get(s, "networks"))
		if g.Cluster == nil || len(nets) != 1 {
			t.Errorf("%s: want a cluster member on one network", where)
			continue
		}
		for netName, n := range nets {
			ip := getS(n, "ipv4_address")
			for _, setting := range []string{"cluster.gossip_listen", "cluster.remote_listen"} {
				if l := listenerOf(t, g, setting); l.host != ip {
					t.Errorf("%s: %s %s is not the container's address %s", where, setting, l.addr, ip)
				}
			}
			_, subnet, err := net.ParseCIDR(getS(c, "networks", netName, "ipam", "config", 0, "subnet"))
			if err != nil || !subnet.Contains(net.ParseIP(ip)) {
				t.Errorf("%s: address %s is not in network %s's subnet (%v)", where, ip, netName, err)
			}
		}
		// The brokers it reads are compose services, on their port.
		for _, b := range append([]*pb.ExternalBroker{g.Upstream}, g.Brokers...) {
			if b == nil {
				continue
			}
			u, err := url.Parse(b.Url)
			if err != nil || services[u.Hostname()] == nil {
				t.Errorf("%s: broker %s is not a compose service", where, b.Url)
				continue
			}
			if !strings.HasPrefix(getS(services[u.Hostname()], "image"), "eclipse-mosquitto") {
				t.Errorf("%s: broker %s is not the mosquitto service", where, b.Url)
			}
			if !regexp.MustCompile(`(?m)^listener ` + regexp.QuoteMeta(u.Port()) + `\b`).MatchString(mosquittoConf) {
				t.Errorf("%s: broker %s: mosquitto.conf has no listener on port %s", where, b.Url, u.Port())
			}
		}
	}
	if len(gateways) != 3 {
		t.Fatalf("%s: want three gateways, found %d (a service is a gateway when it mounts a configuration at %s)", path, len(gateways), imageConfig)
	}
	// Each gateway's seeds are the others' gossip addresses.
	names := map[string]bool{}
	for svc, g := range gateways {
		if names[g.Name] {
			t.Errorf("%s: two gateways are named %s", path, g.Name)
		}
		names[g.Name] = true
		var want []string
		for other, o := range gateways {
			if other != svc {
				want = append(want, o.Cluster.GossipListen)
			}
		}
		slices.Sort(want)
		got := slices.Sorted(slices.Values(g.Cluster.Seeds))
		if !slices.Equal(got, want) {
			t.Errorf("%s: service %s seeds %v, want the other gateways %v", path, svc, got, want)
		}
	}
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// kube is the Kubernetes manifests, decoded, with the configuration the
// init container renders for each pod.
type kube struct {
	objects   []map[string]any
	namespace string
	sts       map[string]any
	pod       map[string]any // the StatefulSet's pod template spec
	configs   map[string]*pb.GatewayConfig
}

var kubeCache *kube

func (k *kube) byKind(kind string) []map[string]any {
	var out []map[string]any
	for _, o := range k.objects {
		if getS(o, "kind") == kind {
			out = append(out, o)
		}
	}
	return out
}

// container finds a container (or init container) by name.
func (k *kube) container(t *testing.T, list, name string) map[string]any {
	t.Helper()
	for _, c := range getL(k.pod, list) {
		if getS(c, "name") == name {
			return c.(map[string]any)
		}
	}
	t.Fatalf("kubernetes: the StatefulSet has no %s %q", list, name)
	return nil
}

// mountOf is where a container mounts a volume ("" if it does not).
func mountOf(c map[string]any, volume string) string {
	for _, m := range getL(c, "volumeMounts") {
		if getS(m, "name") == volume {
			return getS(m, "mountPath")
		}
	}
	return ""
}

// volumeOf is the pod's volume of a kind ("configMap", "secret",
// "emptyDir") named (the ConfigMap's or Secret's name; "" for emptyDir).
func (k *kube) volumeOf(kind, name string) []string {
	var out []string
	for _, v := range getL(k.pod, "volumes") {
		src := get(v, kind)
		if src == nil {
			continue
		}
		if n := getS(src, "name") + getS(src, "secretName"); name == "" || n == name {
			out = append(out, getS(v, "name"))
		}
	}
	return out
}

// renderKubernetes reads deployments/kubernetes and renders each pod's
// configuration with the init container's own script and environment.
func renderKubernetes(t *testing.T) *kube {
	t.Helper()
	if kubeCache != nil {
		return kubeCache
	}
	k := &kube{configs: map[string]*pb.GatewayConfig{}}
	kust := yamlDocs(t, "kubernetes/kustomization.yaml")[0]
	k.namespace = getS(kust, "namespace")
	listed := map[string]bool{}
	for _, r := range getL(kust, "resources") {
		listed[fmt.Sprint(r)] = true
		k.objects = append(k.objects, yamlDocs(t, filepath.Join("kubernetes", fmt.Sprint(r)))...)
	}
	files, _ := filepath.Glob("kubernetes/*.yaml")
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !listed[b] {
			t.Errorf("kubernetes/kustomization.yaml does not list %s", b)
		}
	}
	sts := k.byKind("StatefulSet")
	if len(sts) != 1 {
		t.Fatalf("kubernetes: want one StatefulSet, have %d", len(sts))
	}
	k.sts = sts[0]
	k.pod = asMap(get(k.sts, "spec", "template", "spec"))

	// The init container runs render.sh from the ConfigMap on the
	// template next to it, and writes where the gateway reads.
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh to run the init container's script")
	}
	var cm map[string]any
	for _, o := range k.byKind("ConfigMap") {
		if get(o, "data", "render.sh") != nil {
			cm = o
		}
	}
	if cm == nil {
		t.Fatal("kubernetes: no ConfigMap holds render.sh")
	}
	init := k.container(t, "initContainers", "config")
	gw := k.container(t, "containers", "gateway")
	tmplVols := k.volumeOf("configMap", getS(cm, "metadata", "name"))
	if len(tmplVols) != 1 {
		t.Fatalf("kubernetes: want one volume of ConfigMap %s, have %v", getS(cm, "metadata", "name"), tmplVols)
	}
	tmplDir := mountOf(init, tmplVols[0])
	cmd := strings.Join(anyStrings(getL(init, "command")), " ")
	if want := "sh " + tmplDir + "/render.sh"; cmd != want {
		t.Errorf("kubernetes: the init container runs %q, want %q (the ConfigMap is mounted at %q)", cmd, want, tmplDir)
	}
	env := map[string]string{}
	fieldRefs := map[string]string{}
	for _, e := range getL(init, "env") {
		if f := getS(e, "valueFrom", "fieldRef", "fieldPath"); f != "" {
			fieldRefs[f] = getS(e, "name")
		} else {
			env[getS(e, "name")] = getS(e, "value")
		}
	}
	if env["TEMPLATE"] != tmplDir+"/gateway.yaml" {
		t.Errorf("kubernetes: TEMPLATE %s is not the ConfigMap's gateway.yaml (mounted at %s)", env["TEMPLATE"], tmplDir)
	}
	args := anyStrings(getL(gw, "args"))
	if i := slices.Index(args, "--config"); i < 0 || i+1 >= len(args) || args[i+1] != env["OUT"] {
		t.Errorf("kubernetes: the gateway runs %q, but the init container writes %s", args, env["OUT"])
	}
	var outVol string
	for _, v := range k.volumeOf("emptyDir", "") {
		if m := mountOf(init, v); m != "" && under(env["OUT"], m) {
			outVol = v
			if gm := mountOf(gw, v); gm != m {
				t.Errorf("kubernetes: the init container writes %s in volume %s at %s; the gateway mounts it at %q", env["OUT"], v, m, gm)
			}
		}
	}
	if outVol == "" {
		t.Errorf("kubernetes: the init container writes %s in no emptyDir volume it mounts", env["OUT"])
	}
	for _, f := range []string{"metadata.name", "metadata.namespace", "status.podIP"} {
		if fieldRefs[f] == "" {
			t.Errorf("kubernetes: the init container does not get %s from the downward API", f)
		}
	}
	if r := getInt(k.sts, "spec", "replicas"); strconv.Itoa(r) != env["REPLICAS"] {
		t.Errorf("kubernetes: the init container's REPLICAS %s is not the StatefulSet's replicas %d", env["REPLICAS"], r)
	}

	dir := t.TempDir()
	script := filepath.Join(dir, "render.sh")
	writeFile(t, script, getS(cm, "data", "render.sh"))
	writeFile(t, filepath.Join(dir, "gateway.yaml"), getS(cm, "data", "gateway.yaml"))
	for i := range getInt(k.sts, "spec", "replicas") {
		pod := fmt.Sprintf("%s-%d", getS(k.sts, "metadata", "name"), i)
		out := filepath.Join(dir, pod+".yaml")
		run := exec.Command("sh", script)
		run.Env = []string{"PATH=" + os.Getenv("PATH")}
		for n, v := range env {
			run.Env = append(run.Env, n+"="+v)
		}
		run.Env = append(run.Env, fieldRefs["metadata.name"]+"="+pod, fieldRefs["metadata.namespace"]+"="+k.namespace,
			fieldRefs["status.podIP"]+"="+podIP(i), "TEMPLATE="+filepath.Join(dir, "gateway.yaml"), "OUT="+out)
		if b, err := run.CombinedOutput(); err != nil {
			t.Fatalf("kubernetes: render.sh for %s: %v\n%s", pod, err, b)
		}
		k.configs[pod] = loadGateway(t, out)
	}
	kubeCache = k
	return k
}

func podIP(i int) string { return fmt.Sprintf("10.42.0.%d", 10+i) }

func anyStrings(l []any) []string {
	out := make([]string, len(l))
	for i, v := range l {
		out[i] = fmt.Sprint(v)
	}
	return out
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestKubernetes checks the StatefulSet, its Services and its budget
// against the configurations its pods render: names, addresses and seeds,
// container and Service ports, probes, the data volume, the mounted
// secrets, the grace period, and the pod security settings.
func TestKubernetes(t *testing.T) {
	k := renderKubernetes(t)
	stsName := getS(k.sts, "metadata", "name")
	headless := getS(k.sts, "spec", "serviceName")
	gw := k.container(t, "containers", "gateway")
	init := k.container(t, "initContainers", "config")
	domain := ""
	for _, e := range getL(init, "env") {
		if getS(e, "name") == "CLUSTER_DOMAIN" {
			domain = getS(e, "value")
		}
	}

	if p := getS(k.sts, "spec", "podManagementPolicy"); p != "Parallel" {
		t.Errorf("kubernetes: podManagementPolicy %q: with OrderedReady a full restart deadlocks (pod 0 is not ready until a majority is back, and the others wait for it to be ready)", p)
	}
	checkGrace(t, "kubernetes terminationGracePeriodSeconds", time.Duration(getInt(k.pod, "terminationGracePeriodSeconds"))*time.Second)

	// Each pod's configuration: its own name, address, and the others as
	// seeds by their stable DNS names.
	replicas := getInt(k.sts, "spec", "replicas")
	for i := range replicas {
		pod := fmt.Sprintf("%s-%d", stsName, i)
		g := k.configs[pod]
		if g.Name != pod {
			t.Errorf("kubernetes %s: gateway name %q, want the pod name", pod, g.Name)
		}
		gossip := listenerOf(t, g, "cluster.gossip_listen")
		for _, setting := range []string{"cluster.gossip_listen", "cluster.remote_listen"} {
			if l := listenerOf(t, g, setting); l.host != podIP(i) {
				t.Errorf("kubernetes %s: %s %s, want the pod's address %s", pod, setting, l.addr, podIP(i))
			}
		}
		var want []string
		for j := range replicas {
			if j != i {
				want = append(want, fmt.Sprintf("%s-%d.%s.%s.svc.%s:%d", stsName, j, headless, k.namespace, domain, gossip.port))
			}
		}
		if !slices.Equal(g.Cluster.Seeds, want) {
			t.Errorf("kubernetes %s: seeds %v, want %v", pod, g.Cluster.Seeds, want)
		}
	}
	g := k.configs[stsName+"-0"]

	// Container ports: exactly what the gateway listens on off loopback.
	ports := map[string]string{} // name -> PORT/proto
	have := map[string]bool{}
	for _, p := range getL(gw, "ports") {
		proto := strings.ToLower(getS(p, "protocol"))
		if proto == "" {
			proto = "tcp"
		}
		key := fmt.Sprintf("%d/%s", getInt(p, "containerPort"), proto)
		ports[getS(p, "name")] = key
		have[key] = true
	}
	exposed := exposedPorts(g)
	for p := range exposed {
		if !have[p] {
			t.Errorf("kubernetes: the gateway listens on %s off loopback, which its container ports do not list", p)
		}
	}
	for p := range have {
		if !exposed[p] {
			t.Errorf("kubernetes: container port %s, which the gateway does not listen on off loopback", p)
		}
	}
	portOf := func(where string, v any, proto string) string {
		if key, ok := ports[fmt.Sprint(v)]; ok {
			return key
		}
		key := fmt.Sprintf("%v/%s", v, proto)
		if !have[key] {
			t.Errorf("kubernetes %s: port %v is no container port", where, v)
		}
		return key
	}

	// Probes on the admin API.
	for probe, allowed := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"} {
		h := get(gw, probe, "httpGet")
		if h == nil {
			t.Errorf("kubernetes: the gateway has no %s httpGet", probe)
			continue
		}
		port, _ := strconv.Atoi(strings.TrimSuffix(portOf(probe, get(h, "port"), "tcp"), "/tcp"))
		scheme := getS(h, "scheme")
		if scheme == "" {
			scheme = "http"
		}
		u, _ := url.Parse(getS(h, "path"))
		checkProbeURL(t, "kubernetes "+probe, g, scheme, port, u.Path, allowed)
	}

	// Services: they select the pods and forward to their ports.
	labels := asMap(get(k.sts, "spec", "template", "metadata", "labels"))
	selects := func(where string, sel map[string]any) {
		if len(sel) == 0 {
			t.Errorf("kubernetes %s: empty selector", where)
		}
		for key, v := range sel {
			if labels[key] != v {
				t.Errorf("kubernetes %s: selects %s=%v, which the pods do not carry", where, key, v)
			}
		}
	}
	selects("StatefulSet", asMap(get(k.sts, "spec", "selector", "matchLabels")))
	services := map[string]map[string]bool{} // name -> PORT/proto it forwards to
	for _, s := range k.byKind("Service") {
		name := getS(s, "metadata", "name")
		selects("Service "+name, asMap(get(s, "spec", "selector")))
		services[name] = map[string]bool{}
		for _, p := range getL(s, "spec", "ports") {
			proto := strings.ToLower(getS(p, "protocol"))
			if proto == "" {
				proto = "tcp"
			}
			target := get(p, "targetPort")
			if target == nil {
				target = get(p, "port")
			}
			key := portOf("Service "+name, target, proto)
			if !strings.HasSuffix(key, "/"+proto) {
				t.Errorf("kubernetes Service %s: port %v/%s forwards to container port %s", name, get(p, "port"), proto, key)
			}
			services[name][key] = true
		}
	}
	peers := services[headless]
	if peers == nil {
		t.Fatalf("kubernetes: no headless Service %s (the StatefulSet's serviceName)", headless)
	}
	for _, s := range k.byKind("Service") {
		if getS(s, "metadata", "name") == headless {
			if getS(s, "spec", "clusterIP") != "None" || getS(s, "spec", "publishNotReadyAddresses") != "true" {
				t.Errorf("kubernetes Service %s: want clusterIP None and publishNotReadyAddresses true (pods find each other before they are ready)", headless)
			}
		}
	}
	for _, l := range listeners(g) {
		if strings.HasPrefix(l.setting, "cluster.") && !peers[l.key()] {
			t.Errorf("kubernetes Service %s: does not carry %s %s", headless, l.setting, l.key())
		}
	}
	mqtts := listenerOf(t, g, "mqtt.tls_listen")
	client := false
	for name, fwd := range services {
		client = client || (name != headless && fwd[mqtts.key()])
	}
	if !client {
		t.Errorf("kubernetes: no client Service forwards MQTTS (%s)", mqtts.key())
	}
	pdbs := k.byKind("PodDisruptionBudget")
	if len(pdbs) != 1 || getInt(pdbs[0], "spec", "maxUnavailable") != 1 {
		t.Errorf("kubernetes: want one PodDisruptionBudget with maxUnavailable 1")
	} else {
		selects("PodDisruptionBudget", asMap(get(pdbs[0], "spec", "selector", "matchLabels")))
	}

	// State on the volume claim; certificates and credentials from the
	// Secrets that secrets.sh makes.
	claim := getS(k.sts, "spec", "volumeClaimTemplates", 0, "metadata", "name")
	if m := mountOf(gw, claim); m != g.DataDir {
		t.Errorf("kubernetes: volume claim %q is mounted at %q, data_dir is %s", claim, m, g.DataDir)
	}
	secretsSh := string(readFile(t, "kubernetes/secrets.sh"))
	for _, v := range getL(k.pod, "volumes") {
		if s := getS(v, "secret", "secretName"); s != "" && !strings.Contains(secretsSh, s) {
			t.Errorf("kubernetes: Secret %s is mounted but secrets.sh does not make it", s)
		}
	}
	secretMounts := map[string]bool{}
	for _, v := range k.volumeOf("secret", "") {
		if m := mountOf(gw, v); m != "" {
			secretMounts[m] = true
		}
	}
	for setting, file := range fileSettings(g) {
		found := false
		for m := range secretMounts {
			found = found || under(file, m)
		}
		if !found {
			t.Errorf("kubernetes: %s %s is in no mounted Secret (%v)", setting, file, sortedKeys(secretMounts))
		}
	}
	for _, def := range []string{"NAMESPACE:-" + k.namespace, "REPLICAS:-" + strconv.Itoa(replicas), "CLUSTER_DOMAIN:-" + domain} {
		if !strings.Contains(secretsSh, def) {
			t.Errorf("kubernetes/secrets.sh: its default ${%s} does not match the manifests", def)
		}
	}

	// Security: non-root as the image's uid, read-only root, no
	// privileges.
	_, uid := image(t)
	if getS(k.pod, "securityContext", "runAsNonRoot") != "true" || getInt(k.pod, "securityContext", "runAsUser") != uid {
		t.Errorf("kubernetes: the pod should run as non-root uid %d (the image's USER)", uid)
	}
	if getS(k.pod, "securityContext", "fsGroup") == "" {
		t.Error("kubernetes: no fsGroup: the gateway could not write its volume nor read its Secrets")
	}
	images := map[string]bool{}
	for _, list := range []string{"initContainers", "containers"} {
		for _, c := range getL(k.pod, list) {
			name := getS(c, "name")
			images[getS(c, "image")] = true
			sc := get(c, "securityContext")
			if getS(sc, "readOnlyRootFilesystem") != "true" || getS(sc, "allowPrivilegeEscalation") != "false" ||
				!slices.Contains(anyStrings(getL(sc, "capabilities", "drop")), "ALL") {
				t.Errorf("kubernetes: container %s: want readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL", name)
			}
		}
	}
	kust := yamlDocs(t, "kubernetes/kustomization.yaml")[0]
	for im := range images {
		if getS(kust, "images", 0, "name") != im {
			t.Errorf("kubernetes: image %s is not the one kustomization.yaml sets (%s)", im, getS(kust, "images", 0, "name"))
		}
	}
}

// TestDashboard checks the Grafana dashboard: every metric it queries is
// defined in the source, every label it groups by or shows is one those
// metrics have (or one Prometheus adds), every panel uses the data source
// variable, and the metrics operators need are on it.
func TestDashboard(t *testing.T) {
	const path = "grafana/millstream-dashboard.json"
	var d map[string]any
	if err := json.Unmarshal(readFile(t, path), &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defined := metrics(t)
	// Labels Prometheus adds or renames: instance and job (the scrape's),
	// le (histogram buckets), exported_job (the gateway's job label, once
	// it clashes with the scrape's), job_name (its planned new name).
	labels := map[string]bool{"instance": true, "job": true, "le": true, "exported_job": true, "job_name": true}
	for _, ls := range defined {
		for l := range ls {
			labels[l] = true
		}
	}
	vars := map[string]bool{}
	for _, v := range getL(d, "templating", "list") {
		vars[getS(v, "name")] = true
	}
	if !vars["datasource"] {
		t.Errorf("%s: no datasource variable", path)
	}

	metricRE := regexp.MustCompile(`\bmillstream_[a-z0-9_]+`)
	groupRE := regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	matcherRE := regexp.MustCompile(`\{([^}]*)\}`)
	legendRE := regexp.MustCompile(`\{\{\s*([a-zA-Z_]+)\s*\}\}`)
	used := map[string]bool{}
	ids := map[string]bool{}
	checkLabel := func(where, l string) {
		if l = strings.TrimSpace(l); l != "" && !labels[l] {
			t.Errorf("%s: label %q is on no millstream metric", where, l)
		}
	}
	for _, p := range getL(d, "panels") {
		title := path + " panel " + strconv.Quote(getS(p, "title"))
		id := getS(p, "id")
		if ids[id] {
			t.Errorf("%s: id %s used twice", title, id)
		}
		ids[id] = true
		if x, w := getInt(p, "gridPos", "x"), getInt(p, "gridPos", "w"); x < 0 || w <= 0 || x+w > 24 {
			t.Errorf("%s: gridPos x %d w %d is off the 24 columns", title, x, w)
		}
		if getS(p, "type") == "row" {
			continue
		}
		if getS(p, "datasource", "uid") != "${datasource}" {
			t.Errorf("%s: data source %v, want ${datasource}", title, get(p, "datasource"))
		}
		targets := getL(p, "targets")
		if len(targets) == 0 {
			t.Errorf("%s: no query", title)
		}
		for _, tg := range targets {
			expr := getS(tg, "expr")
			names := metricRE.FindAllString(expr, -1)
			if len(names) == 0 {
				t.Errorf("%s: query %q reads no millstream metric", title, expr)
			}
			for _, n := range names {
				base := n
				if defined[base] == nil {
					for _, suffix := range []string{"_bucket", "_count", "_sum"} {
						if b, ok := strings.CutSuffix(n, suffix); ok && defined[b] != nil {
							base = b
						}
					}
				}
				if defined[base] == nil {
					t.Errorf("%s: metric %s is defined nowhere in the source", title, n)
				}
				used[base] = true
			}
			for _, m := range groupRE.FindAllStringSubmatch(expr, -1) {
				for _, l := range strings.Split(m[1], ",") {
					checkLabel(title, l)
				}
			}
			for _, m := range matcherRE.FindAllStringSubmatch(expr, -1) {
				for _, sel := range strings.Split(m[1], ",") {
					l, _, _ := strings.Cut(sel, "=")
					checkLabel(title, strings.TrimRight(l, "!~"))
				}
			}
			for _, m := range legendRE.FindAllStringSubmatch(getS(tg, "legendFormat"), -1) {
				checkLabel(title+" legend", m[1])
			}
			for _, m := range regexp.MustCompile(`\$([a-z_]+)`).FindAllStringSubmatch(expr, -1) {
				if !vars[m[1]] && !strings.HasPrefix(m[1], "__") {
					t.Errorf("%s: query uses $%s, which is no dashboard variable", title, m[1])
				}
			}
		}
	}
	for _, want := range []string{
		"millstream_events_in_total", "millstream_output_rows_total", "millstream_outbox_rows",
		"millstream_dead_letters_total", "millstream_job_state_bytes", "millstream_job_state_budget_bytes",
		"millstream_disk_guard_refusing", "millstream_cluster_rejected_messages_total",
		"millstream_mqtt_refused_total", "millstream_mqtt_acl_denied_total",
		"millstream_ingest_log_commit_seconds", "millstream_checkpoint_seconds",
	} {
		if !used[want] {
			t.Errorf("%s: no panel shows %s", path, want)
		}
	}
}
