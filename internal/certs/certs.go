// Package certs makes the X.509 material of a secure cluster: a cluster
// CA, and the certificates it signs for gateways (cluster link, admin API
// and MQTTS listener), admin clients and devices. "millstream cert" is
// its command line; tests use it to build real TLS setups.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Kind is what a certificate is for.
type Kind int

const (
	// Gateway: server and client authentication; the common name and a DNS
	// name are the gateway's name, plus the hosts it is reached at.
	Gateway Kind = iota
	// Admin: a client of the admin API; the organizational unit is its
	// role ("read" or "operate").
	Admin
	// Device: an MQTT client; the common name is the device id.
	Device
)

// Authority is a CA that signs certificates.
type Authority struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA makes a self-signed CA valid for the given time.
func NewCA(name string, validity time.Duration) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name, Organization: []string{"Millstream"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validity),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certs: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: CA certificate: %w", err)
	}
	return &Authority{Cert: cert, Key: key}, nil
}

// LoadCA reads a CA certificate and its key (PEM).
func LoadCA(certFile, keyFile string) (*Authority, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("certs: %s: no PEM certificate", certFile)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", certFile, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certs: %s is not a CA certificate", certFile)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("certs: %s: no PEM key", keyFile)
	}
	key, err := parseKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", keyFile, err)
	}
	return &Authority{Cert: cert, Key: key}, nil
}

func parseKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, errors.New("unsupported key type")
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("cannot parse the private key (PKCS#8, EC or PKCS#1 PEM expected)")
}

// Request describes a certificate to issue.
type Request struct {
	Kind Kind
	// Name: the gateway name, admin client name or device id (the
	// certificate's common name).
	Name string
	// Hosts: DNS names and IP addresses a gateway is reached at (its name
	// and 127.0.0.1 are always added).
	Hosts []string
	// Role of an admin client ("read" or "operate").
	Role     string
	Validity time.Duration
}

// Issue signs a certificate and returns it and its new key, both PEM.
func (a *Authority) Issue(r Request) (certPEM, keyPEM []byte, err error) {
	if r.Name == "" {
		return nil, nil, errors.New("certs: a certificate needs a name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	if r.Validity <= 0 {
		r.Validity = 365 * 24 * time.Hour
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: r.Name, Organization: []string{"Millstream"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(r.Validity),
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
	}
	switch r.Kind {
	case Gateway:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = []string{r.Name}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		for _, h := range r.Hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if h != "" {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
		tmpl.DNSNames = append(tmpl.DNSNames, "localhost")
	case Admin:
		if r.Role != "read" && r.Role != "operate" {
			return nil, nil, fmt.Errorf("certs: admin role %q: want read or operate", r.Role)
		}
		tmpl.Subject.OrganizationalUnit = []string{r.Role}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case Device:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		return nil, nil, fmt.Errorf("certs: unknown kind %d", r.Kind)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, &key.PublicKey, a.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: sign %s: %w", r.Name, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// CertPEM is the CA certificate, PEM.
func (a *Authority) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Cert.Raw})
}

// KeyPEM is the CA key, PEM (PKCS#8).
func (a *Authority) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(a.Key)
	if err != nil {
		return nil, fmt.Errorf("certs: CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Files are the paths WriteIssued wrote.
type Files struct{ Cert, Key string }

// WriteIssued issues a certificate and writes it as dir/<base>.crt and
// dir/<base>.key (the key readable by its owner only). It refuses to
// overwrite existing files.
func (a *Authority) WriteIssued(dir, base string, r Request) (Files, error) {
	if err := checkBase(base); err != nil {
		return Files{}, err
	}
	certPEM, keyPEM, err := a.Issue(r)
	if err != nil {
		return Files{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("certs: %w", err)
	}
	f := Files{Cert: filepath.Join(dir, base+".crt"), Key: filepath.Join(dir, base+".key")}
	if err := writeNew(f.Key, keyPEM, 0o600); err != nil {
		return Files{}, err
	}
	if err := writeNew(f.Cert, certPEM, 0o644); err != nil {
		return Files{}, err
	}
	return f, nil
}

// WriteCA writes the CA as dir/ca.crt and dir/ca.key.
func (a *Authority) WriteCA(dir string) (Files, error) {
	keyPEM, err := a.KeyPEM()
	if err != nil {
		return Files{}, err
	}
	f := Files{Cert: filepath.Join(dir, "ca.crt"), Key: filepath.Join(dir, "ca.key")}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("certs: %w", err)
	}
	if err := writeNew(f.Key, keyPEM, 0o600); err != nil {
		return Files{}, err
	}
	if err := writeNew(f.Cert, a.CertPEM(), 0o644); err != nil {
		return Files{}, err
	}
	return f, nil
}

// checkBase refuses a file name that is empty, a path or hidden: names
// come from the command line (device ids, gateway names) and must not
// lead out of the directory.
func checkBase(base string) error {
	if base == "" || base == "." || base == ".." || strings.ContainsAny(base, `/\`+"\x00") || strings.HasPrefix(base, ".") {
		return fmt.Errorf("certs: %q cannot be a file name (no '/', '\\', NUL or leading '.')", base)
	}
	return nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	return nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, fmt.Errorf("certs: serial: %w", err)
	}
	return s, nil
}

// LoadPool reads a PEM file of CA certificates (several may follow one
// another, as while a CA is replaced) into a pool.
func LoadPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return pool, nil
}
