package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/millstream/millstream/actors"
)

const deadLettersLong = `Lists what a running gateway refused, newest first: payloads that are not
JSON or have fields of the wrong type, rows a clause failed on, messages
over max_payload_bytes. Each line: id, time, kind, job and input, source,
reason, and the first bytes of the payload. --all pages through every one
kept. -o json prints one answer of the admin API's shape holding them all;
--json prints one JSON object per line instead (for grep and jq -c).`

func newDeadLettersCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "deadletters",
		Short: "What a running gateway refused, and why",
		Long:  deadLettersLong,
		Args:  nArgs(0, "deadletters takes no arguments"),
	}
	af := addAdminFlags(c.Flags(), "admin API of the gateway")
	out := addOutputFlag(c)
	limit := c.Flags().Int("limit", 20, "how many, newest first (at most 1000 per request)")
	all := c.Flags().Bool("all", false, "every dead letter kept, page by page")
	lines := c.Flags().Bool("json", false, "one JSON object per line")
	c.RunE = func(c *cobra.Command, _ []string) error {
		if err := checkOutput(*out); err != nil {
			return err
		}
		if *limit < 1 {
			return fmt.Errorf("%w: --limit must be at least 1", errUsage)
		}
		if *lines && *out != outText {
			return fmt.Errorf("%w: --json (JSON lines) and -o %s are two formats: give one", errUsage, *out)
		}
		got, err := fetchDeadLetters(c.Context(), af, *limit, *all)
		if err != nil {
			return err
		}
		w := c.OutOrStdout()
		if *lines {
			for _, d := range got.DeadLetters {
				line, err := json.Marshal(d)
				if err != nil {
					return fmt.Errorf("deadletters: %w", err)
				}
				fmt.Fprintln(w, string(line))
			}
			return nil
		}
		body, err := json.Marshal(got)
		if err != nil {
			return fmt.Errorf("deadletters: %w", err)
		}
		return emit(w, *out, body, func(w io.Writer) error {
			printDeadLetters(w, got)
			return nil
		})
	}
	return c
}

// deadLetterPages is GET /v1/deadletters (actors/admin/deadletters.go),
// or several of its pages put together.
type deadLetterPages struct {
	DeadLetters []actors.DeadLetterView `json:"deadLetters"`
	Counts      map[string]uint64       `json:"counts"`
	Next        uint64                  `json:"next,omitempty"`
}

// fetchDeadLetters gets the newest limit dead letters, or with all every
// one kept, a page of at most 1000 at a time. Counts are the first
// page's; Next is where a later call would go on.
func fetchDeadLetters(ctx context.Context, af *adminFlags, limit int, all bool) (*deadLetterPages, error) {
	ac, err := af.conn()
	if err != nil {
		return nil, err
	}
	got := &deadLetterPages{DeadLetters: []actors.DeadLetterView{}}
	var before uint64
	for {
		page := min(limit-len(got.DeadLetters), 1000)
		if all {
			page = 1000
		}
		path := fmt.Sprintf("/v1/deadletters?limit=%d", page)
		if before > 0 {
			path += fmt.Sprintf("&before=%d", before)
		}
		body, err := ac.get(ctx, path)
		if err != nil {
			return nil, err
		}
		var resp deadLetterPages
		if err := json.Unmarshal(body, &resp); err != nil {
			return nil, fmt.Errorf("admin API %s: %w", ac.base, err)
		}
		if before == 0 {
			got.Counts = resp.Counts
		}
		got.DeadLetters = append(got.DeadLetters, resp.DeadLetters...)
		got.Next = resp.Next
		if resp.Next == 0 || (!all && len(got.DeadLetters) >= limit) {
			return got, nil
		}
		before = resp.Next
	}
}

func printDeadLetters(w io.Writer, got *deadLetterPages) {
	fmt.Fprintln(w, "refused since start:", formatCounts(got.Counts))
	for _, d := range got.DeadLetters {
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
		fmt.Fprintf(w, "%d %s %s %s source=%q reason=%q payload=%q%s\n", d.ID, d.Time, d.Kind, where, d.Source, d.Reason, payload, more)
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
