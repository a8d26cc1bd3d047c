package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const jobHelp = `job deploy FILE | job list | job get NAME | job explain NAME | job rm NAME  [--admin http://127.0.0.1:8080]

Manages the jobs of a running gateway through its admin API. deploy takes a
YAML, JSON or text proto job file and applies it without restarting the
gateway; other jobs are undisturbed.`

func jobCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: job needs a subcommand: deploy, list, get, explain or rm", errUsage)
	}
	sub := args[0]
	fs := newFlagSet("job "+sub, stderr, jobHelp)
	admin := fs.String("admin", "http://127.0.0.1:8080", "admin API of the gateway")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	base := strings.TrimSuffix(*admin, "/")
	need := func(n int) error {
		if fs.NArg() != n {
			return fmt.Errorf("%w: job %s takes %d argument(s)", errUsage, sub, n)
		}
		return nil
	}
	var req *http.Request
	var err error
	switch sub {
	case "deploy":
		if err := need(1); err != nil {
			return err
		}
		body, rerr := os.ReadFile(fs.Arg(0))
		if rerr != nil {
			return rerr
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodPut, base+"/v1/jobs", bytes.NewReader(body))
		if err == nil {
			switch strings.ToLower(filepath.Ext(fs.Arg(0))) {
			case ".json":
				req.Header.Set("Content-Type", "application/json")
			case ".textproto", ".txtpb", ".pbtxt":
				req.Header.Set("Content-Type", "text/x-protobuf-text")
			default:
				req.Header.Set("Content-Type", "application/yaml")
			}
		}
	case "list":
		if err := need(0); err != nil {
			return err
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/jobs", nil)
	case "get", "explain", "rm":
		if err := need(1); err != nil {
			return err
		}
		method, path := http.MethodGet, "/v1/jobs/"+fs.Arg(0)
		if sub == "explain" {
			path += "/plan"
		}
		if sub == "rm" {
			method = http.MethodDelete
		}
		req, err = http.NewRequestWithContext(ctx, method, base+path, nil)
	default:
		return fmt.Errorf("%w: unknown job subcommand %q", errUsage, sub)
	}
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 60 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("admin API %s: %w", base, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("admin API: %s: %s", resp.Status, strings.TrimSpace(string(out)))
	}
	_, err = stdout.Write(out)
	return err
}
