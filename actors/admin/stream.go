package admin

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Bounds of the console's live stream.
const (
	// MaxConsoleStreams is how many live streams a gateway serves at
	// once; one more is answered 503 with Retry-After.
	MaxConsoleStreams = 8
	// consoleInterval is how often a stream sends a snapshot.
	consoleInterval = time.Second
	// streamWriteTimeout drops a client that stops reading: a frame it
	// has not taken within this long ends its stream.
	streamWriteTimeout = 10 * time.Second
)

// streamSet counts the open live streams and ends them all on
// CloseStreams.
type streamSet struct {
	mu     sync.Mutex
	open   int
	closed bool
	done   chan struct{} // closed by CloseStreams
}

func newStreamSet() *streamSet { return &streamSet{done: make(chan struct{})} }

// acquire takes a slot, false when all are taken or streams are closed.
func (s *streamSet) acquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.open >= MaxConsoleStreams {
		return false
	}
	s.open++
	return true
}

func (s *streamSet) release() {
	s.mu.Lock()
	s.open--
	s.mu.Unlock()
}

// Open is how many streams are being served.
func (s *streamSet) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// CloseStreams ends every live console stream and refuses new ones. An
// http.Server's Shutdown waits for handlers to return and a stream never
// does by itself, so the server that serves Handler must call this when
// it shuts down (http.Server.RegisterOnShutdown). Safe to call more than
// once, from any goroutine.
func (a *API) CloseStreams() {
	a.streams.mu.Lock()
	defer a.streams.mu.Unlock()
	if !a.streams.closed {
		a.streams.closed = true
		close(a.streams.done)
	}
}

// consoleStream answers GET /v1/console/stream: Server-Sent Events, one
// "snapshot" event (the JSON of snapshot) at once and then every second,
// until the client goes, the gateway's server shuts down (CloseStreams),
// the client stops reading (streamWriteTimeout), or, with authentication
// on, its credentials stop being valid: they are checked again before
// every frame, so a token taken out of the tokens file ends the streams
// it opened within seconds (an "end" event says why). The guard checked
// the request as any other GET first.
func (a *API) consoleStream(w http.ResponseWriter, r *http.Request) {
	if !a.streams.acquire() {
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, apiError{fmt.Sprintf("the console's live stream is open %d times already (the most a gateway serves), or the gateway is closing: close a console and retry", MaxConsoleStreams)})
		return
	}
	defer a.streams.release()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(consoleInterval)
	defer tick.Stop()
	for seq := 1; ; seq++ {
		event, data := "snapshot", a.snapshotJSON(r.Context())
		if a.guard.authOn() {
			if _, why := a.guard.authenticate(r); why != "" {
				event, data = "end", []byte(strconv.Quote(why))
			}
		}
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", seq, event, data); err != nil {
			return
		}
		if err := rc.Flush(); err != nil || event == "end" {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-a.streams.done:
			return
		case <-tick.C:
		}
	}
}
