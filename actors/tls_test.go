package actors

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/internal/config"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// writeCA makes a CA and a server certificate for 127.0.0.1 in dir.
func writeCA(t *testing.T, dir, name string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	require.NoError(t, err)
	write := func(file, typ string, der []byte) string {
		p := filepath.Join(dir, file)
		// Readable by all: mosquitto run as root drops to its own user
		// before it loads certificates (test-only keys).
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644))
		return p
	}
	return write(name+"-ca.pem", "CERTIFICATE", caDER), write(name+"-cert.pem", "CERTIFICATE", srvDER), write(name+"-key.pem", "EC PRIVATE KEY", keyDER)
}

// TestExternalBrokerTLS: the gateway reads from mosquitto over TLS when it
// trusts the broker's CA, and refuses a broker signed by another CA.
func TestExternalBrokerTLS(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	ca, cert, key := writeCA(t, dir, "good")
	otherCA, _, _ := writeCA(t, dir, "other")
	addr := startMosquittoWith(t, "cafile "+ca+"\ncertfile "+cert+"\nkeyfile "+key+"\n")

	_, err := ConnectExternal(&pb.ExternalBroker{Url: "ssl://" + addr, ClientId: "wrong-ca", Tls: &pb.TLS{CaFile: otherCA}}, nil, nil, nil)
	require.Error(t, err, "a broker signed by an unknown CA must be refused")

	g := New(Config{Partitions: 2}, nil, nil)
	job, err := config.ParseJob("job.yaml", []byte("name: j\nquery: SELECT v INTO o FROM t\ninputs: [{name: t}]\noutputs: [{name: o, log: {}}]\n"))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, g.Deploy(ctx, job))
	src, err := ConnectExternal(&pb.ExternalBroker{Url: "ssl://" + addr, ClientId: "gw", Tls: &pb.TLS{CaFile: ca}}, g, g.Topics, nil)
	require.NoError(t, err)
	defer src.Close()
	require.Eventually(t, func() bool { return src.c.IsConnectionOpen() }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)

	pool := x509.NewCertPool()
	pemBytes, err := os.ReadFile(ca)
	require.NoError(t, err)
	pool.AppendCertsFromPEM(pemBytes)
	dev := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + addr).SetClientID("device").SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	tok := dev.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	defer dev.Disconnect(100)
	for i := 0; i < 10; i++ {
		tok := dev.Publish("devices/d1/messages/events/", 1, false, []byte(`{"v":1}`))
		require.True(t, tok.WaitTimeout(5*time.Second))
	}
	require.Eventually(t, func() bool { return g.Stats().EventsIn == 10 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, g.Close(ctx))
}
