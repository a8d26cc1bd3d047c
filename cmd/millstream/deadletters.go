package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/millstream/millstream/actors"
)

const deadLettersHelp = `deadletters [--admin http://127.0.0.1:8080] [--limit 20] [--json]

Lists what a running gateway refused, newest first: payloads that are not
JSON or have fields of the wrong type, rows a clause failed on, messages
over max_payload_bytes. Each line: id, time, kind, job and input, source,
reason, and the first bytes of the payload. --all pages through every one
kept.`

func deadLettersCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("deadletters", stderr, deadLettersHelp)
	af := addAdminFlags(fs, "admin API of the gateway")
	limit := fs.Int("limit", 20, "how many, newest first (at most 1000 per request)")
	all := fs.Bool("all", false, "every dead letter kept, page by page")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 || *limit < 1 {
		return fmt.Errorf("%w: deadletters takes no arguments and a --limit of at least 1", errUsage)
	}
	ac, err := af.conn()
	if err != nil {
		return err
	}
	base := ac.base
	var before uint64
	shown := 0
	for {
		page := min(*limit-shown, 1000)
		if *all {
			page = 1000
		}
		url := fmt.Sprintf("%s/v1/deadletters?limit=%d", base, page)
		if before > 0 {
			url += fmt.Sprintf("&before=%d", before)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		body, err := ac.body(req)
		if err != nil {
			return err
		}
		var resp struct {
			DeadLetters []actors.DeadLetterView `json:"deadLetters"`
			Counts      map[string]uint64       `json:"counts"`
			Next        uint64                  `json:"next"`
		}
		if err := json.Unmarshal(body, &resp); err != nil {
			return fmt.Errorf("admin API %s: %w", base, err)
		}
		if before == 0 && !*asJSON {
			fmt.Fprintln(stdout, "refused since start:", formatCounts(resp.Counts))
		}
		for _, d := range resp.DeadLetters {
			if *asJSON {
				line, _ := json.Marshal(d)
				fmt.Fprintln(stdout, string(line))
				continue
			}
			where := d.Job
			if d.Input != "" {
				where += "/" + d.Input
			}
			if d.Stage != "" {
				where += "/" + d.Stage
			}
			if where == "" {
				where = "gateway"
			}
			payload := d.Payload
			if len(payload) > 120 {
				payload = payload[:120]
			}
			more := ""
			if d.Truncated || len(d.Payload) > 120 {
				more = fmt.Sprintf(" ... (%d bytes)", d.PayloadBytes)
			}
			fmt.Fprintf(stdout, "%d %s %s %s source=%q reason=%q payload=%q%s\n", d.ID, d.Time, d.Kind, where, d.Source, d.Reason, payload, more)
		}
		shown += len(resp.DeadLetters)
		if resp.Next == 0 || (!*all && shown >= *limit) {
			return nil
		}
		before = resp.Next
	}
}

func formatCounts(c map[string]uint64) string {
	if len(c) == 0 {
		return "none"
	}
	kinds := make([]string, 0, len(c))
	for k := range c {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%s %d", k, c[k])
	}
	return strings.Join(parts, ", ")
}
