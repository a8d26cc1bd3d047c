package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/plan"
	"github.com/millstream/millstream/operators/querytest"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

var errTestsFailed = errors.New("query tests failed")

const queryLong = `Develops queries without a gateway: runs a query over JSON-lines files,
prints its plan, and runs test folders of inputs and expected outputs.`

func newQueryCmd() *cobra.Command {
	c := groupCmd("query", "Run, explain and test queries over local files", queryLong)
	c.AddCommand(newQueryRunCmd(), newQueryExplainCmd(), newQueryTestCmd())
	return c
}

// loadPlan reads a query (.sql) or a plan (.textproto/.txtpb/.pbtxt as
// text proto, .json as protojson).
func loadPlan(path string) (*pb.Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".textproto", ".txtpb", ".pbtxt":
		p := &pb.Plan{}
		if err := prototext.Unmarshal(b, p); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return p, nil
	case ".json":
		p := &pb.Plan{}
		if err := protojson.Unmarshal(b, p); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return p, nil
	}
	p, err := plan.FromSQL(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

type policyFlags struct {
	late, ooo    time.Duration
	policy       string
	compat       string
	lowerCase    bool
	arrivalField string
}

func (p *policyFlags) register(fs *pflag.FlagSet) {
	fs.DurationVar(&p.late, "late-arrival-tolerance", exec.DefaultLateArrival, "late-arrival tolerance")
	fs.DurationVar(&p.ooo, "out-of-order-tolerance", 0, "out-of-order tolerance")
	fs.StringVar(&p.policy, "out-of-order-policy", "adjust", "what happens to late and out-of-order events: adjust or drop")
	fs.StringVar(&p.compat, "compat-level", "1.2", "compatibility level: 1.0, 1.1 or 1.2")
	fs.BoolVar(&p.lowerCase, "lower-case-names", false, "lower-case output field names, as Stream Analytics on IoT Edge does")
	fs.StringVar(&p.arrivalField, "arrival-time-field", "", "field holding each event's arrival time; events are then fed in file order")
}

func (p *policyFlags) options() (exec.Options, error) {
	pol, err := exec.ParsePolicy(p.policy)
	if err != nil {
		return exec.Options{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	late := p.late
	if late == 0 {
		late = -1
	}
	switch p.compat {
	case "1.0", "1.1", "1.2":
	default:
		return exec.Options{}, fmt.Errorf("%w: --compat-level must be 1.0, 1.1 or 1.2", errUsage)
	}
	return exec.Options{LateArrivalTolerance: late, OutOfOrderTolerance: p.ooo, OutOfOrderPolicy: pol, CompatLevel: p.compat, LowerCaseNames: p.lowerCase}, nil
}

const runLong = `Runs a query over JSON-lines files, like Stream Analytics' local testing.
Events with TIMESTAMP BY are fed in event-time order; all windows are
flushed at the end of input. Each output is written to DIR/<output>.jsonl,
or to standard output when the query has one output and --out is not given.
Rejected events go to DIR/_deadletter.jsonl (or standard error) with the
reason. --query also takes a plan written as text proto (.textproto) or
JSON (.json).`

func newQueryRunCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "run --query q.sql --input [Name=]file.jsonl [--input ...] [--out DIR]",
		Short: "Run a query over JSON-lines files (local testing)",
		Long:  runLong,
		Args:  nArgs(0, "query run takes no arguments (give files with --query and --input)"),
	}
	var o queryRunOptions
	fs := c.Flags()
	fs.StringVar(&o.queryPath, "query", "", "query file (.sql) or plan (.textproto, .json)")
	fs.StringArrayVar(&o.inputs, "input", nil, "input as Name=file.jsonl (Name may be left out when the query has one input); repeatable")
	fs.StringArrayVar(&o.refs, "reference", nil, "reference data as Name=file.json (a JSON array or JSON lines); repeatable")
	fs.StringVar(&o.outDir, "out", "", "directory for <output>.jsonl files")
	o.pf.register(fs)
	c.RunE = func(c *cobra.Command, _ []string) error {
		return queryRun(o, c.OutOrStdout(), c.ErrOrStderr())
	}
	return c
}

type queryRunOptions struct {
	queryPath, outDir string
	inputs, refs      []string
	pf                policyFlags
}

func queryRun(o queryRunOptions, stdout, stderr io.Writer) error {
	queryPath, outDir, inputs, refs, pf := o.queryPath, o.outDir, o.inputs, o.refs, o.pf
	if queryPath == "" {
		return fmt.Errorf("%w: --query is required", errUsage)
	}
	if len(inputs) == 0 {
		return fmt.Errorf("%w: at least one --input is required", errUsage)
	}
	p, err := loadPlan(queryPath)
	if err != nil {
		return err
	}
	opts, err := pf.options()
	if err != nil {
		return err
	}
	var files []querytest.InputFile
	for _, in := range inputs {
		name, file, ok := strings.Cut(in, "=")
		if !ok {
			name, file = "", in
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("--input %s: %w", in, err)
		}
		files = append(files, querytest.InputFile{Name: name, Data: data, ArrivalField: pf.arrivalField})
	}
	for _, ref := range refs {
		name, file, ok := strings.Cut(ref, "=")
		if !ok || name == "" {
			return fmt.Errorf("%w: --reference takes Name=file.json", errUsage)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("--reference %s: %w", ref, err)
		}
		files = append(files, querytest.InputFile{Name: name, Data: data, Reference: true})
	}
	outs := map[string]bool{}
	for _, o := range p.Outputs {
		outs[o.Name] = true
	}
	if outDir == "" && len(outs) > 1 {
		return fmt.Errorf("%w: the query writes %d outputs; give --out DIR", errUsage, len(outs))
	}
	res, err := querytest.RunFiles(p, files, opts)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(outs))
	for n := range outs {
		names = append(names, n)
	}
	sort.Strings(names)
	if outDir == "" {
		w := bufio.NewWriter(stdout)
		writeRows(w, res.Outputs[strings.ToLower(names[0])])
		if err := w.Flush(); err != nil {
			return err
		}
		writeDeadLetters(stderr, res.DeadLetters)
	} else {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return err
		}
		for _, n := range names {
			if err := writeFile(filepath.Join(outDir, n+".jsonl"), func(w io.Writer) { writeRows(w, res.Outputs[strings.ToLower(n)]) }); err != nil {
				return err
			}
		}
		if len(res.DeadLetters) > 0 {
			if err := writeFile(filepath.Join(outDir, "_deadletter.jsonl"), func(w io.Writer) { writeDeadLetters(w, res.DeadLetters) }); err != nil {
				return err
			}
		}
	}
	c := res.Counters
	fmt.Fprintf(stderr, "millstream: %d events in, %d rows out, %d dead-lettered, %d late adjusted, %d late dropped, %d out-of-order adjusted, %d out-of-order dropped, %d early dropped\n",
		c.EventsIn, c.EventsOut, c.DeadLettered, c.LateAdjusted, c.LateDropped, c.OutOfOrderAdjusted, c.OutOfOrderDropped, c.EarlyDropped)
	return nil
}

func writeFile(path string, fill func(io.Writer)) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fill(w)
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeRows(w io.Writer, rows []*value.Record) {
	var buf []byte
	for _, r := range rows {
		buf = value.AppendRecordJSON(buf[:0], r)
		buf = append(buf, '\n')
		w.Write(buf)
	}
}

func writeDeadLetters(w io.Writer, dls []exec.DeadLetter) {
	var buf []byte
	for _, dl := range dls {
		rec := &value.Record{}
		rec.Set("input", value.Str(dl.Input))
		if dl.Stage != "" {
			rec.Set("stage", value.Str(dl.Stage))
		}
		rec.Set("reason", value.Str(dl.Reason))
		rec.Set("payload", value.Str(string(dl.Payload)))
		buf = value.AppendRecordJSON(buf[:0], rec)
		buf = append(buf, '\n')
		w.Write(buf)
	}
}

const explainLong = `Prints the plan of a query (.sql) as text proto. The printed plan can be
edited and run with 'millstream query run --query plan.textproto'.`

func newQueryExplainCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "explain FILE",
		Short: "Print the plan of a query as text proto",
		Long:  explainLong,
		Args:  nArgs(1, "query explain takes one query file"),
	}
	asJSON := c.Flags().Bool("json", false, "print protojson instead of text proto")
	c.RunE = func(c *cobra.Command, args []string) error {
		return queryExplain(args[0], *asJSON, c.OutOrStdout())
	}
	return c
}

func queryExplain(path string, asJSON bool, stdout io.Writer) error {
	p, err := loadPlan(path)
	if err != nil {
		return err
	}
	var out []byte
	if asJSON {
		out, err = protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(p)
	} else {
		out, err = prototext.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(p)
	}
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

const testLong = `Runs query test folders and reports PASS or FAIL for each, with the rows
that differ. A folder holds query.sql, input.jsonl (or input-<Alias>.jsonl
per input), expected.jsonl (or expected-<Output>.jsonl per output) and an
optional case.json with options and comparison rules. A directory without
query.sql is searched for test folders one level down.`

func newQueryTestCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "test DIR...",
		Short: "Run query test folders and compare outputs (exit 1 when one fails)",
		Long:  testLong,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("%w: query test needs at least one folder", errUsage)
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error { return queryTest(args, c.OutOrStdout()) },
	}
}

func queryTest(args []string, stdout io.Writer) error {
	var dirs []string
	for _, d := range args {
		if _, err := os.Stat(filepath.Join(d, "query.sql")); err == nil {
			dirs = append(dirs, d)
			continue
		}
		entries, err := os.ReadDir(d)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if _, err := os.Stat(filepath.Join(d, e.Name(), "query.sql")); e.IsDir() && err == nil {
				dirs = append(dirs, filepath.Join(d, e.Name()))
			}
		}
	}
	if len(dirs) == 0 {
		return fmt.Errorf("%w: no folder with a query.sql in %s", errUsage, strings.Join(args, ", "))
	}
	passed, failed := 0, 0
	for _, d := range dirs {
		c, err := querytest.Load(d)
		if err != nil {
			fmt.Fprintf(stdout, "FAIL %s\n  error: %v\n", filepath.Base(d), err)
			failed++
			continue
		}
		rep := c.Check()
		fmt.Fprint(stdout, rep)
		if rep.Passed() {
			passed++
		} else {
			failed++
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return errTestsFailed
	}
	return nil
}
