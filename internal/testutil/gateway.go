package testutil

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binary builds cmd/millstream once per test process and returns its path.
// The build goes to a temporary directory removed by CleanupBinary.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "millstream-bin-")
		if buildErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, "millstream"), "./cmd/millstream")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "millstream")
}

// CleanupBinary removes what Binary built (call from TestMain).
func CleanupBinary() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// FreeAddr returns a free loopback address.
//
// The port comes from below the kernel's ephemeral range: a port the kernel
// handed out (port 0) is free again once this check closes it, and the
// outgoing connections tests open all the time could take it before the
// gateway binds it (CI saw "bind: address already in use"). Each port is
// handed out once per test process, and must bind for TCP and UDP (gossip
// uses both).
func FreeAddr(t testing.TB) string {
	t.Helper()
	lo, hi := fixedPortRange()
	portsMu.Lock()
	defer portsMu.Unlock()
	for try := 0; hi > lo && try < 1000; try++ {
		port := lo + rand.IntN(hi-lo)
		if portsGiven[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if bindable(addr) {
			portsGiven[port] = true
			return addr
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// fixedPortRange is [10000, start of the ephemeral range), or empty when
// the range cannot be read or leaves no room.
func fixedPortRange() (lo, hi int) {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		return 0, 0
	}
	start, err := strconv.Atoi(f[0])
	if err != nil || start < 12000 {
		return 0, 0
	}
	return 10000, start
}

// bindable reports whether addr can be listened on for TCP and UDP.
func bindable(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	return pc.Close() == nil
}

// Gateway is a `millstream gateway` process.
type Gateway struct {
	t      testing.TB
	bin    string
	config string
	Args   []string // more arguments for the next Start
	Env    []string // more environment (KEY=value) for the next Start
	// AdminClient and AdminScheme reach an admin API served over HTTPS
	// (default http.DefaultClient and "http").
	AdminClient *http.Client
	AdminScheme string
	admin       string // admin API address (from the config)
	mu          sync.Mutex
	cmd         *exec.Cmd
	logs        bytes.Buffer // every run's output
	exited      chan struct{}
	exitErr     error // how the process last started ended (cmd.Wait)
}

// StartGateway runs `millstream gateway --config config` and waits until its
// admin API (at admin) is ready. The process is killed at cleanup.
func StartGateway(t testing.TB, config, admin string) *Gateway {
	t.Helper()
	g := NewGateway(t, config, admin)
	g.Start()
	return g
}

// NewGateway is StartGateway without the start: Start runs it.
func NewGateway(t testing.TB, config, admin string) *Gateway {
	t.Helper()
	g := &Gateway{t: t, bin: Binary(t), config: config, admin: admin}
	t.Cleanup(func() { g.Kill() })
	return g
}

// Start starts the process (again) and waits until it is ready: its
// state recovered and its admin API up. It leaves out the readiness
// checks of the cluster (a restarted member is fenced until it sees a
// majority) and of input brokers, which tests start when they choose.
func (g *Gateway) Start() {
	g.t.Helper()
	if !g.TryStart() {
		g.t.Fatalf("gateway exited during start:\n%s", g.Logs())
	}
}

// TryStart is Start for a process that may end by itself while it starts
// (as under systemd's Restart=): false if it exited before it was ready.
func (g *Gateway) TryStart() bool {
	g.t.Helper()
	g.mu.Lock()
	cmd := exec.Command(g.bin, append([]string{"gateway", "--config", g.config}, g.Args...)...)
	if len(g.Env) > 0 {
		cmd.Env = append(os.Environ(), g.Env...)
	}
	cmd.Stdout, cmd.Stderr = &lockedBuffer{mu: &g.mu, b: &g.logs}, &lockedBuffer{mu: &g.mu, b: &g.logs}
	if err := cmd.Start(); err != nil {
		g.mu.Unlock()
		g.t.Fatalf("start gateway: %v", err)
	}
	g.cmd, g.exited = cmd, make(chan struct{})
	exited := g.exited
	g.mu.Unlock()
	go func() {
		err := cmd.Wait()
		g.mu.Lock()
		g.exitErr = err
		g.mu.Unlock()
		close(exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		client, scheme := g.AdminClient, g.AdminScheme
		if client == nil {
			client = http.DefaultClient
		}
		if scheme == "" {
			scheme = "http"
		}
		resp, err := client.Get(scheme + "://" + g.admin + "/readyz?exclude=cluster&exclude=input&exclude=disk")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		select {
		case <-exited:
			return false
		default:
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("gateway not ready after 30 s:\n%s", g.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Exited is closed when the process last started has ended.
func (g *Gateway) Exited() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.exited
}

// ExitedBy says, once the process last started has ended, how it ended
// ("exit status 1", "signal: killed"); "" while it runs.
func (g *Gateway) ExitedBy() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.exited:
		if g.exitErr == nil {
			return "exit status 0"
		}
		return g.exitErr.Error()
	default:
		return ""
	}
}

// Pid is the process id of the running gateway (0 when none runs).
func (g *Gateway) Pid() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd == nil || g.cmd.Process == nil {
		return 0
	}
	return g.cmd.Process.Pid
}

// Kill sends SIGKILL (kill -9) and waits for the process to end.
func (g *Gateway) Kill() { g.signal(syscall.SIGKILL) }

// Stop sends SIGTERM (a clean shutdown) and waits for the process to end.
func (g *Gateway) Stop() { g.signal(syscall.SIGTERM) }

func (g *Gateway) signal(sig syscall.Signal) {
	g.mu.Lock()
	cmd, exited := g.cmd, g.exited
	g.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Logs returns what every run of the process printed.
func (g *Gateway) Logs() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.logs.String()
}

type lockedBuffer struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// RunGateway runs `millstream gateway --config config args...` until it
// exits by itself (or is killed after timeout) and returns its exit code
// and output: for starts that must fail.
func RunGateway(t testing.TB, config string, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(Binary(t), append([]string{"gateway", "--config", config}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("gateway still running after %v:\n%s", timeout, out.String())
	}
	return cmd.ProcessState.ExitCode(), out.String()
}
