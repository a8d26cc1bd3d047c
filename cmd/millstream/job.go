package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/millstream/millstream/internal/config"
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
	af := addAdminFlags(fs, "admin API of the gateway")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	ac, err := af.conn()
	if err != nil {
		return err
	}
	base := ac.base
	need := func(n int) error {
		if fs.NArg() != n {
			return fmt.Errorf("%w: job %s takes %d argument(s)", errUsage, sub, n)
		}
		return nil
	}
	var req *http.Request
	switch sub {
	case "deploy":
		if err := need(1); err != nil {
			return err
		}
		// Load and check here (query_file is relative to the job file),
		// then send the job as JSON.
		job, lerr := config.LoadJob(fs.Arg(0))
		if lerr != nil {
			return lerr
		}
		body, merr := protojson.Marshal(job)
		if merr != nil {
			return merr
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodPut, base+"/v1/jobs", bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
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
	return ac.do(req, stdout)
}

const deviceHelp = `device list | device get ID | device set-desired ID '{"json":"object"}'  [--admin http://127.0.0.1:8080]

Shows the devices a running gateway knows (online state, last seen, the
last reported message, desired properties) and sets desired properties,
which the gateway publishes to devices/{id}/twin/desired.`

func deviceCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: device needs a subcommand: list, get or set-desired", errUsage)
	}
	sub := args[0]
	fs := newFlagSet("device "+sub, stderr, deviceHelp)
	af := addAdminFlags(fs, "admin API of the gateway")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	ac, err := af.conn()
	if err != nil {
		return err
	}
	base := ac.base
	var req *http.Request
	switch {
	case sub == "list" && fs.NArg() == 0:
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/devices", nil)
	case sub == "get" && fs.NArg() == 1:
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/devices/"+fs.Arg(0), nil)
	case sub == "set-desired" && fs.NArg() == 2:
		req, err = http.NewRequestWithContext(ctx, http.MethodPut, base+"/v1/devices/"+fs.Arg(0)+"/desired", strings.NewReader(fs.Arg(1)))
	default:
		return fmt.Errorf("%w: device list | device get ID | device set-desired ID JSON", errUsage)
	}
	if err != nil {
		return err
	}
	return ac.do(req, stdout)
}
