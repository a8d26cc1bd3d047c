package actors

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

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
