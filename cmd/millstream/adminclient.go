package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/millstream/millstream/internal/certs"
	"github.com/millstream/millstream/internal/config"
)

// adminFlags are the flags of every command that calls a gateway's admin
// API: where it is (host:port or a URL) and how to authenticate. Each
// defaults to an environment variable, so a script sets them once.
type adminFlags struct {
	url, token, ca, cert, key *string
}

func addAdminFlags(fs *pflag.FlagSet, what string) *adminFlags {
	env := func(name, def string) string {
		if v := os.Getenv(name); v != "" {
			return v
		}
		return def
	}
	return &adminFlags{
		url:   fs.String("admin", env("MILLSTREAM_ADMIN", "http://127.0.0.1:8080"), what+": host:port or URL (or $MILLSTREAM_ADMIN)"),
		token: fs.String("token", "", "bearer token (default $MILLSTREAM_ADMIN_TOKEN; a flag is visible in ps, the variable is not)"),
		ca:    fs.String("ca", env("MILLSTREAM_ADMIN_CA", ""), "CA certificate that signed the gateway's (HTTPS; or $MILLSTREAM_ADMIN_CA)"),
		cert:  fs.String("cert", env("MILLSTREAM_ADMIN_CERT", ""), "client certificate (or $MILLSTREAM_ADMIN_CERT)"),
		key:   fs.String("key", env("MILLSTREAM_ADMIN_KEY", ""), "client certificate key (or $MILLSTREAM_ADMIN_KEY)"),
	}
}

// adminConn is a configured admin API client.
type adminConn struct {
	base   string
	token  string
	client *http.Client
}

func (f *adminFlags) conn() (*adminConn, error) {
	base := strings.TrimSuffix(*f.url, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	token := *f.token
	if token == "" {
		token = os.Getenv("MILLSTREAM_ADMIN_TOKEN")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if *f.ca != "" || *f.cert != "" || *f.key != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if *f.ca != "" {
			pool, err := certs.LoadPool(*f.ca)
			if err != nil {
				return nil, fmt.Errorf("--ca: %w", err)
			}
			tc.RootCAs = pool
		}
		if *f.cert != "" || *f.key != "" {
			pair, err := tls.LoadX509KeyPair(*f.cert, *f.key)
			if err != nil {
				return nil, fmt.Errorf("--cert/--key: %w", err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		tr.TLSClientConfig = tc
	}
	if token != "" && strings.HasPrefix(base, "http://") && !isLoopbackURL(base) {
		return nil, fmt.Errorf("refusing to send a token over plain HTTP to %s: use https://", base)
	}
	return &adminConn{base: base, token: token, client: &http.Client{Timeout: 60 * time.Second, Transport: tr}}, nil
}

func isLoopbackURL(base string) bool {
	u, err := url.Parse(base)
	return err == nil && config.IsLoopback(u.Host)
}

// newRequest builds a request to path on the gateway.
func (c *adminConn) newRequest(req *http.Request) *http.Request {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req
}

// body sends a request to the admin API and returns the answer; a status
// of 300 or more is an error that names it.
func (c *adminConn) body(req *http.Request) ([]byte, error) {
	resp, err := c.client.Do(c.newRequest(req))
	if err != nil {
		return nil, fmt.Errorf("admin API %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("admin API %s: %w", c.base, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("admin API: %s: %s (give a token with --token or $MILLSTREAM_ADMIN_TOKEN, or a client certificate with --cert/--key)", resp.Status, strings.TrimSpace(string(out)))
	case resp.StatusCode >= 300:
		return nil, fmt.Errorf("admin API: %s: %s", resp.Status, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// get returns the answer to GET path.
func (c *adminConn) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("admin API request: %w", err)
	}
	return c.body(req)
}
