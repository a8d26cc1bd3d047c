package certs

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestIssueVerifies: what the CA issues verifies against it, for the
// intended use only, and a second CA's certificates do not.
func TestIssueVerifies(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("test CA", time.Hour)
	require.NoError(t, err)
	caFiles, err := ca.WriteCA(dir)
	require.NoError(t, err)
	loaded, err := LoadCA(caFiles.Cert, caFiles.Key)
	require.NoError(t, err)

	gw, err := loaded.WriteIssued(dir, "gw1", Request{Kind: Gateway, Name: "gw1", Hosts: []string{"10.0.0.7", "gw1.plant"}})
	require.NoError(t, err)
	_, err = loaded.WriteIssued(dir, "gw1", Request{Kind: Gateway, Name: "gw1"})
	require.Error(t, err, "existing files are not overwritten")
	info, err := os.Stat(gw.Key)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	pair, err := tls.LoadX509KeyPair(gw.Cert, gw.Key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "gw1", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	require.NoError(t, leaf.VerifyHostname("10.0.0.7"))
	require.NoError(t, leaf.VerifyHostname("127.0.0.1"))
	require.Contains(t, leaf.IPAddresses, net.ParseIP("10.0.0.7").To4())

	admin, _, err := ca.Issue(Request{Kind: Admin, Name: "alice", Role: "operate"})
	require.NoError(t, err)
	require.NotEmpty(t, admin)
	_, _, err = ca.Issue(Request{Kind: Admin, Name: "alice", Role: "root"})
	require.Error(t, err)

	other, err := NewCA("other", time.Hour)
	require.NoError(t, err)
	dev, _, err := other.Issue(Request{Kind: Device, Name: "press-1"})
	require.NoError(t, err)
	c, err := tls.X509KeyPair(dev, mustKey(t, other))
	_ = c
	require.Error(t, err, "a certificate with another key does not pair")
	_, err = LoadCA(gw.Cert, gw.Key)
	require.Error(t, err, "a gateway certificate is not a CA")
	require.NoFileExists(t, filepath.Join(dir, "nothing"))
}

func mustKey(t *testing.T, a *Authority) []byte {
	k, err := a.KeyPEM()
	require.NoError(t, err)
	return k
}
