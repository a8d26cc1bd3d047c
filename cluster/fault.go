package cluster

import (
	"errors"
	"log"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Fault injection for tests of a network split between real gateway
// processes on loopback. With MILLSTREAM_FAULT_ISOLATE set to a
// directory, the gateway drops every gossip packet and connection and
// every message between gateways, in and out, while a file named after
// the gateway exists in it: to the others it is dead, and it hears from
// nobody. Its MQTT broker and admin
// API keep working. Off unless the variable is set; never in production.

// isolateEnv names the fault-injection switch file.
const isolateEnv = "MILLSTREAM_FAULT_ISOLATE"

// isolation watches the switch file.
type isolation struct {
	path string
	on   atomic.Bool
}

func newIsolation(gateway string) *isolation {
	dir := os.Getenv(isolateEnv)
	if dir == "" {
		return nil
	}
	return &isolation{path: filepath.Join(dir, gateway)}
}

// check reads the switch file; it reports whether isolation changed.
func (i *isolation) check() (on, changed bool) {
	if i == nil {
		return false, false
	}
	_, err := os.Stat(i.path)
	on = err == nil
	return on, i.on.Swap(on) != on
}

// isolated reports whether traffic is dropped now.
func (i *isolation) isolated() bool { return i != nil && i.on.Load() }

var errIsolated = errors.New("cluster: isolated by fault injection")

// faultTransport is memberlist's network transport with a switch that
// drops everything.
type faultTransport struct {
	*memberlist.NetTransport
	iso     *isolation
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	wg      sync.WaitGroup
}

func newFaultTransport(iso *isolation, host string, port int, logger *log.Logger) (*faultTransport, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: logger})
	if err != nil {
		return nil, err
	}
	t := &faultTransport{NetTransport: nt, iso: iso, packets: make(chan *memberlist.Packet), streams: make(chan net.Conn), done: make(chan struct{})}
	t.wg.Add(2)
	go func() {
		defer t.wg.Done()
		for {
			select {
			case p := <-nt.PacketCh():
				if iso.isolated() {
					continue
				}
				select {
				case t.packets <- p:
				case <-t.done:
					return
				}
			case <-t.done:
				return
			}
		}
	}()
	go func() {
		defer t.wg.Done()
		for {
			select {
			case c := <-nt.StreamCh():
				if iso.isolated() {
					c.Close()
					continue
				}
				select {
				case t.streams <- c:
				case <-t.done:
					c.Close()
					return
				}
			case <-t.done:
				return
			}
		}
	}()
	return t, nil
}

func (t *faultTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }
func (t *faultTransport) StreamCh() <-chan net.Conn           { return t.streams }

func (t *faultTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.iso.isolated() {
		return time.Now(), nil // lost on the way
	}
	return t.NetTransport.WriteTo(b, addr)
}

func (t *faultTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.iso.isolated() {
		return nil, errIsolated
	}
	return t.NetTransport.DialTimeout(addr, timeout)
}

// NetTransport is node aware: memberlist calls these, not WriteTo and
// DialTimeout.
func (t *faultTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, addr.Addr)
}

func (t *faultTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(addr.Addr, timeout)
}

func (t *faultTransport) Shutdown() error {
	close(t.done)
	err := t.NetTransport.Shutdown()
	t.wg.Wait()
	return err
}
