package admin

import (
	"net/http"
	"strconv"

	"github.com/millstream/millstream/actors"
)

// SetDeadLetters serves the gateway's dead letters at /v1/deadletters and
// counts them in /metrics (before Handler).
func (a *API) SetDeadLetters(d *actors.DeadLetters) {
	a.dead = d
	a.reg.MustRegister(d)
}

// Bounds of a page of GET /v1/deadletters.
const (
	defaultDeadLetterPage = 100
	maxDeadLetterPage     = 1000
)

// listDeadLetters answers GET /v1/deadletters?limit=N&before=ID: the
// newest dead letters first, a page at a time; "next" is the before= of
// the following page (absent on the last).
func (a *API) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	if a.dead == nil {
		writeJSON(w, http.StatusNotFound, apiError{"this gateway keeps no dead letters"})
		return
	}
	limit := defaultDeadLetterPage
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxDeadLetterPage {
			writeJSON(w, http.StatusBadRequest, apiError{"limit must be a number from 1 to 1000"})
			return
		}
		limit = n
	}
	var before uint64
	if s := r.URL.Query().Get("before"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{"before must be a dead letter id"})
			return
		}
		before = n
	}
	entries, err := a.dead.List(before, limit)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{err.Error()})
		return
	}
	out := struct {
		DeadLetters []actors.DeadLetterView `json:"deadLetters"`
		Counts      map[string]uint64       `json:"counts"`
		Next        uint64                  `json:"next,omitempty"`
	}{DeadLetters: make([]actors.DeadLetterView, 0, len(entries)), Counts: a.dead.Counts()}
	for _, e := range entries {
		out.DeadLetters = append(out.DeadLetters, actors.DeadLetterJSON(e.ID, e.DeadLetter))
	}
	if len(entries) == limit && entries[len(entries)-1].ID > 1 {
		out.Next = entries[len(entries)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}
