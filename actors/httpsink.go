package actors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Secrets of HTTP outputs. Every header value is taken for a secret (an
// Authorization or API key header is the reason to set headers at all):
// the admin API shows inline values as Redacted and never logs them. A
// value "env:NAME" or "file:/path" is a reference, read when the job
// starts and shown as written. The environment variables a job may read
// are those named MILLSTREAM_*, and the files those under the data
// roots, so that whoever may deploy a job cannot send the gateway's other
// secrets (cloud credentials in its environment, keys in /etc) to a URL
// of their choosing.
const (
	Redacted        = "<redacted>"
	SecretEnvPrefix = "MILLSTREAM_"
	maxSecretBytes  = 64 << 10
)

// isSecretRef reports whether a header value is a reference rather than
// the secret itself.
func isSecretRef(v string) bool {
	return strings.HasPrefix(v, "env:") || strings.HasPrefix(v, "file:")
}

// RedactHeaders returns headers with every inline value replaced by
// Redacted; references are kept.
func RedactHeaders(h map[string]string) map[string]string {
	if h == nil {
		return nil
	}
	out := make(map[string]string, len(h))
	for k, v := range h {
		if !isSecretRef(v) {
			v = Redacted
		}
		out[k] = v
	}
	return out
}

// resolveHeaders reads the referenced header values. A value that is
// Redacted is refused: it comes from a job fetched from the admin API and
// deployed again, and sending "<redacted>" instead of the real secret
// would only fail later, at the receiver.
func resolveHeaders(roots *DataRoots, h map[string]string) (map[string]string, error) {
	if len(h) == 0 {
		return h, nil
	}
	out := make(map[string]string, len(h))
	var errs []error
	for k, v := range h {
		r, err := resolveSecret(roots, v)
		if err == nil && strings.ContainsAny(r, "\r\n\x00") {
			err = errors.New("the value holds a line break or NUL, which a header cannot carry")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("header %s: %w", k, err))
			continue
		}
		out[k] = r
	}
	return out, errors.Join(errs...)
}

func resolveSecret(roots *DataRoots, v string) (string, error) {
	switch {
	case v == Redacted:
		return "", fmt.Errorf("%w: the value is %q (a job read back from the admin API hides its secrets): give the value, or env:NAME or file:/path", ErrBadRequest, Redacted)
	case strings.HasPrefix(v, "env:"):
		name := strings.TrimPrefix(v, "env:")
		if !strings.HasPrefix(name, SecretEnvPrefix) || len(name) == len(SecretEnvPrefix) {
			return "", fmt.Errorf("%w: env:%s: only environment variables named %s* may be read", ErrBadRequest, name, SecretEnvPrefix)
		}
		val, ok := os.LookupEnv(name)
		if !ok || val == "" {
			return "", fmt.Errorf("%w: env:%s: the environment variable is not set in the gateway's environment", ErrBadRequest, name)
		}
		return val, nil
	case strings.HasPrefix(v, "file:"):
		path := strings.TrimPrefix(v, "file:")
		if !strings.HasPrefix(path, "/") {
			return "", fmt.Errorf("%w: file:%s: the path must be absolute", ErrBadRequest, path)
		}
		p, err := roots.ReferenceFile(path)
		if err != nil {
			return "", err
		}
		return readSecretFile(p)
	}
	return v, nil
}

// readSecretFile reads a secret from a file: its content less the
// trailing line break, which editors add.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretBytes+1))
	if err != nil {
		return "", fmt.Errorf("secret file %s: %w", path, err)
	}
	if len(b) > maxSecretBytes {
		return "", fmt.Errorf("secret file %s: larger than %d bytes", path, maxSecretBytes)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return v, nil
}

// httpSink POSTs rows as JSON arrays, at most batch_size (default 100)
// a request. A status of 4xx other than 408 and 429 refuses a row for
// good: the rows of that request are sent one by one to find it.
type httpSink struct {
	url     string
	headers map[string]string
	size    int
	client  *http.Client
}

func newHTTPSink(cfg *pb.HttpSink) *httpSink {
	s := &httpSink{url: cfg.Url, headers: cfg.Headers, size: int(cfg.BatchSize), client: &http.Client{Timeout: 30 * time.Second}}
	if s.size <= 0 {
		s.size = 100
	}
	return s
}

func (s *httpSink) encode(_, _ string, _ int64, rec *value.Record, id string) *pb.OutboxEntry {
	return rowEntry(id, rec)
}

func (s *httpSink) deliver(ctx context.Context, rows []*pb.OutboxEntry) (int, error) {
	for off := 0; off < len(rows); off += s.size {
		n, err := s.post(ctx, rows[off:min(off+s.size, len(rows))])
		if err != nil {
			return off + n, err
		}
	}
	return len(rows), nil
}

// post sends one request.
func (s *httpSink) post(ctx context.Context, rows []*pb.OutboxEntry) (int, error) {
	body := bytes.NewBuffer(nil)
	body.WriteByte('[')
	for i, r := range rows {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(r.Payload)
	}
	body.WriteByte(']')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range s.headers {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	switch status := resp.StatusCode; {
	case status < 300:
		return len(rows), nil
	case status >= 400 && status < 500 && status != 408 && status != 429:
		if len(rows) > 1 {
			// Find the refused row: send them one by one.
			for i := range rows {
				if _, err := s.post(ctx, rows[i:i+1]); err != nil {
					return i, err
				}
			}
			return len(rows), nil
		}
		return 0, fmt.Errorf("%w: HTTP %d %s", errPermanent, status, http.StatusText(status))
	default:
		return 0, fmt.Errorf("HTTP %d %s", status, http.StatusText(status))
	}
}

func (s *httpSink) close() error { return nil }
