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
	"sync"
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

// httpSink POSTs rows as JSON arrays in batches. Rows queue in a bounded
// channel: when the endpoint is slower than the job, the job waits (A3).
// A failed request is retried with backoff (0.5 s doubling to 30 s) until
// it succeeds or the sink closes; what is still unsent at close is counted
// as lost in the error it returns (durable outboxes come with durable
// state).
type httpSink struct {
	url      string
	headers  map[string]string
	size     int
	interval time.Duration
	rows     chan []byte
	done     chan struct{}
	client   *http.Client
	mu       sync.Mutex
	lost     int
	closed   bool
}

func newHTTPSink(cfg *pb.HttpSink) *httpSink {
	s := &httpSink{url: cfg.Url, headers: cfg.Headers, size: int(cfg.BatchSize), interval: cfg.BatchInterval.AsDuration(),
		done: make(chan struct{}), client: &http.Client{Timeout: 30 * time.Second}}
	if s.size <= 0 {
		s.size = 100
	}
	if s.interval <= 0 {
		s.interval = time.Second
	}
	s.rows = make(chan []byte, 4*s.size)
	go s.run()
	return s
}

func (s *httpSink) write(job, output string, ts int64, rec *value.Record) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("HTTP output %s is closed", s.url)
	}
	s.rows <- withID(job, output, ts, rec)
	return nil
}

func (s *httpSink) run() {
	defer close(s.done)
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	var batch [][]byte
	flush := func(final bool) {
		if len(batch) == 0 {
			return
		}
		body := bytes.NewBuffer(nil)
		body.WriteByte('[')
		for i, r := range batch {
			if i > 0 {
				body.WriteByte(',')
			}
			body.Write(r)
		}
		body.WriteByte(']')
		backoff := 500 * time.Millisecond
		for attempt := 0; ; attempt++ {
			if err := s.post(body.Bytes()); err == nil {
				break
			}
			if final && attempt >= 2 {
				s.mu.Lock()
				s.lost += len(batch)
				s.mu.Unlock()
				break
			}
			time.Sleep(backoff)
			backoff = min(2*backoff, 30*time.Second)
		}
		batch = batch[:0]
	}
	for {
		select {
		case r, ok := <-s.rows:
			if !ok {
				flush(true)
				return
			}
			batch = append(batch, r)
			if len(batch) >= s.size {
				flush(false)
			}
		case <-tick.C:
			flush(false)
		}
	}
}

func (s *httpSink) post(body []byte) error {
	status, err := postJSON(context.Background(), s.client, s.url, s.headers, body)
	if err == nil && status >= 300 {
		err = fmt.Errorf("HTTP %d %s", status, http.StatusText(status))
	}
	return err
}

// postJSON POSTs a JSON body with the output's headers and returns the
// response status.
func postJSON(ctx context.Context, client *http.Client, url string, headers map[string]string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (s *httpSink) close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.rows)
	<-s.done
	if s.lost > 0 {
		return fmt.Errorf("HTTP output %s: %d rows could not be delivered before close", s.url, s.lost)
	}
	return nil
}
