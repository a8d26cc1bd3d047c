package admin

import (
	"fmt"
	"net"
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
	// has not taken within this long ends its stream (once the kernel's
	// send buffer is full, which can take many frames).
	streamWriteTimeout = 10 * time.Second
	// MaxConsoleStreamsPerCaller: one token, certificate or (without
	// authentication) address holds at most this many of the streams,
	// so one caller cannot lock the others out.
	MaxConsoleStreamsPerCaller = 3
	// consoleStreamLifetime ends a stream after this long; the page
	// reconnects at once. A client that stopped reading without closing
	// (a laptop gone to sleep) gives its slot back by then at the latest.
	consoleStreamLifetime = 5 * time.Minute
)

// streamSet counts the open live streams and ends them all on
// CloseStreams.
type streamSet struct {
	mu       sync.Mutex
	open     int
	byCaller map[string]int
	closed   bool
	done     chan struct{} // closed by CloseStreams
}

func newStreamSet() *streamSet {
	return &streamSet{done: make(chan struct{}), byCaller: map[string]int{}}
}

// acquire takes a slot for caller, false when all are taken, the caller
// holds its share, or streams are closed.
func (s *streamSet) acquire(caller string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.open >= MaxConsoleStreams || s.byCaller[caller] >= MaxConsoleStreamsPerCaller {
		return false
	}
	s.open++
	s.byCaller[caller]++
	return true
}

func (s *streamSet) release(caller string) {
	s.mu.Lock()
	s.open--
	if s.byCaller[caller]--; s.byCaller[caller] <= 0 {
		delete(s.byCaller, caller)
	}
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
	if r.Method != http.MethodGet {
		// A HEAD would hold a slot and never be sent a frame.
		w.Header().Set("Allow", http.MethodGet)
		writeJSON(w, http.StatusMethodNotAllowed, apiError{"the live stream is read with GET"})
		return
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		// A page of another site (an iframe sends no Origin) must not
		// hold the slots with the operator's browser credentials.
		writeJSON(w, http.StatusForbidden, apiError{"the live stream is for the console's own page"})
		return
	}
	caller := a.caller(r)
	if !a.streams.acquire(caller) {
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, apiError{fmt.Sprintf("the console's live stream is open %d times already (the most a gateway serves, %d per caller), or the gateway is closing: close a console and retry",
			MaxConsoleStreams, MaxConsoleStreamsPerCaller)})
		return
	}
	defer a.streams.release(caller)
	end := time.After(consoleStreamLifetime)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(consoleInterval)
	defer tick.Stop()
	for seq := 1; ; seq++ {
		event, data := "snapshot", a.snapshotJSON()
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
		case <-end:
			return // the page reconnects
		case <-tick.C:
		}
	}
}

// caller names who holds a stream: the token or certificate it
// authenticated with, else its address (without authentication).
func (a *API) caller(r *http.Request) string {
	if p, ok := principalOf(r); ok && p.via != "none" {
		return p.via + ":" + p.name
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return "addr:" + host
}
