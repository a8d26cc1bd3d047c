package testutil

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/certs"
)

// PKI is a test cluster CA, written under Dir/ca, and the certificates it
// issues into Dir, valid for an hour.
type PKI struct {
	Dir string
	CA  *certs.Authority
}

// NewPKI makes a CA in a new temporary directory.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	ca, err := certs.NewCA("millstream test CA", time.Hour)
	require.NoError(t, err)
	p := &PKI{Dir: t.TempDir(), CA: ca}
	_, err = ca.WriteCA(filepath.Join(p.Dir, "ca"))
	require.NoError(t, err)
	return p
}

// CAFile is the CA certificate's path.
func (p *PKI) CAFile() string { return filepath.Join(p.Dir, "ca", "ca.crt") }

// Issue writes Dir/<base>.crt and .key.
func (p *PKI) Issue(t testing.TB, base string, r certs.Request) certs.Files {
	t.Helper()
	if r.Validity == 0 {
		r.Validity = time.Hour
	}
	f, err := p.CA.WriteIssued(p.Dir, base, r)
	require.NoError(t, err)
	return f
}

// ClientTLS is the TLS configuration of a client that trusts the CA and
// presents files (nil: no certificate); it checks the server's
// certificate for localhost.
func (p *PKI) ClientTLS(t testing.TB, files *certs.Files) *tls.Config {
	t.Helper()
	data, err := os.ReadFile(p.CAFile())
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(data))
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if files != nil {
		pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
		require.NoError(t, err)
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}
