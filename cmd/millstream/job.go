package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/millstream/millstream/actors"
	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/exec"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

const jobLong = `Manages the jobs of a running gateway through its admin API. deploy takes a
YAML, JSON or text proto job file and applies it without restarting the
gateway; other jobs are undisturbed.`

func newJobCmd() *cobra.Command {
	c := groupCmd("job", "Deploy, list, get, explain or remove the jobs of a running gateway", jobLong)
	af := addAdminFlags(c.PersistentFlags(), "admin API of the gateway")
	names := completeJobNames(af)

	deploy := &cobra.Command{
		Use:   "deploy FILE",
		Short: "Deploy a job file (YAML, JSON or text proto), or replace the job of its name",
		Args:  nArgs(1, "job deploy takes one job file"),
	}
	deployOut := addOutputFlag(deploy)
	deploy.RunE = func(c *cobra.Command, args []string) error {
		// Load and check here (query_file is relative to the job file),
		// then send the job as JSON.
		job, err := config.LoadJob(args[0])
		if err != nil {
			return err
		}
		body, err := protojson.Marshal(job)
		if err != nil {
			return fmt.Errorf("job deploy: %w", err)
		}
		return sendAndReport(c, af, *deployOut, http.MethodPut, "/v1/jobs", body, "deployed", "job %s deployed")
	}

	list := showCmd(&cobra.Command{
		Use:   "list",
		Short: "List the deployed jobs with their inputs, outputs, state and status",
		Args:  nArgs(0, "job list takes no arguments"),
	}, af, func([]string) string { return "/v1/jobs" }, printJobs)
	get := showCmd(&cobra.Command{
		Use:               "get NAME",
		Short:             "Show a job: its status, state, counters, inputs, outputs and query",
		Args:              nArgs(1, "job get takes one job name"),
		ValidArgsFunction: names,
	}, af, func(args []string) string { return "/v1/jobs/" + url.PathEscape(args[0]) }, printJob)
	explain := &cobra.Command{
		Use:               "explain NAME",
		Short:             "Print the plan of a deployed job as text proto",
		Args:              nArgs(1, "job explain takes one job name"),
		ValidArgsFunction: names,
		RunE: func(c *cobra.Command, args []string) error {
			return sendJob(c, af, http.MethodGet, "/v1/jobs/"+url.PathEscape(args[0])+"/plan", nil)
		},
	}
	rm := &cobra.Command{
		Use:               "rm NAME",
		Short:             "Remove a job",
		Args:              nArgs(1, "job rm takes one job name"),
		ValidArgsFunction: names,
	}
	rmOut := addOutputFlag(rm)
	rm.RunE = func(c *cobra.Command, args []string) error {
		return sendAndReport(c, af, *rmOut, http.MethodDelete, "/v1/jobs/"+url.PathEscape(args[0]), nil, "removed", "job %s removed")
	}
	c.AddCommand(deploy, list, get, explain, rm)
	return c
}

// showCmd makes c show what GET path(args) answers: text made by human,
// or with -o the answer as JSON or YAML.
func showCmd(c *cobra.Command, af *adminFlags, path func(args []string) string, human func(io.Writer, []byte) error) *cobra.Command {
	out := addOutputFlag(c)
	c.RunE = func(c *cobra.Command, args []string) error {
		body, err := adminGet(c, af, *out, path(args))
		if err != nil {
			return err
		}
		return emit(c.OutOrStdout(), *out, body, func(w io.Writer) error { return human(w, body) })
	}
	return c
}

// adminGet checks the output format, then GETs path.
func adminGet(c *cobra.Command, af *adminFlags, format, path string) ([]byte, error) {
	if err := checkOutput(format); err != nil {
		return nil, err
	}
	ac, err := af.conn()
	if err != nil {
		return nil, err
	}
	return ac.get(c.Context(), path)
}

// sendJob sends a request with an optional JSON body and prints the
// answer as it comes (explain).
func sendJob(c *cobra.Command, af *adminFlags, method, path string, body []byte) error {
	answer, err := adminSend(c, af, method, path, body)
	if err != nil {
		return err
	}
	_, err = c.OutOrStdout().Write(answer)
	return err
}

// adminSend sends a request with an optional JSON body and returns the
// answer.
func adminSend(c *cobra.Command, af *adminFlags, method, path string, body []byte) ([]byte, error) {
	ac, err := af.conn()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(c.Context(), method, ac.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("admin API request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return ac.body(req)
}

// sendAndReport sends a change and reports the answer: one line made from
// the answer's field key with line (a format with one %s), or with -o the
// answer as JSON or YAML.
func sendAndReport(c *cobra.Command, af *adminFlags, format, method, path string, body []byte, key, line string) error {
	if err := checkOutput(format); err != nil {
		return err
	}
	answer, err := adminSend(c, af, method, path, body)
	if err != nil {
		return err
	}
	return emit(c.OutOrStdout(), format, answer, func(w io.Writer) error {
		var m map[string]any
		if err := json.Unmarshal(answer, &m); err != nil {
			return fmt.Errorf("admin API answer: %w", err)
		}
		_, err := fmt.Fprintf(w, line+"\n", fmt.Sprint(m[key]))
		return err
	})
}

// completeJobNames completes a job name from the gateway's list, quietly
// offering nothing when it cannot be reached.
func completeJobNames(af *adminFlags) cobra.CompletionFunc {
	return func(c *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		body, err := adminGet(c, af, outJSON, "/v1/jobs")
		var resp jobsAnswer
		if err != nil || json.Unmarshal(body, &resp) != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, j := range resp.Jobs {
			out = append(out, j.Name)
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// jobsAnswer is GET /v1/jobs (actors/admin/admin.go listJobs).
type jobsAnswer struct {
	Jobs []struct {
		Name    string   `json:"name"`
		Inputs  []string `json:"inputs"`
		Outputs []string `json:"outputs"`
		actors.JobStatus
	} `json:"jobs"`
}

func printJobs(w io.Writer, body []byte) error {
	var resp jobsAnswer
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("job list: the admin API's answer: %w", err)
	}
	if len(resp.Jobs) == 0 {
		_, err := fmt.Fprintln(w, "no jobs deployed (deploy one with 'millstream job deploy FILE')")
		return err
	}
	rows := make([]string, len(resp.Jobs))
	for i, j := range resp.Jobs {
		rows[i] = fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", j.Name, strings.Join(j.Inputs, ","), strings.Join(j.Outputs, ","),
			humanBytes(j.StateBytes), budget(j.Budget), jobState(j.JobStatus))
	}
	return table(w, "NAME\tINPUTS\tOUTPUTS\tSTATE\tBUDGET\tSTATUS", rows)
}

func budget(n int64) string {
	if n <= 0 {
		return "none"
	}
	return humanBytes(n)
}

func jobState(s actors.JobStatus) string {
	if s.Stopped != "" {
		return "stopped: " + s.Stopped
	}
	return "running"
}

func printJob(w io.Writer, body []byte) error {
	var resp struct {
		Job      json.RawMessage  `json:"job"`
		Counters exec.Counters    `json:"counters"`
		Status   actors.JobStatus `json:"status"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("job get: the admin API's answer: %w", err)
	}
	job := &pb.Job{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(resp.Job, job); err != nil {
		return fmt.Errorf("job get: the job in the admin API's answer: %w", err)
	}
	var inputs, outputs []string
	for _, in := range job.Inputs {
		inputs = append(inputs, describeInput(in))
	}
	for _, o := range job.Outputs {
		outputs = append(outputs, describeOutput(o))
	}
	c := resp.Counters
	rows := []string{
		"job:\t" + job.Name,
		"status:\t" + jobState(resp.Status),
		fmt.Sprintf("state:\t%s (budget %s)", humanBytes(resp.Status.StateBytes), budget(resp.Status.Budget)),
		"inputs:\t" + strings.Join(inputs, "; "),
		"outputs:\t" + strings.Join(outputs, "; "),
		fmt.Sprintf("events:\t%d in, %d rows out, %d dead-lettered", c.EventsIn, c.EventsOut, c.DeadLettered),
		fmt.Sprintf("late:\t%d adjusted, %d dropped", c.LateAdjusted, c.LateDropped),
		fmt.Sprintf("out of order:\t%d adjusted, %d dropped; %d early dropped", c.OutOfOrderAdjusted, c.OutOfOrderDropped, c.EarlyDropped),
		fmt.Sprintf("actors:\t%.3f s of work, %d restarts after a panic", resp.Status.WorkSeconds, resp.Status.Restarts),
	}
	if err := fields(w, rows); err != nil {
		return err
	}
	if q := strings.TrimSpace(job.Query); q != "" {
		fmt.Fprintf(w, "query:\n  %s\n", strings.ReplaceAll(q, "\n", "\n  "))
	}
	return nil
}

func describeInput(in *pb.JobInput) string {
	switch {
	case in.ReferenceFile != "":
		return fmt.Sprintf("%s (reference %s)", in.Name, in.ReferenceFile)
	case in.Topic != "":
		return fmt.Sprintf("%s (topic %s)", in.Name, in.Topic)
	case in.DeviceId != "":
		return fmt.Sprintf("%s (device %s)", in.Name, in.DeviceId)
	}
	return in.Name
}

func describeOutput(o *pb.JobOutput) string {
	switch {
	case o.GetMqtt() != nil:
		return fmt.Sprintf("%s (mqtt %s)", o.Name, o.GetMqtt().Topic)
	case o.GetFile() != nil:
		return fmt.Sprintf("%s (file %s)", o.Name, o.GetFile().Path)
	case o.GetHttp() != nil:
		return fmt.Sprintf("%s (http %s)", o.Name, o.GetHttp().Url)
	case o.GetLog() != nil:
		return fmt.Sprintf("%s (log)", o.Name)
	}
	return o.Name
}
