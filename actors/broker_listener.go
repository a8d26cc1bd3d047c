package actors

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// brokerListener is the broker's listener (plain or TLS) in place of
// mochi's TCP listener, which has no bound on sockets that never send
// CONNECT, sets no deadline before CONNECT, stops accepting on the first
// Accept error and, on Close, waits for clients it never registered.
type brokerListener struct {
	id  string
	ln  net.Listener
	tls *tls.Config // nil: plain MQTT
	b   *Broker
	log *slog.Logger

	mu     sync.Mutex
	conns  map[*brokerConn]struct{}
	closed bool
	wg     sync.WaitGroup // the accept loop and one per connection
}

// brokerConn is one accepted socket. For TLS, device or certRefusal says
// what its client certificate proves, set once the handshake is done and
// before mochi reads from it.
type brokerConn struct {
	net.Conn
	l    *brokerListener
	once sync.Once
	// device is the id a verified device certificate names; certRefusal
	// why a presented certificate cannot authenticate a device.
	device      string
	certRefusal string
}

func (c *brokerConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		err = c.Conn.Close()
		c.l.untrack(c)
	})
	return err
}

// listen binds addr now, so a port 0 is resolved and nothing else can
// take the port before mochi serves it.
func (b *Broker) listen(id, addr string, conf *tls.Config) (*brokerListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	l := &brokerListener{id: id, ln: ln, tls: conf, b: b, log: b.logger, conns: map[*brokerConn]struct{}{}}
	b.listeners = append(b.listeners, l)
	return l, nil
}

func (l *brokerListener) ID() string      { return l.id }
func (l *brokerListener) Address() string { return l.ln.Addr().String() }

func (l *brokerListener) Protocol() string {
	if l.tls != nil {
		return "mqtts"
	}
	return "tcp"
}

// Init is called by mochi's AddListener; the socket is already bound.
func (l *brokerListener) Init(*slog.Logger) error { return nil }

// Serve accepts connections until Close.
func (l *brokerListener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.wg.Add(1)
	l.mu.Unlock()
	defer l.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: keep serving.
			if l.b.securityLog.allow() {
				l.log.Warn("MQTT accept failed", "listener", l.id, "error", err)
			}
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if l.b.openConns.Add(1) > l.b.maxSockets {
			l.b.openConns.Add(-1)
			_ = c.Close()
			l.b.refuseConn(refusedLimit, "", "too many connections")
			continue
		}
		bc := &brokerConn{Conn: c, l: l}
		if l.tls != nil {
			bc.Conn = tls.Server(c, l.tls)
		}
		if !l.track(bc) {
			_ = c.Close()
			l.b.openConns.Add(-1)
			return
		}
		go l.serveConn(bc, establish)
	}
}

// track registers a connection (and its goroutine) unless the listener
// is closed.
func (l *brokerListener) track(c *brokerConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	l.wg.Add(1)
	return true
}

func (l *brokerListener) untrack(c *brokerConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	l.b.openConns.Add(-1)
}

func (l *brokerListener) serveConn(c *brokerConn, establish listeners.EstablishFn) {
	defer l.wg.Done()
	defer c.Close()
	// mochi sets the keep-alive deadline once the client is accepted;
	// until then the handshake and CONNECT must arrive within this.
	_ = c.SetDeadline(time.Now().Add(l.b.connectTTL))
	if tc, ok := c.Conn.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			l.b.refuseConn(refusedTLS, "", "TLS handshake failed", "remote", c.RemoteAddr().String(), "error", err)
			return
		}
		c.device, c.certRefusal = deviceFromCert(tc.ConnectionState())
	}
	if err := establish(l.id, c); err != nil {
		// Refusals are counted and logged (rate-limited) where they are
		// decided; the rest is a client going away.
		l.log.Debug("MQTT connection ended", "listener", l.id, "remote", c.RemoteAddr().String(), "error", err)
	}
}

// Close stops accepting, disconnects the listener's clients, closes the
// sockets that never became clients, and waits for their goroutines.
// Called again, it does nothing.
func (l *brokerListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	_ = l.ln.Close()
	closeClients(l.id)
	l.mu.Lock()
	conns := make([]*brokerConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	l.wg.Wait()
}

// deviceFromCert reads the device a verified client certificate names.
// Only device certificates count ("millstream cert device": client
// authentication only, no organizational unit), so a gateway's or an
// admin client's certificate from the same CA is no device identity.
func deviceFromCert(st tls.ConnectionState) (device, refusal string) {
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return "", "" // no certificate: password or anonymous
	}
	cert := st.PeerCertificates[0]
	switch {
	case slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth), len(cert.Subject.OrganizationalUnit) > 0:
		return "", "not a device certificate"
	case !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth):
		return "", "certificate not for client authentication"
	case !validID(cert.Subject.CommonName):
		return "", "certificate common name is not a valid device id"
	}
	return cert.Subject.CommonName, ""
}

// brokerTLSConfig is the MQTTS listener's TLS configuration (nil without
// one): TLS 1.2 or later; with a CA file, client certificates it signed
// are verified (a certificate it did not sign fails the handshake).
func brokerTLSConfig(o BrokerOptions) (*tls.Config, error) {
	if o.TLSListen == "" {
		if o.CertFile != "" || o.KeyFile != "" || o.CAFile != "" {
			return nil, errors.New("actors: mqtt.tls is set but mqtt.tls_listen is not")
		}
		return nil, nil
	}
	if o.CertFile == "" || o.KeyFile == "" {
		return nil, errors.New("actors: mqtt.tls_listen needs mqtt.tls.cert_file and key_file")
	}
	// The external brokers' client configuration reads the same files: its
	// RootCAs are the CAs that sign client certificates here.
	tc, err := tlsConfig(&pb.TLS{CertFile: o.CertFile, KeyFile: o.KeyFile, CaFile: o.CAFile})
	if err != nil {
		return nil, fmt.Errorf("actors: MQTTS listener: %w", err)
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: tc.Certificates}
	if tc.RootCAs != nil {
		conf.ClientCAs = tc.RootCAs
		conf.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return conf, nil
}
